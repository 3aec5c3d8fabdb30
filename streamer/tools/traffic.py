"""Built-in synthetic traffic for ``frictionwatch run``: simulated shoppers, live.

Sessions from :mod:`streamer.tools.simulate` are stamped from the current time and sent as
beacons (one record per session per batch) paced by their event time, ``speed`` times
faster than real time, so the demo shows nudges and handoffs within seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson

from streamer.stream.app import Service
from streamer.tools import simulate

SESSIONS_PER_WAVE = 40


def attach(service: Service, *, speed: float, seed: int) -> None:
    topic = service.topics.events

    @service.app.task
    async def feed_synthetic_traffic() -> None:
        for wave in itertools.count():
            start_ms = int(time.time() * 1000)
            sessions = simulate.generate(seed * 100_000 + wave, SESSIONS_PER_WAVE,
                                         start_ts=start_ms)
            started = time.monotonic()
            for key, value in simulate.interleave(sessions):
                first_ts = orjson.loads(value)[0]["ts"]
                delay = (first_ts - start_ms) / 1000 / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
                await topic.send(key=key, value=value)
