"""Closed-loop experiments: the simulated world answers the decisions actually made.

A file written by ``simulate`` realises each session's outcome under one assumed policy
(the rules alone), because it is written before any policy runs. To compare policies
the outcome has to follow from what the policy under test did. :func:`run` does that
with the simulator's potential outcomes (:mod:`streamer.tools.world`): it steps every
session's behaviour through the engine in event-time order, as a worker would see the
interleaved traffic; when a session's behaviour is over it looks at what reached it
(the strongest intervention shown: a handoff over a nudge; nothing if its decisions
were held out), realises that potential outcome (:meth:`SimSession.realise`) and
steps the closing events, a ``purchase`` or a goodbye; a session that goes quiet is
ended by :meth:`Engine.expire` ``idle_ms`` of event time after its last event, as the
idle sweep would. So the models learn from the outcomes their own decisions caused.

Both arms run in one engine, over the same traffic: ``[policy] uplift_share = 0.5``
puts half the sessions, by a hash of the id, in the targeted arm (the uplift model
chooses there once warm) and leaves the other half to the rules; both keep the same
holdout and the same caps. :func:`compare` reports the experiment
(:func:`format_comparison` prints it).

>>> from detectors.session import Engine
>>> from streamer.tools.simulate import generate
>>> sessions = list(generate(seed=3, sessions=300, effects="heterogeneous", holdout_share=0.2))
>>> engine = Engine.from_config({"policy": {"holdout_share": 0.2, "uplift_share": 0.5}})
>>> results = run(sessions, engine)
>>> len(results), {r.arm for r in results} == {"rules", "targeted"}
(300, True)
>>> all(r.shown == "handoff" for r in results if r.asked_for_help)
True
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Final

from detectors.policy import in_holdout
from detectors.session import Engine, Outcome, SessionState
from detectors.uplift import uplift
from streamer.tools.simulate import SimSession

#: Event time after a session's last event at which a quiet one is ended (ms): longer
#: than any pause inside a simulated session, far shorter than a worker's default, so
#: the models learn from outcomes without waiting half an hour of traffic.
IDLE_MS: Final = 180_000
_STRENGTH: Final = {"none": 0, "nudge": 1, "handoff": 2}


@dataclass(slots=True)
class SessionResult:
    """One session of the experiment: its arm, what was decided and shown, what it did."""

    session_id: str
    arm: str
    holdout: bool
    #: The strongest intervention decided (shown or held out), "none" if nothing.
    decided: str = "none"
    #: What reached the customer: the strongest intervention shown.
    shown: str = "none"
    #: Interventions shown (a nudge then a handoff is 2).
    interventions: int = 0
    #: The rules would have intervened at least once (the same in both arms: it is
    #: decided by the events before any intervention could matter).
    eligible: bool = False
    #: Decision points where the uplift model chose nothing over the rules' intervention.
    avoided: int = 0
    converted: bool = False
    p: dict[str, float] = field(default_factory=dict)
    y: dict[str, bool] = field(default_factory=dict)
    #: The model's estimated uplift of what it decided (targeted arm, once warm).
    estimate: float | None = None
    asked_for_help: bool = False

    @property
    def true_effect(self) -> float:
        """P(convert | what was decided) - P(convert | nothing): the truth."""
        return self.p[self.decided] - self.p["none"] if self.p else 0.0


class _Watch:
    """The ``on_outcome`` callback that fills in the results."""

    def __init__(self, results: dict[str, SessionResult]) -> None:
        self.results = results

    def __call__(self, state: SessionState, event: dict[str, Any] | None, out: Outcome) -> None:
        r = self.results[state.session_id]
        if out.rules_kind is not None:
            r.eligible = True
            r.avoided += out.decision is None
        if any(s.detector == "help_request" for s in out.signals):
            r.asked_for_help = True
        d = out.decision
        if d is not None:
            if _STRENGTH[d.kind] > _STRENGTH[r.decided]:
                r.decided = d.kind
            if d.delivered:
                r.interventions += 1
                if _STRENGTH[d.kind] > _STRENGTH[r.shown]:
                    r.shown = d.kind
        if out.result is not None and out.estimate is not None:
            r.estimate = out.estimate


def run(sessions: Sequence[SimSession], engine: Engine, *, idle_ms: int = IDLE_MS) -> list[SessionResult]:
    """Step ``sessions`` through ``engine`` in a closed loop (see the module docstring)."""
    policy = engine.rules.policy
    results = {s.session_id: SessionResult(s.session_id, policy.arm(s.session_id),
                                           in_holdout(s.session_id, policy.holdout_share))
               for s in sessions}
    engine = engine.observed(on_outcome=_Watch(results))
    states = {s.session_id: SessionState(s.session_id) for s in sessions}
    events: dict[str, list[dict[str, Any]]] = {}
    # (ts, tie, session index, next event index); index -1 means: expire it now.
    heap: list[tuple[int, int, int, int]] = []
    tie = 0
    for n, s in enumerate(sessions):
        if s.events:
            events[s.session_id] = s.events
            heap.append((s.events[0]["ts"], n, n, 0))
    tie = len(sessions)
    heapq.heapify(heap)
    while heap:
        _, _, n, i = heapq.heappop(heap)
        s = sessions[n]
        state = states[s.session_id]
        if i < 0:
            engine.expire(state)
            continue
        todo = events[s.session_id]
        engine.step(state, dict(todo[i]))
        i += 1
        if i == s.ending_at and s.outcomes is not None:
            # The behaviour is over: the world answers what reached the customer.
            r = results[s.session_id]
            _, realised = s.realise(r.shown)
            r.p, r.y = dict(s.outcomes.p), dict(s.outcomes.y)
            todo = events[s.session_id] = realised
        if i < len(todo):
            heapq.heappush(heap, (todo[i]["ts"], tie, n, i))
        elif todo[-1]["type"] not in ("purchase", "session_end"):
            heapq.heappush(heap, (todo[-1]["ts"] + idle_ms, tie, n, -1))
        tie += 1
    for s in sessions:
        if s.events and not states[s.session_id].model.get("result"):
            engine.expire(states[s.session_id])  # the end of the traffic: it has ended
        results[s.session_id].converted = any(
            e["type"] == "purchase" for e in events.get(s.session_id, ()))
    return list(results.values())


# -- the report -------------------------------------------------------------------------
def _rate(results: Iterable[SessionResult]) -> tuple[int, int]:
    rs = list(results)
    return sum(r.converted for r in rs), len(rs)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Normal interval of a mean (for the true effects, which are not 0/1 outcomes)."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return m - z * sd / math.sqrt(len(values)), m + z * sd / math.sqrt(len(values))


def arm_report(results: Sequence[SessionResult]) -> dict[str, Any]:
    """One arm: conversion, interventions, realised uplift (treated vs holdout among the
    sessions decided for), conversions gained (that uplift times the treated sessions)
    and interventions per conversion gained; the truth from the potential outcomes: the
    uplift of its decisions (shown or held out) and the conversions its interventions
    gained (P(convert | what was shown) - P(convert | nothing), summed); and where the
    model decided, its estimate."""
    decided = [r for r in results if r.decided != "none"]
    treated = [r for r in decided if not r.holdout]
    held = [r for r in decided if r.holdout]
    realised = uplift(treated=_rate(treated), holdout=_rate(held))
    shown = sum(r.interventions for r in results)
    gained = None
    if realised["estimate"] is not None:
        gained = realised["estimate"] * len(treated)
    estimated = [r for r in decided if r.estimate is not None]
    on_estimated = uplift(treated=_rate(r for r in estimated if not r.holdout),
                          holdout=_rate(r for r in estimated if r.holdout))
    converted, n = _rate(results)
    truth = [r.true_effect for r in decided]
    true_gained = sum(r.p[r.shown] - r.p["none"] for r in results if r.p)
    return {
        "sessions": n,
        "converted": converted,
        "rate": converted / n if n else None,
        "eligible": sum(r.eligible for r in results),
        "decided_for": len(decided),
        "interventions_shown": shown,
        "handoffs_shown": sum(r.shown == "handoff" for r in results),
        "interventions_avoided": sum(r.avoided for r in results),
        "realised_uplift": realised,
        "true_uplift": _mean(truth),
        "true_uplift_interval": _interval(truth),
        "conversions_gained": gained,
        "interventions_per_conversion_gained": (
            shown / gained if gained is not None and gained > 0 else None),
        "true_conversions_gained": true_gained,
        "interventions_per_true_conversion_gained": shown / true_gained if true_gained > 0 else None,
        "estimated_uplift": _mean([r.estimate for r in estimated if r.estimate is not None]),
        "estimated_sessions": len(estimated),
        "realised_uplift_where_estimated": on_estimated,
        "true_uplift_where_estimated": _mean([r.true_effect for r in estimated]),
    }


def compare(results: Sequence[SessionResult], confidence: float = 0.95) -> dict[str, Any]:
    """Targeted versus rules: each arm's report and the difference of conversion rates
    (targeted - rules) with Newcombe's interval, over all sessions and over the ones
    the two arms can treat differently: eligible (the rules would intervene) and not
    in the holdout (nothing is shown to those in either arm)."""
    arms = {a: [r for r in results if r.arm == a] for a in ("rules", "targeted")}
    differ = {a: [r for r in rs if r.eligible and not r.holdout] for a, rs in arms.items()}
    return {
        "arms": {a: arm_report(rs) for a, rs in arms.items()},
        "difference_all": uplift(treated=_rate(arms["targeted"]), holdout=_rate(arms["rules"]),
                                 confidence=confidence),
        "difference_eligible": uplift(treated=_rate(differ["targeted"]),
                                      holdout=_rate(differ["rules"]), confidence=confidence),
        "help_requests": {a: (sum(r.shown == "handoff" for r in rs if r.asked_for_help),
                              sum(r.asked_for_help for r in rs)) for a, rs in arms.items()},
    }


def _ci(u: dict[str, Any]) -> str:
    if u["estimate"] is None:
        return "-"
    return f"{u['estimate']:+.4f} [{u['low']:+.4f}, {u['high']:+.4f}]"


def _num(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_comparison(report: dict[str, Any]) -> str:
    """The experiment as aligned lines of text."""
    rules, targeted = report["arms"]["rules"], report["arms"]["targeted"]
    rows: list[tuple[str, str, str]] = [("", "rules", "targeted")]
    for label, key, spec in (
        ("sessions", "sessions", "d"), ("converted", "converted", "d"), ("conversion", "rate", ".4f"),
        ("eligible (rules would act)", "eligible", "d"), ("decided for", "decided_for", "d"),
        ("interventions shown", "interventions_shown", "d"), ("handoffs shown", "handoffs_shown", "d"),
        ("interventions avoided", "interventions_avoided", "d"),
        ("true uplift of decisions", "true_uplift", "+.4f"),
        ("conversions gained vs holdout", "conversions_gained", ".1f"),
        ("interventions / conversion gained", "interventions_per_conversion_gained", ".1f"),
        ("true conversions gained (potential outcomes)", "true_conversions_gained", ".1f"),
        ("interventions / true conversion gained", "interventions_per_true_conversion_gained", ".1f"),
        ("estimated uplift (model)", "estimated_uplift", "+.4f"),
        ("true uplift where estimated", "true_uplift_where_estimated", "+.4f"),
    ):
        rows.append((label, _num(rules[key], spec), _num(targeted[key], spec)))
    rows.append(("realised uplift (treated - holdout)", _ci(rules["realised_uplift"]),
                 _ci(targeted["realised_uplift"])))
    rows.append(("  same, where estimated", "-", _ci(targeted["realised_uplift_where_estimated"])))
    for arm, (handed, asked) in report["help_requests"].items():
        rows.append((f"help requests handed off ({arm})", f"{handed}/{asked}", ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a.ljust(width[0])}  {b.rjust(width[1])}  {c.rjust(width[2])}".rstrip()
             for a, b, c in rows]
    lines.append("")
    lines.append(f"conversion targeted - rules, all sessions:          {_ci(report['difference_all'])}")
    lines.append(f"conversion targeted - rules, eligible not held out: "
                 f"{_ci(report['difference_eligible'])}")
    return "\n".join(lines)
