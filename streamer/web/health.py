"""``/healthz`` and ``/metrics``: what load balancers and Prometheus read."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.metrics import Metrics


def register(app: faust.App, metrics: Metrics) -> None:
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
