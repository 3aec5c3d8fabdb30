"""``/healthz``, ``/readyz`` and ``/metrics``: what probes, load balancers and Prometheus read.

What each reason means, and which probe acts on it: :mod:`streamer.stream.health` and
the README's "Health" section.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.metrics import Metrics
from streamer.stream import health
from streamer.stream.topics import EVENTS_TOPIC


def register(app: faust.App, metrics: Metrics) -> health.Monitor:
    monitor = health.install(app, EVENTS_TOPIC, metrics.registry)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            v = monitor.health.liveness()
            body: dict[str, object] = {"status": "ok" if v.ok else "degraded", "app": app.conf.id}
            if not v.ok:
                body.update(reasons=v.reasons, details=v.details)
            return self.json(body, status=v.http_status)

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            v = monitor.health.readiness()
            body: dict[str, object] = {"ready": v.ok, "app": app.conf.id, "partitions": v.partitions}
            if not v.ok:
                body.update(reasons=v.reasons, details=v.details)
            return self.json(body, status=v.http_status)

    @app.page("/metrics")
    class Metrics_(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type=, so the header goes as is.
            return self.bytes(
                generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

    return monitor
