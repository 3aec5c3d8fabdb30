"""HTTP on the worker: the browser beacon endpoint, health and metrics; and for browsers,
session tokens, the live intervention stream (SSE), the JS SDK and the demo shop.

Every refusal is a JSON ``{"error": reason, "detail": ...}`` with a status a client
can act on (403 never, 401 ask again, 413 split, 429 wait ``Retry-After`` s), counted
in ``frictionwatch_web_rejections_total{endpoint, reason}``.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from detectors.errors import InvalidEvent
from detectors.events import MAX_EVENTS_PER_RECORD, validate_event
from streamer.delivery import Fanout, InterventionFeed, sse_frame
from streamer.guard import SITE_KEY_HEADER, Guard, Refusal
from streamer.metrics import Metrics
from streamer.settings import INTERVENTIONS_TOPIC, Settings
from streamer.tokens import TokenError, new_session_id
from streamer.topics import Topics

#: Seconds between keep-alive comments on an idle stream (also how soon a vanished
#: client is noticed) and the most a write to a stream may take before it is dropped.
SSE_HEARTBEAT_S = 15.0
SSE_WRITE_TIMEOUT_S = 5.0
#: EventSource reconnect delay we ask for (the default is 3 s).
SSE_RETRY_MS = 1000


def _client(guard: Guard | None, request: Request) -> str:
    peer = request.remote  # type: ignore[attr-defined]
    if guard is None:
        return str(peer)
    return guard.client_address(peer, request.headers.get("X-Forwarded-For"))


def register(
    app: faust.App, topics: Topics, metrics: Metrics, max_bytes: int, guard: Guard | None = None
) -> None:
    """/v1/collect, /healthz, /metrics. With a ``guard``, collect also serves browsers:
    CORS allow-list and preflight, site keys, per-client and per-session rate limits."""

    def error(view: View, status: int, reason: str, detail: str,
              headers: dict[str, str] | None = None) -> Response:
        metrics.collect_requests.labels(str(status)).inc()
        metrics.web_rejections.labels("collect", reason).inc()
        return view.json({"error": reason, "detail": detail}, status=status, headers=headers)

    def refuse(view: View, refusal: Refusal, cors: dict[str, str]) -> Response:
        return error(view, refusal.status, refusal.reason, refusal.detail,
                     {**cors, **refusal.headers})

    @app.page("/v1/collect")
    class Collect(View):
        """A beacon: a JSON array of events (any sessions); answered 202 per event.

        Browsers may wrap it as ``{"site_key": ..., "events": [...]}`` and send it as
        text/plain (sendBeacon, or fetch without a preflight).
        """

        async def options(self, request: Request) -> Response:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
            if guard is None:
                return self.bytes(b"", status=204)
            refusal = guard.check_origin(origin, host)
            if refusal:
                return refuse(self, refusal, {})
            return self.bytes(b"", status=204, headers=guard.preflight_headers(origin, host))

        async def post(self, request: Request) -> Response:
            cors: dict[str, str] = {}
            if guard is not None:
                origin, host = request.headers.get("Origin"), request.headers.get("Host")
                refusal = guard.check_origin(origin, host) or guard.check_client(
                    _client(guard, request))
                cors = guard.cors_headers(origin, host)
                if refusal:
                    return refuse(self, refusal, cors)
            declared = request.content_length
            if declared is not None and declared > max_bytes:
                return error(self, 413, "too_large", f"body is {declared} bytes, cap {max_bytes}",
                             cors)
            body = await request.read()
            if len(body) > max_bytes:
                return error(self, 413, "too_large", f"body is {len(body)} bytes, cap {max_bytes}",
                             cors)
            try:
                items = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return error(self, 400, "not_json", str(exc), cors)
            site_key: Any = None
            if isinstance(items, dict) and "events" in items and "type" not in items:
                site_key, items = items.get("site_key"), items["events"]
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                return error(self, 400, "not_object", "body must be a JSON array of events", cors)
            if guard is not None:
                refusal = guard.check_site_key(
                    request.headers.get(SITE_KEY_HEADER) or request.query.get("site_key")
                    or site_key)
                if refusal:
                    return refuse(self, refusal, cors)
            if len(items) > MAX_EVENTS_PER_RECORD:
                return error(self, 413, "too_large",
                             f"{len(items)} events, cap {MAX_EVENTS_PER_RECORD} per request", cors)
            by_session: dict[str, list[Any]] = {}
            rejected = []
            for index, item in enumerate(items):
                try:
                    event = validate_event(item)
                except InvalidEvent as exc:
                    metrics.invalid_by_reason[exc.reason].inc()
                    rejected.append({"index": index, "reason": exc.reason, "detail": exc.detail})
                    continue
                by_session.setdefault(event["session_id"], []).append(event)
            if guard is not None:
                refusal = guard.check_sessions((s, len(e)) for s, e in by_session.items())
                if refusal:
                    return refuse(self, refusal, cors)
            acks = []
            for session_id, events in by_session.items():
                # One record per session per beacon: the unit Faust pays for.
                acks.append(await topics.events.send(key=session_id.encode(),
                                                     value=orjson.dumps(events)))
            # Answer 202 only once the broker has the events: accepted is never lost.
            await asyncio.gather(*acks)
            metrics.collect_requests.labels("202").inc()
            return self.json(
                {"accepted": len(items) - len(rejected), "rejected": len(rejected),
                 "errors": rejected},
                status=202, headers=cors or None,
            )

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "app": app.conf.id})

    @app.page("/metrics")
    class Metrics_(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type=, so the header goes as is.
            return self.bytes(
                generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )


# -- browsers: tokens, live interventions, SDK, demo ---------------------------------------

_STATIC = {
    # name under streamer/web -> content type
    "frictionwatch.js": "application/javascript; charset=utf-8",
    "demo/index.html": "text/html; charset=utf-8",
    "demo/shop.css": "text/css; charset=utf-8",
    "demo/shop.js": "application/javascript; charset=utf-8",
}


def _read_static() -> dict[str, bytes]:
    root = resources.files("streamer") / "web"
    return {name: (root / name).read_bytes() for name in _STATIC}


def register_browser(
    app: faust.App, settings: Settings, metrics: Metrics, guard: Guard,
    fanout: Fanout | None = None,
) -> Fanout:
    """POST /v1/sessions, GET /v1/sessions/{id}/interventions (SSE), /sdk, /demo.

    Starts this worker's :class:`~streamer.delivery.InterventionFeed` with the app and
    closes every stream when the web server shuts down. Returns the fan-out.
    """
    fanout = fanout or Fanout(metrics)
    feed = InterventionFeed(settings.bootstrap_servers, INTERVENTIONS_TOPIC, fanout,
                            client_id=f"{settings.app_id}-feed")
    static = _read_static()
    site_key = guard.site_keys[0] if guard.site_keys else ""
    demo_html = static["demo/index.html"].replace(
        b'"__FW_SITE_KEY__"', orjson.dumps(site_key))

    @app.task
    async def feed_interventions() -> None:
        await feed.run()

    async def close_streams(_: aioweb.Application) -> None:
        fanout.close_all("shutdown")

    app.web.web_app.on_shutdown.append(close_streams)  # type: ignore[attr-defined]

    def refuse(view: View, endpoint: str, refusal: Refusal | TokenError,
               cors: dict[str, str]) -> Response:
        metrics.web_rejections.labels(endpoint, refusal.reason).inc()
        headers = {**cors, **getattr(refusal, "headers", {})}
        return view.json({"error": refusal.reason, "detail": refusal.detail},
                         status=refusal.status, headers=headers or None)

    @app.page("/v1/sessions")
    class Sessions(View):
        """A new session and its token; or, given ``{session_id, token}``, a new token."""

        async def options(self, request: Request) -> Response:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
            refusal = guard.check_origin(origin, host)
            if refusal:
                return refuse(self, "sessions", refusal, {})
            return self.bytes(b"", status=204, headers=guard.preflight_headers(origin, host))

        async def post(self, request: Request) -> Response:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
            cors = guard.cors_headers(origin, host)
            refusal = guard.check_origin(origin, host) or guard.check_client(
                _client(guard, request))
            if refusal:
                return refuse(self, "sessions", refusal, cors)
            body = await request.read()
            if len(body) > 4096:
                return refuse(self, "sessions", Refusal(413, "too_large", "cap 4096 bytes"), cors)
            try:
                asked = orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError as exc:
                return refuse(self, "sessions", Refusal(400, "not_json", str(exc)), cors)
            if not isinstance(asked, dict):
                return refuse(self, "sessions",
                              Refusal(400, "not_object", "body must be a JSON object"), cors)
            refusal = guard.check_site_key(
                request.headers.get(SITE_KEY_HEADER) or request.query.get("site_key")
                or asked.get("site_key"))
            if refusal:
                return refuse(self, "sessions", refusal, cors)
            session_id = asked.get("session_id")
            if session_id is not None:
                # Renewal: only with a genuine token of that session (expired is fine,
                # up to one lifetime ago); anything else must start a new session.
                try:
                    guard.signer.verify(asked.get("token"), str(session_id),
                                        grace_s=guard.signer.ttl_s)
                except TokenError as exc:
                    return refuse(self, "sessions", exc, cors)
                kind = "renewed"
            else:
                session_id, kind = new_session_id(), "new"
            token = guard.signer.issue(str(session_id))
            metrics.session_tokens.labels(kind).inc()
            return self.json(
                {"session_id": session_id, "token": token,
                 "expires_at": guard.signer.expires(token),
                 "stream": f"/v1/sessions/{session_id}/interventions"},
                status=201, headers={**cors, "Cache-Control": "no-store"},
            )

    @app.page("/v1/sessions/{session_id}/interventions")
    class InterventionStream(View):
        """Server-Sent Events: this session's interventions, live, as ``intervention``."""

        async def get(self, request: Request, session_id: str) -> Any:
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
            cors = guard.cors_headers(origin, host)
            refusal = guard.check_origin(origin, host) or guard.check_client(
                _client(guard, request))
            if refusal:
                return refuse(self, "stream", refusal, cors)
            token = request.query.get("token") or request.cookies.get("fw_token")
            try:
                guard.signer.verify(token, session_id)
            except TokenError as exc:
                return refuse(self, "stream", exc, cors)
            if fanout.full():
                return refuse(self, "stream", Refusal(
                    503, "too_many_streams", "this worker has no room for another stream",
                    {"Retry-After": "5"}), cors)
            subscriber, backlog = fanout.subscribe(session_id, request.headers.get("Last-Event-ID"))
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

    def asset(name: str, body: bytes | None = None, max_age: int = 300) -> type[View]:
        content = body if body is not None else static[name]
        headers = {"Content-Type": _STATIC[name], "Cache-Control": f"public, max-age={max_age}"}

        class Asset(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return self.bytes(content, headers=headers)

        Asset.__name__ = "asset_" + name.replace("/", "_").replace(".", "_")
        return Asset

    app.page("/sdk/frictionwatch.js", name="sdk")(asset("frictionwatch.js"))
    for path in ("/demo", "/demo/cart", "/demo/checkout"):
        app.page(path, name="demo" + path.replace("/", "_"))(
            asset("demo/index.html", demo_html, max_age=0))
    app.page("/demo/static/shop.css", name="demo_css")(asset("demo/shop.css"))
    app.page("/demo/static/shop.js", name="demo_js")(asset("demo/shop.js"))

    @app.page("/demo/api/pay", name="demo_pay")
    class DemoPay(View):
        """The demo shop's payment provider: every card is declined."""

        async def post(self, request: Request) -> Response:
            await request.read()
            return self.json({"error": "card_declined",
                              "detail": "The card was declined by the issuer."}, status=402)

    return fanout
