"""The records every benchmark case consumes: built once, the same bytes for every pipeline.

Two kinds of traffic, both from :mod:`streamer.tools.simulate`:

- **storm**: every shopper lands on the shop and then walks into :data:`STORM_EPISODES`
  friction episodes in a row (``simulate.EPISODES``, drawn by its seeded generator): the
  traffic of an outage, when the worker must not fall behind. About 17% of its events
  raise a signal and 6% an intervention (measured in process on the default config).
- **simulator mix**: ``simulate.generate``'s normal mix (30% of shoppers meet one
  friction episode): about 2.4% of events raise a signal.

and three record shapes: per-session arrays of up to ``K`` events (a session's last
array is shorter), one event per record (what foreign producers send), and keyless
arrays of page views of distinct sessions (the memory line).

Records are ordered by the ``ts`` of their first event (ties: session, then position),
so sessions interleave as they do live and each session's events stay in order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from streamer.tools import simulate

#: Friction episodes per storm shopper (4: ~36 events per session, ~17% signals).
STORM_EPISODES = 4

Record = tuple[bytes | None, bytes]


@dataclass(frozen=True)
class Traffic:
    name: str
    sessions: list[simulate.SimSession]

    @property
    def events(self) -> int:
        return sum(len(s.events) for s in self.sessions)


def _cut(sessions: Iterable[simulate.SimSession], n_events: int) -> list[simulate.SimSession]:
    """Sessions until exactly ``n_events`` events (the last one cut short)."""
    out: list[simulate.SimSession] = []
    total = 0
    for s in sessions:
        take = min(len(s.events), n_events - total)
        if take < len(s.events):
            s = simulate.SimSession(s.session_id, s.events[:take], s.labels, s.friction)
        out.append(s)
        total += take
        if total >= n_events:
            break
    return out


def simulator_mix(n_events: int, seed: int = 1) -> Traffic:
    """``simulate.generate``'s default mix, ``n_events`` events."""
    return Traffic("simulator mix", _cut(simulate.generate(seed, n_events), n_events))


def _storm_sessions(seed: int) -> Iterable[simulate.SimSession]:
    # simulate.generate gives each friction shopper one episode (two at most); a storm
    # shopper meets STORM_EPISODES of them, built with the simulator's own builder.
    start = simulate.DEFAULT_START_TS
    names = list(simulate.EPISODES)
    weights = [simulate.EPISODES[n].weight for n in names]
    i = 0
    while True:
        rng = random.Random(f"frictionwatch-storm:{seed}:{i}")
        b = simulate._Builder(f"storm-{seed}-{i:06d}", start, rng)  # noqa: SLF001
        b.view("/")
        for name in rng.choices(names, weights, k=STORM_EPISODES):
            b.episode = name
            simulate.EPISODES[name].generate(b)
        yield simulate.SimSession(b.sid, b.events, b.labels, True)
        i += 1
        start += rng.randint(50, 200)


def storm(n_events: int, seed: int = 1) -> Traffic:
    """``n_events`` events of shoppers who each meet several friction episodes."""
    return Traffic("storm", _cut(_storm_sessions(seed), n_events))


def _ordered(keyed: list[tuple[int, int, int, bytes, bytes]]) -> list[Record]:
    keyed.sort(key=lambda r: r[:3])
    return [(key, value) for *_, key, value in keyed]


def arrays(traffic: Traffic, k: int) -> list[Record]:
    """Per-session arrays of up to ``k`` events, key = session id."""
    keyed = []
    for n, s in enumerate(traffic.sessions):
        key = s.session_id.encode()
        for i in range(0, len(s.events), k):
            chunk = s.events[i:i + k]
            keyed.append((chunk[0]["ts"], n, i, key, orjson.dumps(chunk)))
    return _ordered(keyed)


def singles(traffic: Traffic) -> list[Record]:
    """One event per record (a JSON object, not an array), key = session id."""
    keyed = []
    for n, s in enumerate(traffic.sessions):
        key = s.session_id.encode()
        for i, event in enumerate(s.events):
            keyed.append((event["ts"], n, i, key, orjson.dumps(event)))
    return _ordered(keyed)


def page_views(sessions: int, per_record: int = 20, prefix: str = "mem") -> list[Record]:
    """``sessions`` distinct sessions holding one page view each, in keyless arrays of
    ``per_record`` (a keyless record may mix sessions; each event goes to its own state)."""
    ts = simulate.DEFAULT_START_TS
    records: list[Record] = []
    for first in range(0, sessions, per_record):
        chunk = [{"session_id": f"{prefix}-{i:07d}", "type": "page_view", "ts": ts + i,
                  "event_id": f"{prefix}-{i:07d}-0", "page": "/"}
                 for i in range(first, min(first + per_record, sessions))]
        records.append((None, orjson.dumps(chunk)))
    return records


def events_in(records: Sequence[Record]) -> int:
    total = 0
    for _, value in records:
        decoded = orjson.loads(value)
        total += len(decoded) if isinstance(decoded, list) else 1
    return total
