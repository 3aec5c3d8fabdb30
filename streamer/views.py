"""HTTP on the worker: the browser beacon endpoint, health and metrics."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from detectors.errors import InvalidEvent
from detectors.events import MAX_EVENTS_PER_RECORD, validate_event
from streamer.metrics import Metrics
from streamer.topics import Topics


def register(app: faust.App, topics: Topics, metrics: Metrics, max_bytes: int) -> None:
    def error(view: View, status: int, reason: str, detail: str) -> Response:
        metrics.collect_requests.labels(str(status)).inc()
        return view.json({"error": reason, "detail": detail}, status=status)

    @app.page("/v1/collect")
    class Collect(View):
        """A beacon: a JSON array of events (any sessions); answered 202 per event."""

        async def post(self, request: Request) -> Response:
            declared = request.content_length
            if declared is not None and declared > max_bytes:
                return error(self, 413, "too_large", f"body is {declared} bytes, cap {max_bytes}")
            body = await request.read()
            if len(body) > max_bytes:
                return error(self, 413, "too_large", f"body is {len(body)} bytes, cap {max_bytes}")
            try:
                items = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return error(self, 400, "not_json", str(exc))
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                return error(self, 400, "not_object", "body must be a JSON array of events")
            if len(items) > MAX_EVENTS_PER_RECORD:
                return error(self, 413, "too_large",
                             f"{len(items)} events, cap {MAX_EVENTS_PER_RECORD} per request")
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
            for session_id, events in by_session.items():
                # One record per session per beacon: the unit Faust pays for.
                await topics.events.send(key=session_id.encode(), value=orjson.dumps(events))
            metrics.collect_requests.labels("202").inc()
            return self.json(
                {"accepted": len(items) - len(rejected), "rejected": len(rejected),
                 "errors": rejected},
                status=202,
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
