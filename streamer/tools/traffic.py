"""Built-in synthetic traffic for ``frictionwatch run``: simulated shoppers, live.

Sessions from :mod:`streamer.tools.simulate` are stamped from the current time and sent as
beacons (one record per session per batch) paced by their event time, ``speed`` times
faster than real time, so the demo shows nudges and handoffs within seconds.

With an ``outage`` (``run --outage START_MIN:DURATION_MIN``, minutes of this traffic's
time: at ``speed`` 20 a minute passes every 3 s) the payment gateway fails for every
shopper who pays in that window (:mod:`streamer.tools.outage`).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson

from streamer.stream.app import Service
from streamer.tools import simulate
from streamer.tools.outage import Outage, inject

SESSIONS_PER_WAVE = 40


def attach(service: Service, *, speed: float, seed: int, outage: Outage | None = None) -> None:
    """``outage``: its window in ms of traffic time since the traffic began
    (``Outage.parse(spec, start_ts=0)``)."""
    topic = service.topics.events

    @service.app.task
    async def feed_synthetic_traffic() -> None:
        began_ms = int(time.time() * 1000)
        for wave in itertools.count():
            start_ms = int(time.time() * 1000)
            sessions = list(simulate.generate(seed * 100_000 + wave, SESSIONS_PER_WAVE,
                                              start_ts=start_ms))
            window = wave_outage(outage, began_ms, start_ms, speed) if outage else None
            if window is not None:
                sessions = inject(sessions, window)
            started = time.monotonic()
            for key, value in simulate.interleave(sessions):
                first_ts = orjson.loads(value)[0]["ts"]
                delay = (first_ts - start_ms) / 1000 / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
                await topic.send(key=key, value=value)


def wave_outage(outage: Outage, began_ms: int, start_ms: int, speed: float) -> Outage | None:
    """The outage in the event time of a wave that starts at ``start_ms`` (wall clock),
    or None when the wave is past it. A wave's event at ``ts`` is sent at wall time
    ``start_ms + (ts - start_ms) / speed``, which is ``speed`` times that much traffic
    time since ``began_ms``.

    >>> o = Outage(60_000, 120_000)  # traffic minute 1 to 2; at speed 20: 3 s to 6 s
    >>> w = wave_outage(o, began_ms=0, start_ms=2_000, speed=20)
    >>> w.start_ts, w.end_ts  # the wave began at traffic time 40 s
    (22000, 82000)
    >>> wave_outage(o, began_ms=0, start_ms=6_000, speed=20) is None
    True
    """
    shift = start_ms - (start_ms - began_ms) * speed
    low, high = max(0, round(outage.start_ts + shift)), round(outage.end_ts + shift)
    if high <= max(low, start_ms):
        return None
    return Outage(low, high, outage.reason, outage.code)
