"""A simulated outage: the payment gateway fails for everyone for a while.

:func:`inject` rewrites generated sessions (see :mod:`streamer.tools.simulate`): every session
whose payment attempt falls between ``start_ts`` and ``end_ts`` of event time gets a
``checkout_failed`` (reason "timeout", code "gateway_timeout") instead of what followed,
retries once or twice (each retry inside the window fails too, one after it succeeds)
and then pays or leaves. Events stay valid, in ``ts`` order, with unique event ids; the
labels of events that no longer happen are dropped, and a session that now fails twice
gets a ``checkout_failure`` label with ``episode`` "outage". The window itself is the
:class:`Outage`, so tests know when it began and ended.

>>> from streamer.tools import simulate
>>> outage = Outage.parse("2:10")
>>> sessions = inject(simulate.generate(seed=3, sessions=300), outage)
>>> hit = [s for s in sessions if any(e.get("code") == "gateway_timeout" and
...        outage.start_ts <= e["ts"] for e in s.events)]
>>> len(hit) > 20, all(e["ts"] <= f["ts"] for s in hit for e, f in zip(s.events, s.events[1:]))
(True, True)
>>> labels = [lb for s in sessions for lb in s.labels if lb["episode"] == "outage"]
>>> len(labels) > 10, all(lb["onset_ts"] in outage for lb in labels)
(True, True)
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from streamer.tools.simulate import DEFAULT_START_TS, SimSession

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Outage:
    """Payments fail for every session between ``start_ts`` and ``end_ts`` (ms)."""

    start_ts: int
    end_ts: int
    reason: str = "timeout"
    code: str = "gateway_timeout"

    def __post_init__(self) -> None:
        if not 0 <= self.start_ts < self.end_ts:
            raise ValueError(f"outage {self.start_ts}..{self.end_ts}: need 0 <= start < end")

    @classmethod
    def parse(cls, spec: str, start_ts: int = DEFAULT_START_TS) -> Outage:
        """``START_MIN:DURATION_MIN``, minutes after the traffic's ``start_ts``.

        >>> o = Outage.parse("30:10", start_ts=0)
        >>> o.start_ts, o.end_ts
        (1800000, 2400000)
        """
        try:
            start, duration = (float(part) for part in spec.split(":"))
        except ValueError:
            raise ValueError(f"outage {spec!r}: expected START_MIN:DURATION_MIN, e.g. 30:10") from None
        if start < 0 or duration <= 0:
            raise ValueError(f"outage {spec!r}: start must be >= 0 and duration > 0 minutes")
        begin = start_ts + round(start * MINUTE_MS)
        return cls(begin, begin + round(duration * MINUTE_MS))

    def __contains__(self, ts: int) -> bool:
        return self.start_ts <= ts < self.end_ts


def inject(sessions: Iterable[SimSession], outage: Outage) -> list[SimSession]:
    """The sessions, those that pay during the outage rewritten (see the module doc)."""
    return [_session(s, outage) for s in sessions]


def _session(session: SimSession, outage: Outage) -> SimSession:
    events = session.events
    at = next((i for i, e in enumerate(events)
               if e["type"] == "checkout_attempt" and e["ts"] in outage), None)
    if at is None:
        return session
    rng = random.Random(f"frictionwatch-outage:{session.session_id}")
    kept = events[: at + 1]
    attempt = kept[-1]
    ts = attempt["ts"]
    failures = 0
    for e in kept:
        if e["type"] == "purchase":
            failures = 0
        elif e["type"] == "checkout_failed":
            failures += 1
    labels = [lb for lb in session.labels if lb["onset_ts"] <= ts]
    labelled = any(lb["type"] == "checkout_failure" for lb in labels)
    base: dict[str, Any] = {k: attempt[k] for k in ("session_id", "user_id") if k in attempt}
    page = attempt.get("page", "/checkout")
    out = list(kept)

    def emit(kind: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {**base, "type": kind, "ts": ts, "page": page,
                 "event_id": f"{session.session_id}-o{len(out) - at:03d}", **fields}
        out.append(event)
        return event

    tries = rng.choices((1, 2, 3), (0.2, 0.5, 0.3))[0]
    paid = False
    for i in range(tries):
        if i:
            ts += rng.randint(2000, 8000)  # reads the error, tries again
            emit("click", x=1000 + rng.randint(-4, 4), y=700 + rng.randint(-4, 4),
                 target="button#pay", text="Pay now", reaction_ms=rng.randint(80, 400))
            ts += rng.randint(20, 200)
            emit("checkout_attempt", step="payment")
            if ts not in outage:
                ts += rng.randint(1200, 4000)
                emit("purchase", value=round(rng.uniform(9.0, 180.0), 2))
                ts += rng.randint(300, 900)
                page = "/order/confirmed"
                emit("page_view")
                paid = True
                break
        ts += rng.randint(8000, 30_000)  # the gateway times out
        failed = emit("checkout_failed", reason=outage.reason, code=outage.code)
        failures += 1
        if failures == 2 and not labelled:
            labels.append({"session_id": session.session_id, "type": "checkout_failure",
                           "onset_ts": failed["ts"], "episode": "outage"})
            labelled = True
    if paid or rng.random() < 0.6:
        ts += rng.randint(500, 3000)
        emit("session_end")
    return replace(session, events=out, labels=labels, friction=bool(labels))
