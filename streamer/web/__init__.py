"""The browser edge of a worker: everything a web page or a load balancer calls.

- :mod:`~streamer.web.collect`: ``POST /v1/collect``, where events come in;
- :mod:`~streamer.web.sessions`: session tokens and the live intervention stream (SSE),
  fed by :mod:`~streamer.web.delivery`;
- :mod:`~streamer.web.health`: ``/healthz`` and ``/metrics``;
- :mod:`~streamer.web.static`: the JS SDK (``frictionwatch.js``) and the demo shop;
- :mod:`~streamer.web.console`: the operator console at ``/`` (SSE from this worker's
  counters and the same feed, which also reads ``frictionwatch.incidents`` for it);
- :mod:`~streamer.web.guard`, :mod:`~streamer.web.tokens`, :mod:`~streamer.web.ratelimit`:
  who may call, and how often.
"""

from __future__ import annotations

import faust
from aiohttp import web as aioweb

from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.stream.topics import INCIDENTS_TOPIC, INTERVENTIONS_TOPIC, Topics
from streamer.web import collect, console, health, sessions, static
from streamer.web.console.hub import ConsoleHub
from streamer.web.delivery import Fanout, InterventionFeed
from streamer.web.guard import Guard


def register(app: faust.App, topics: Topics, settings: Settings, metrics: Metrics) -> Fanout:
    """Every HTTP endpoint of a worker, and the intervention feed behind the streams."""
    guard = Guard.from_settings(settings)
    fanout = Fanout(metrics)
    hub = ConsoleHub(metrics, max_streams=settings.console_streams)
    fanout.taps.append(hub.intervention)
    feed = InterventionFeed(settings.bootstrap_servers, INTERVENTIONS_TOPIC, fanout,
                            client_id=f"{settings.app_id}-feed",
                            also={INCIDENTS_TOPIC: hub.incident})

    @app.task
    async def feed_interventions() -> None:
        await feed.run()

    @app.timer(interval=1.0)
    async def sample_for_console() -> None:
        hub.sample()

    async def close_streams(_: aioweb.Application) -> None:
        fanout.close_all("shutdown")

    app.web.web_app.on_shutdown.append(close_streams)  # type: ignore[attr-defined]
    collect.register(app, topics, metrics, guard, settings.max_record_bytes)
    health.register(app, metrics)
    sessions.register(app, metrics, guard, fanout)
    static.register_sdk(app)
    if settings.demo:
        static.register_demo(app, guard)
    console.register(app, settings, metrics, hub)
    return fanout
