"""``POST /v1/collect``: a browser's beacon in, one Kafka record per session out.

This is where an event enters the system. The body is checked (origin, client
budget, size, JSON, site key, per-session budget), each event validated, and the
events of each session are published together as one record on
``frictionwatch.events``, keyed by session id: the unit Faust pays for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from detectors.errors import InvalidEvent
from detectors.events import MAX_EVENTS_PER_RECORD, validate_event
from streamer.metrics import Metrics
from streamer.stream.topics import Topics
from streamer.web import http
from streamer.web.guard import SITE_KEY_HEADER, Guard, Refusal


def register(app: faust.App, topics: Topics, metrics: Metrics, guard: Guard, max_bytes: int) -> None:
    def refuse(view: View, refusal: Refusal, cors: dict[str, str]) -> Response:
        metrics.collect_requests.labels(str(refusal.status)).inc()
        return http.refuse(view, metrics, "collect", refusal, cors)

    @app.page("/v1/collect")
    class Collect(View):
        """A beacon: a JSON array of events (any sessions); answered 202 per event.

        Browsers may wrap it as ``{"site_key": ..., "events": [...]}`` and send it as
        text/plain (sendBeacon, or fetch without a preflight).
        """

        async def options(self, request: Request) -> Response:
            return http.preflight(guard, self, request, metrics, "collect")

        async def post(self, request: Request) -> Response:
            caller = http.admit(guard, request)
            cors = caller.cors
            if caller.refusal:
                return refuse(self, caller.refusal, cors)
            declared = request.content_length  # type: ignore[attr-defined]
            if declared is not None and declared > max_bytes:
                return refuse(self, Refusal(413, "too_large",
                                            f"body is {declared} bytes, cap {max_bytes}"), cors)
            body = await request.read()
            if len(body) > max_bytes:
                return refuse(self, Refusal(413, "too_large",
                                            f"body is {len(body)} bytes, cap {max_bytes}"), cors)
            try:
                items = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return refuse(self, Refusal(400, "not_json", str(exc)), cors)
            site_key: Any = None
            if isinstance(items, dict) and "events" in items and "type" not in items:
                site_key, items = items.get("site_key"), items["events"]
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                return refuse(self, Refusal(400, "not_object",
                                            "body must be a JSON array of events"), cors)
            refusal = guard.check_site_key(
                request.headers.get(SITE_KEY_HEADER) or request.query.get("site_key") or site_key)
            if refusal:
                return refuse(self, refusal, cors)
            if len(items) > MAX_EVENTS_PER_RECORD:
                return refuse(self, Refusal(413, "too_large", f"{len(items)} events, cap "
                                            f"{MAX_EVENTS_PER_RECORD} per request"), cors)
            by_session, rejected = _validate(items, metrics)
            refusal = guard.check_sessions((s, len(e)) for s, e in by_session.items())
            if refusal:
                return refuse(self, refusal, cors)
            acks = [await topics.events.send(key=session_id.encode(), value=orjson.dumps(events))
                    for session_id, events in by_session.items()]
            # Answer 202 only once the broker has the events: accepted is never lost.
            await asyncio.gather(*acks)
            metrics.collect_requests.labels("202").inc()
            return self.json(
                {"accepted": len(items) - len(rejected), "rejected": len(rejected),
                 "errors": rejected},
                status=202, headers=cors or None,
            )


def _validate(
    items: list[Any], metrics: Metrics
) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """Valid events grouped by session, and a ``{index, reason, detail}`` per refused one."""
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
    return by_session, rejected
