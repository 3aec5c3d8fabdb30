"""A small Faust app for the lag test: a gated agent on the events topic plus the lag export.

``python -m tests.deploy.lag_app BROKER PORT GATE``: the agent holds its first record
until the file ``GATE`` exists, so the test controls when the lag can drain. /metrics
serves the registry that :func:`streamer.stream.lag.register` was given. Faust's data
directory goes beside ``GATE``, not into the working directory.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable
from pathlib import Path

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamer.stream import lag
from streamer.stream.topics import EVENTS_TOPIC


def build(broker: str, port: int, gate: Path) -> faust.App:
    app = faust.App(
        "fw-lag-test", broker=f"kafka://{broker}", store="memory://", autodiscover=False,
        datadir=str(gate.parent / "faust-data"),
        topic_partitions=2, consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        broker_commit_interval=0.5, web_enabled=True, web_bind="127.0.0.1",
        web_host="127.0.0.1", web_port=port, loghandlers=[],
    )
    events = app.topic(EVENTS_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=2)
    registry = CollectorRegistry()
    lag.register(app, [events], registry, interval=1.0)

    @app.agent(events, name="gated")
    async def gated(stream: AsyncIterable[bytes]) -> None:
        async for _ in stream:
            while not gate.exists():
                await asyncio.sleep(0.1)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(registry),
                              headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


if __name__ == "__main__":
    broker, port, gate = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    app = build(broker, port, gate)
    sys.argv[1:] = []
    faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False).execute_from_commandline()
