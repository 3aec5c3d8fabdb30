"""``POST /v1/collect``: a browser's beacon in, one Kafka record per session out.

This is where an event enters the system, from the open internet: nothing in the body
is trusted. The request is checked (origin, client request budget, size, JSON, site
key), each event validated and cleaned (:func:`detectors.events.validate_event`:
personal data scrubbed, strings capped in bytes, nesting bounded), each session's
token checked (only the server issues sessions; see :mod:`streamer.web.tokens`), the
client's and the sessions' budgets charged, each event stamped with the server's
receive time (``received_at``), and the events of each session published together as
one record on ``frictionwatch.events``, keyed by session id: the unit Faust pays for.

Every answer is JSON; a refusal has a reason and is counted. No input makes this view
answer 500 (an unexpected exception still becomes a counted JSON error).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from detectors.errors import InvalidEvent
from detectors.events import MAX_EVENTS_PER_RECORD, validate_event
from streamer.metrics import Metrics
from streamer.stream.topics import Topics
from streamer.web import http
from streamer.web.guard import SITE_KEY_HEADER, TOKEN_HEADER, Guard, Refusal


@dataclass
class Beacon:
    """A collect body taken apart: the events and what came with them.

    A body is a JSON array of events, one event object, or an envelope
    ``{"site_key": ..., "token": ..., "tokens": {...}, "events": [...]}``.

    >>> Beacon.parse(b'{"site_key": "pk", "token": "v1.x", "events": [{"type": "x"}]}')
    Beacon(items=[{'type': 'x'}], site_key='pk', token='v1.x', tokens=None)
    >>> Beacon.parse(b'[1, 2]').items, Beacon.parse(b'{"type": "x"}').items
    ([1, 2], [{'type': 'x'}])
    >>> Beacon.parse(b'"x"')
    Traceback (most recent call last):
    ...
    streamer.web.collect.Refused: body must be a JSON array of events
    """

    items: list[Any]
    site_key: Any = None
    token: Any = None
    tokens: Any = field(default=None)

    @classmethod
    def parse(cls, body: bytes) -> Beacon:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(Refusal(400, "not_json", str(exc))) from None
        beacon = cls([])
        if isinstance(decoded, dict) and "events" in decoded and "type" not in decoded:
            beacon.site_key = decoded.get("site_key")
            beacon.token = decoded.get("token")
            beacon.tokens = decoded.get("tokens")
            decoded = decoded["events"]
        if isinstance(decoded, dict):
            decoded = [decoded]
        if not isinstance(decoded, list):
            raise Refused(Refusal(400, "not_object", "body must be a JSON array of events"))
        beacon.items = decoded
        return beacon


class Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


def register(app: faust.App, topics: Topics, metrics: Metrics, guard: Guard, max_bytes: int) -> None:
    def refuse(view: View, refusal: Refusal, cors: dict[str, str]) -> Response:
        metrics.collect_requests.labels(str(refusal.status)).inc()
        return http.refuse(view, metrics, "collect", refusal, cors)

    @app.page("/v1/collect")
    class Collect(View):
        """A beacon of one session's events (or of a few sessions, each with its token);
        answered 202 with what was accepted and why the rest was not.

        Browsers send it as text/plain (sendBeacon, or fetch without a preflight), the
        token in the body.
        """

        async def options(self, request: Request) -> Response:
            return http.preflight(guard, self, request, metrics, "collect")

        async def post(self, request: Request) -> Response:
            caller = http.admit(guard, request)
            if caller.refusal:
                return refuse(self, caller.refusal, caller.cors)
            try:
                return await self._collect(request, caller)
            except Refused as exc:
                return refuse(self, exc.refusal, caller.cors)
            except Exception as exc:  # noqa: BLE001 - the answer is still JSON, and counted
                return refuse(self, http.unexpected("collect", exc), caller.cors)

        async def _collect(self, request: Request, caller: http.Caller) -> Response:
            declared = request.content_length  # type: ignore[attr-defined]
            if declared is not None and declared > max_bytes:
                raise Refused(Refusal(413, "too_large", f"body is {declared} bytes, cap {max_bytes}"))
            body = await request.read()
            if len(body) > max_bytes:
                raise Refused(Refusal(413, "too_large", f"body is {len(body)} bytes, cap {max_bytes}"))
            beacon = Beacon.parse(body)
            _raise(guard.check_site_key(
                request.headers.get(SITE_KEY_HEADER) or request.query.get("site_key")
                or beacon.site_key))
            token = request.headers.get(TOKEN_HEADER) or beacon.token
            if guard.require_token and token is None and beacon.tokens is None:
                _raise(guard.check_tokens((), None, None))  # before any work on the events
            if len(beacon.items) > MAX_EVENTS_PER_RECORD:
                raise Refused(Refusal(413, "too_large", f"{len(beacon.items)} events, cap "
                                      f"{MAX_EVENTS_PER_RECORD} per request"))
            by_session, rejected = validate(beacon.items, metrics)
            _raise(guard.check_tokens(list(by_session), token, beacon.tokens))
            _raise(guard.check_beacon(caller.client, ((s, len(e)) for s, e in by_session.items())))
            acks = [await topics.events.send(key=session_id.encode(), value=orjson.dumps(events))
                    for session_id, events in by_session.items()]
            # Answer 202 only once the broker has the events: accepted is never lost.
            await asyncio.gather(*acks)
            metrics.collect_requests.labels("202").inc()
            return self.json(
                {"accepted": len(beacon.items) - len(rejected), "rejected": len(rejected),
                 "errors": rejected},
                status=202, headers=caller.cors or None,
            )


def _raise(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise Refused(refusal)


def validate(items: list[Any], metrics: Metrics, now_ms: int | None = None
             ) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """Valid events grouped by session, each stamped ``received_at`` (the server's
    clock, over anything a browser sent), and a ``{index, reason, detail}`` per
    refused one.

    >>> by_session, rejected = validate(
    ...     [{"session_id": "s", "type": "js_error", "ts": 1, "received_at": 5,
    ...       "message": "no user jo@example.com"}, {"type": "x"}], Metrics(), now_ms=7)
    >>> by_session["s"][0]["message"], by_session["s"][0]["received_at"], rejected[0]["reason"]
    ('no user [email]', 7, 'missing_field')
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    by_session: dict[str, list[Any]] = {}
    rejected = []
    for index, item in enumerate(items):
        try:
            event = validate_event(item, metrics.count_scrub)
        except InvalidEvent as exc:
            metrics.invalid_by_reason[exc.reason].inc()
            rejected.append({"index": index, "reason": exc.reason, "detail": exc.detail})
            continue
        event["received_at"] = now_ms
        by_session.setdefault(event["session_id"], []).append(event)
    return by_session, rejected
