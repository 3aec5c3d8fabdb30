"""Fleet-wide incidents: one failure, on one page route, suddenly far above its usual rate.

Sessions have friction all the time; an *incident* is when many of them hit the same
failure at once (the payment gateway is down and every checkout fails), or when a
failure that never happened starts happening (a handful of times a day is enough).
The input is every signal of every session, reduced to an observation ``(ts, route,
failure, source)``: ``failure`` is the signal's detector, ``route`` the normalized page
(:mod:`detectors.routes`) and ``source`` the session, so one customer retrying ten
times counts once: incidents are about how many customers are affected.

Each key ``(route, failure)`` has its own small state (a JSON dict, bounded in size);
time is the observations' ``ts`` and nothing else. Callers pass the fleet's clock there
(the server's receive time of the event behind the signal, see
:mod:`streamer.stream.pipeline`), never a browser's ``ts``: one far-future time would
move a key's clock past every real observation, and a fast clock would end the learning
period early. What the state remembers, per key:

- ``short``: affected sessions, exponentially decayed with time constant ``short_ms``
  (about "sessions in the last minute");
- ``baseline``: the same with ``baseline_ms`` (the usual rate over the last hours); frozen
  while an incident is open, so an outage does not teach its own rate as normal;
- ``history``: the same with ``history_ms`` (what this key did over the last week);
- the ``ts`` of its last :data:`MAX_RECENT` affected sessions and a hash of its last
  :data:`MAX_SEEN` sessions.

Decayed sums are order independent (a late observation is added with the weight it
would have had), so partitions consumed at different speeds do not confuse them.

**Rate rule** (opens within about a minute of a real outage): expected short count
``E = max(rate of baseline - short, floor_per_day) * short_ms`` (``baseline - short``: the
baseline without the sessions the short count holds); open when ``round(short) >= min_count``,
``short >= ratio * E`` and ``P(Poisson(E) >= round(short)) < alpha``. Close once ``short`` has stayed
below ``max(ratio * E, min_count)`` for ``close_ms``; the close ``ts`` is that moment,
computed from the decay, not when somebody looked.

**Sparse rule** (a few a day): open when at least ``sparse_count`` affected sessions
fall within ``sparse_window_ms`` and that many would be improbable (``< alpha``) at the
key's rate before the window (from ``history``, at least ``floor_per_day``). Close after
``sparse_window_ms`` without one.

Neither rule opens while the detector is learning: the rate rule not before
``learn_ms`` of event time since observation began, the sparse rule not before it has
watched ``sparse_after_ms`` before its window (a week by default: "never happened"
needs a history; after one day a key that happens a few times a day may well have
been quiet by chance, and 52 h of simulated traffic showed exactly that).
Observation began at ``since``: the first observation of the whole fleet, not of the
key, so a failure never seen before is new, not unknown.

>>> detector = IncidentDetector(learn_ms=0)
>>> book = IncidentBook(detector)
>>> minute = 60_000
>>> quiet = [c for i in range(180) for c in book.observe(i * minute, "/checkout",
...          "checkout_failure", source=f"s{i}")]   # one failing session a minute, 3 h
>>> outage = [c for i in range(60) for c in book.observe(180 * minute + i * 1000, "/checkout",
...           "checkout_failure", source=f"o{i}")]  # then one a second
>>> quiet, [(c["kind"], c["key"], (c["ts"] - 180 * minute) // 1000) for c in outage]
([], [('incident_open', '/checkout|checkout_failure', 8)])
>>> after = book.advance(200 * minute)
>>> [(c["kind"], c["incident_id"] == outage[0]["incident_id"], c["ts"] > 181 * minute)
...  for c in after]
[('incident_close', True, True)]
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson

from detectors.config import build, check, setting
from detectors.errors import ConfigError

State = dict[str, Any]
Change = dict[str, Any]

DAY_MS: Final = 86_400_000
#: Timestamps of recent affected sessions kept per key (the sparse rule's window).
MAX_RECENT: Final = 16
#: Sessions remembered per key so a session counts once (crc32 of its id).
MAX_SEEN: Final = 32
#: A key name: ``route|failure``.
SEP: Final = "|"


def key_of(route: str, failure: str) -> str:
    """The incident key, as in records, Kafka keys and logs.

    >>> key_of("/checkout", "checkout_failure")
    '/checkout|checkout_failure'
    """
    return f"{route}{SEP}{failure}"


#: Key names of states written before they were spelled out (changelogs keep them).
_OLD_KEYS: Final = {"t": "clock_ts", "f": "short", "w": "history", "b": "baseline",
                    "tb": "baseline_ts"}


def decode_state(raw: bytes) -> State:
    """A key's stored state, whatever version of this module wrote it.

    >>> decode_state(b'{"t": 5, "f": 1.5, "open": null}')
    {'open': None, 'clock_ts': 5, 'short': 1.5}
    """
    state: State = orjson.loads(raw)
    for old, new in _OLD_KEYS.items():
        if old in state:
            state[new] = state.pop(old)
    return state


def poisson_sf(k: float, mu: float) -> float:
    """``P(X >= k)`` for ``X ~ Poisson(mu)``; ``k`` is rounded down.

    >>> round(poisson_sf(3, 1.0), 6), poisson_sf(0, 5.0), poisson_sf(40, 2.0) < 1e-20
    (0.080301, 1.0, True)
    """
    n = math.floor(k)
    if n <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    log_mu = math.log(mu)

    def pmf(i: int) -> float:
        return math.exp(-mu + i * log_mu - math.lgamma(i + 1))

    if n <= mu:  # the tail is large: 1 - lower sum is exact enough
        return max(0.0, 1.0 - math.fsum(pmf(i) for i in range(n)))
    term = pmf(n)
    total, i = term, n
    while term > total * 1e-17 and i < n + 10_000:
        i += 1
        term *= mu / i
        total += term
    return min(1.0, total)


@dataclass(kw_only=True)
class IncidentDetector:
    """The rules and their settings (immutable); per-key state is passed in.

    Every setting is checked here and named in the error (config section
    ``[incidents]``). Times are ms of event time.

    >>> IncidentDetector.from_config({"min_count": 0})
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: incidents.min_count = 0 is out of range: allowed 1 to 10000
    >>> IncidentDetector.from_config({"treshold": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: unknown key incidents.treshold (known: alpha, baseline_ms, ...)
    """

    section: ClassVar[str] = "incidents"
    section_doc: ClassVar[str] = (
        "Fleet-wide incidents per route x failure (the signal's detector), counted in affected\n"
        "sessions (a session counts once). See detectors/incidents.py."
    )

    short_ms: int = setting(60_000, low=1_000, high=DAY_MS,
                            doc='time constant of the "last minute" count')
    baseline_ms: int = setting(7_200_000, low=60_000, high=30 * DAY_MS,
                               doc="the usual rate, over about 2 hours (> short_ms)")
    history_ms: int = setting(7 * DAY_MS, low=60_000, high=365 * DAY_MS,
                              doc="the long memory of the sparse rule, a week (>= baseline_ms)")
    learn_ms: int = setting(1_800_000, low=0, high=30 * DAY_MS,
                            doc="no rate-rule incident this soon after start")
    min_count: int = setting(5, low=1, high=10_000, doc="sessions in the short count, at least")
    ratio: float = setting(2.0, low=1.0, high=1000.0,
                           doc="... and this many times the usual count")
    alpha: float = setting(1e-6, low=1e-15, high=0.1,
                           doc="... and this improbable under Poisson(usual)")
    floor_per_day: float = setting(0.05, low=1e-6, high=1e6,
                                   doc="the usual rate of a never-seen failure")
    close_ms: int = setting(180_000, low=0, high=30 * DAY_MS,
                            doc="closes after this long back below the open level")
    sparse_count: int = setting(4, low=2, high=MAX_RECENT,
                                doc="a failure this many times within the window...")
    sparse_window_ms: int = setting(DAY_MS, low=60_000, high=30 * DAY_MS,
                                    doc="... within a day, improbable by alpha")
    sparse_after_ms: int = setting(7 * DAY_MS, low=0, high=365 * DAY_MS,
                                   doc="watched this long before the window first")
    ignore: Collection[str] = setting(("anomalous_session",),
                                      doc="detectors that are not failures (model opinions)")
    _floor_rate: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        check(self)
        if not self.short_ms < self.baseline_ms <= self.history_ms:
            raise ConfigError(
                f"incidents: short_ms = {self.short_ms} < baseline_ms = {self.baseline_ms} "
                f"<= history_ms = {self.history_ms} must hold"
            )
        self.ratio, self.alpha = float(self.ratio), float(self.alpha)
        self.floor_per_day = float(self.floor_per_day)
        self.ignore = frozenset(self.ignore)
        self._floor_rate = self.floor_per_day / DAY_MS

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> IncidentDetector:
        """Build from the ``[incidents]`` table; unknown keys are errors, not ignored."""
        detector: IncidentDetector = build(cls, section)
        return detector

    # -- state --------------------------------------------------------------------------
    def new_state(self, route: str, failure: str, since: int) -> State:
        """A key nobody saw yet; ``since`` is when the fleet's observation began."""
        return {
            "route": route, "failure": failure, "since": since, "clock_ts": since,
            "short": 0.0, "history": 0.0, "baseline_ts": since, "baseline": 0.0,
            "recent": [], "seen": [], "open": None,
        }

    def observe(self, state: State, ts: int, source: str | None = None) -> list[Change]:
        """One affected session at ``ts``; returns the changes (a close, an open)."""
        changes = self.advance(state, ts)
        if source is not None:
            tag = zlib.crc32(source.encode())
            if tag in state["seen"]:
                return changes  # this session already counts
            state["seen"].append(tag)
            del state["seen"][:-MAX_SEEN]
        now = state["clock_ts"]
        weight_f = math.exp(-(now - ts) / self.short_ms) if ts < now else 1.0
        weight_w = math.exp(-(now - ts) / self.history_ms) if ts < now else 1.0
        state["short"] += weight_f
        state["history"] += weight_w
        recent = state["recent"]
        recent.append(ts)
        recent.sort()
        del recent[:-MAX_RECENT]
        incident = state["open"]
        if incident is not None:
            if incident["rule"] == "rate" and state["short"] >= incident["level"]:
                incident["quiet"] = None
            return changes
        opened = self._try_open(state, now)
        if opened is not None:
            changes.append(opened)
        else:
            tb = state["baseline_ts"]
            state["baseline"] += math.exp(-(tb - ts) / self.baseline_ms) if ts < tb else 1.0
        return changes

    def advance(self, state: State, ts: int) -> list[Change]:
        """Let event time pass to ``ts`` with no observation; may close the incident."""
        t = state["clock_ts"]
        if ts <= t:
            return []
        f0 = state["short"]
        dt = ts - t
        state["short"] = f0 * math.exp(-dt / self.short_ms)
        state["history"] *= math.exp(-dt / self.history_ms)
        state["clock_ts"] = ts
        incident = state["open"]
        if incident is None:
            state["baseline"] *= math.exp(-(ts - state["baseline_ts"]) / self.baseline_ms)
            state["baseline_ts"] = ts
            return []
        if incident["rule"] == "sparse":
            closes_at = state["recent"][-1] + self.sparse_window_ms
        else:
            level = incident["level"]
            if incident["quiet"] is None and state["short"] < level:
                # f decays monotonically between observations: when did it cross?
                crossed = t if f0 < level else t + self.short_ms * math.log(f0 / level)
                incident["quiet"] = math.ceil(crossed)
            if incident["quiet"] is None:
                return []
            closes_at = incident["quiet"] + self.close_ms
        if closes_at > ts:
            return []
        return [self._close(state, closes_at)]

    # -- rules --------------------------------------------------------------------------
    def _try_open(self, state: State, now: int) -> Change | None:
        age = now - state["since"]
        if age >= self.learn_ms:
            f = state["short"]
            # The usual rate before what f counts: a burst is not its own baseline.
            expected = self._rate(max(0.0, state["baseline"] - f), self.baseline_ms, age) * self.short_ms
            n = round(f)  # sessions "in the last short_ms", a few ms of decay forgiven
            if (n >= self.min_count and f >= self.ratio * expected
                    and poisson_sf(n, expected) < self.alpha):
                level = max(self.ratio * expected, float(self.min_count))
                return self._open(state, now, "rate", f, expected, level=level)
        if age - self.sparse_window_ms >= self.sparse_after_ms:
            start = now - self.sparse_window_ms
            inside = [r for r in state["recent"] if r > start]
            n = len(inside)
            if n >= self.sparse_count:
                # The key's rate before the window: its week without the window's
                # sessions, over the (decayed) time observed before the window.
                h = self.history_ms
                before = state["history"] - math.fsum(math.exp(-max(0, now - r) / h) for r in inside)
                exposure = h * (math.exp(-self.sparse_window_ms / h) - math.exp(-age / h))
                rate = max(max(0.0, before) / max(exposure, 1.0), self._floor_rate)
                expected = rate * self.sparse_window_ms
                if poisson_sf(n, expected) < self.alpha:
                    return self._open(state, now, "sparse", n, expected)
        return None

    def _rate(self, decayed: float, tau: int, age: int) -> float:
        """Events per ms from a decayed count, corrected for a history shorter than tau."""
        seen_for = tau * -math.expm1(-max(age, 1) / tau)
        return max(decayed / seen_for, self._floor_rate)

    def _open(
        self, state: State, ts: int, rule: str, count: float, expected: float, level: float = 0.0
    ) -> Change:
        key = key_of(state["route"], state["failure"])
        incident_id = "inc-" + hashlib.sha256(f"{key}@{ts}".encode()).hexdigest()[:16]
        state["open"] = {"id": incident_id, "ts": ts, "rule": rule, "level": round(level, 4),
                         "baseline": round(expected, 6), "quiet": None}
        return self._record(state, "incident_open", ts, count)

    def _close(self, state: State, ts: int) -> Change:
        incident = state["open"]
        count = 0.0
        if incident["rule"] == "rate":  # f at the close, before the decay since then
            count = state["short"] * math.exp(min(700.0, max(0, state["clock_ts"] - ts) / self.short_ms))
        change = self._record(state, "incident_close", ts, min(count, incident["level"]))
        change["opened_ts"] = incident["ts"]
        # Back to learning the usual rate from now on; the incident's sessions are its own.
        state["open"] = None
        state["baseline_ts"] = max(state["baseline_ts"], ts)
        state["recent"] = []
        return change

    def _record(self, state: State, kind: str, ts: int, count: float) -> Change:
        route, failure, incident = state["route"], state["failure"], state["open"]
        return {
            "kind": kind, "ts": ts, "key": key_of(route, failure), "route": route,
            "failure": failure, "rule": incident["rule"], "count": round(count, 3),
            "baseline": incident["baseline"], "incident_id": incident["id"],
        }


class IncidentBook:
    """Every key's state in a dict: the whole fleet in one process (replay, tests).

    The stream keeps the same per-key states in a Faust table instead, partitioned by
    key; this class is the reference it must agree with.
    """

    def __init__(self, detector: IncidentDetector) -> None:
        self.detector = detector
        self.states: dict[str, State] = {}
        self.since: int | None = None
        self.watermark: int | None = None

    def observe(
        self, ts: int, route: str, failure: str, source: str | None = None
    ) -> list[Change]:
        """Closes due by ``ts`` on any key, then this observation's own changes."""
        if failure in self.detector.ignore:
            return []
        changes = self.advance(ts)
        if self.since is None:
            self.since = ts
        key = key_of(route, failure)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = self.detector.new_state(route, failure, self.since)
        changes += self.detector.observe(state, ts, source)
        return changes

    def advance(self, ts: int) -> list[Change]:
        """Event time reached ``ts``: close what is due, in ``ts`` order."""
        if self.watermark is not None and ts <= self.watermark:
            return []
        self.watermark = ts
        changes: list[Change] = []
        for state in self.states.values():
            if state["open"] is not None:
                changes += self.detector.advance(state, ts)
        changes.sort(key=lambda c: c["ts"])
        return changes

    def open_keys(self) -> list[str]:
        return sorted(k for k, s in self.states.items() if s["open"] is not None)
