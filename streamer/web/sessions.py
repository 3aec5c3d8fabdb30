"""Browser sessions: ``POST /v1/sessions`` issues a session and its token, and
``GET /v1/sessions/{id}/interventions`` streams that session's interventions (SSE).

Sessions are created by the server, never chosen by a client; the token (see
:mod:`streamer.web.tokens`) proves which session a browser holds. A client may start
only so many sessions a minute (``FW_NEW_SESSIONS_PER_MIN``) and hold only so many
streams open (``FW_SSE_STREAMS_PER_CLIENT``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from streamer.metrics import Metrics
from streamer.web import http
from streamer.web.delivery import Fanout, sse_frame
from streamer.web.guard import SITE_KEY_HEADER, Guard, Refusal
from streamer.web.tokens import TokenError, new_session_id

#: Seconds between keep-alive comments on an idle stream (also how soon a vanished
#: client is noticed) and the most a write to a stream may take before it is dropped.
SSE_HEARTBEAT_S = 15.0
SSE_WRITE_TIMEOUT_S = 5.0
#: EventSource reconnect delay we ask for (the default is 3 s).
SSE_RETRY_MS = 1000
#: The largest body POST /v1/sessions reads.
MAX_SESSION_BODY = 4096


def register(app: faust.App, metrics: Metrics, guard: Guard, fanout: Fanout) -> None:
    @app.page("/v1/sessions")
    class Sessions(View):
        """A new session and its token; or, given ``{session_id, token}``, a new token."""

        async def options(self, request: Request) -> Response:
            return http.preflight(guard, self, request, metrics, "sessions")

        async def post(self, request: Request) -> Response:
            caller = http.admit(guard, request)
            if caller.refusal:
                return http.refuse(self, metrics, "sessions", caller.refusal, caller.cors)
            try:
                return await self._issue(request, caller)
            except (_Refused, TokenError) as exc:
                refusal_ = exc.refusal if isinstance(exc, _Refused) else exc
                return http.refuse(self, metrics, "sessions", refusal_, caller.cors)
            except Exception as exc:  # noqa: BLE001 - the answer is still JSON, and counted
                return http.refuse(self, metrics, "sessions", http.unexpected("sessions", exc),
                                   caller.cors)

        async def _issue(self, request: Request, caller: http.Caller) -> Response:
            body = await request.read()
            asked = _read_body(body)
            refusal = guard.check_site_key(
                request.headers.get(SITE_KEY_HEADER) or request.query.get("site_key")
                or asked.get("site_key"))
            if refusal:
                raise _Refused(refusal)
            session_id, kind = _session_of(guard, asked)
            if kind == "new":
                refusal = guard.check_new_session(caller.client)
                if refusal:
                    raise _Refused(refusal)
            token = guard.signer.issue(session_id)
            metrics.session_tokens.labels(kind).inc()
            return self.json(
                {"session_id": session_id, "token": token,
                 "expires_at": guard.signer.expires(token),
                 "stream": f"/v1/sessions/{session_id}/interventions"},
                status=201, headers={**caller.cors, "Cache-Control": "no-store"},
            )

    @app.page("/v1/sessions/{session_id}/interventions")
    class InterventionStream(View):
        """Server-Sent Events: this session's interventions, live, as ``intervention``."""

        async def get(self, request: Request, session_id: str) -> Any:
            caller = http.admit(guard, request)
            if caller.refusal:
                return http.refuse(self, metrics, "stream", caller.refusal, caller.cors)
            token = request.query.get("token") or request.cookies.get("fw_token")
            try:
                guard.signer.verify(token, session_id)
            except TokenError as exc:
                return http.refuse(self, metrics, "stream", exc, caller.cors)
            if fanout.client_streams(caller.client) >= guard.streams_per_client:
                return http.refuse(self, metrics, "stream", Refusal(
                    429, "too_many_client_streams",
                    f"{caller.client} has {guard.streams_per_client} streams open; close one",
                    {"Retry-After": "5"}), caller.cors)
            if fanout.full():
                return http.refuse(self, metrics, "stream", Refusal(
                    503, "too_many_streams", "this worker has no room for another stream",
                    {"Retry-After": "5"}), caller.cors)
            return await _stream(request, session_id, caller, fanout, metrics)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


def _read_body(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_SESSION_BODY:
        raise _Refused(Refusal(413, "too_large", f"cap {MAX_SESSION_BODY} bytes"))
    try:
        asked = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise _Refused(Refusal(400, "not_json", str(exc))) from None
    if not isinstance(asked, dict):
        raise _Refused(Refusal(400, "not_object", "body must be a JSON object"))
    return asked


def _session_of(guard: Guard, asked: dict[str, Any]) -> tuple[str, str]:
    """A renewal needs a genuine token of that session (expired up to one lifetime ago
    is fine); anything else starts a new session."""
    session_id = asked.get("session_id")
    if session_id is None:
        return new_session_id(), "new"
    if not isinstance(session_id, str):
        raise TokenError(403, "wrong_session", "session_id must be a string")
    guard.signer.verify(asked.get("token"), session_id, grace_s=guard.signer.ttl_s)
    return session_id, "renewed"


async def _stream(request: Request, session_id: str, caller: http.Caller, fanout: Fanout,
                  metrics: Metrics) -> aioweb.StreamResponse:
    cors = caller.cors
    subscriber, backlog = fanout.subscribe(session_id, request.headers.get("Last-Event-ID"),
                                           client=caller.client)
    response = aioweb.StreamResponse(status=200, headers={
        **cors, "Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)  # type: ignore[arg-type]
        hello = f"retry: {SSE_RETRY_MS}\n".encode() + sse_frame("ready", b"{}")
        await response.write(hello + b"".join(backlog))
        metrics.sse_sent.inc(len(backlog))
        while True:
            frames = await subscriber.next(SSE_HEARTBEAT_S)
            if subscriber.closed:
                break
            transport = request.transport  # type: ignore[attr-defined]
            if transport is None or transport.is_closing():
                subscriber.close("client_gone")
                break
            await asyncio.wait_for(response.write(b"".join(frames) or b": ping\n\n"),
                                   SSE_WRITE_TIMEOUT_S)
    except TimeoutError:
        subscriber.close("slow")
    except (ConnectionError, RuntimeError):
        subscriber.close("client_gone")  # reset by peer, or written after close
    finally:
        fanout.unsubscribe(subscriber)
    return response
