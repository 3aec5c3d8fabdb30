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

from detectors.model import funnel_stage
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
    #: Its pre-treatment stratum (:func:`stratum`): what happened before either arm
    #: could do anything for it, so the same whichever arm the hash put it in.
    stratum: str = ""

    @property
    def true_effect(self) -> float:
        """P(convert | what was decided) - P(convert | nothing): the truth."""
        return self.p[self.decided] - self.p["none"] if self.p else 0.0


def stratum(state: SessionState, *, acts: bool, holdout: bool, kind: str | None = None) -> str:
    """A session's pre-treatment stratum, read where nothing either arm does has reached it.

    For a session the rules would act on: at the first event where they would (both
    arms have done nothing before it), whether it is held out, the funnel stage it has
    reached and the friction that asks for the decision. For one the rules never would
    act on (nothing happens to it in either arm): at the end of its behaviour, before
    its outcome, the stage it reached and whether it tried to pay.

    >>> state = SessionState("s", pages=["/", "/p/a", "/cart"])
    >>> stratum(state, acts=True, holdout=False, kind="rage_click")
    'acts/shown/stage:2/rage_click'
    >>> stratum(state, acts=False, holdout=True)
    'quiet/stage:2/paid:0'
    """
    stage = funnel_stage(state.pages)
    if acts:
        return f"acts/{'held' if holdout else 'shown'}/stage:{stage}/{kind}"
    return f"quiet/stage:{stage}/paid:{int(bool(state.counts.get('checkout_attempt')))}"


class _Watch:
    """The ``on_outcome`` callback that fills in the results."""

    def __init__(self, results: dict[str, SessionResult]) -> None:
        self.results = results

    def __call__(self, state: SessionState, event: dict[str, Any] | None, out: Outcome) -> None:
        r = self.results[state.session_id]
        if out.rules_kind is not None:
            if not r.eligible:  # the first point where the arms can differ: nothing yet
                kind = max(out.signals, key=lambda s: s.strength).detector if out.signals else None
                r.stratum = stratum(state, acts=True, holdout=r.holdout, kind=kind)
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
            if not r.eligible:  # neither arm could act on it: all it did is pre-treatment
                r.stratum = stratum(state, acts=False, holdout=r.holdout)
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


def _best(r: SessionResult) -> float:
    """What the best action for this session (it asked for help: the handoff) gains over
    nothing: what an oracle that knew the potential outcomes would gain on it."""
    if r.asked_for_help:
        return r.p["handoff"] - r.p["none"]
    return max(r.p.values()) - r.p["none"]


def arm_report(results: Sequence[SessionResult]) -> dict[str, Any]:
    """One arm: conversion, interventions, realised uplift (treated vs holdout among the
    sessions decided for), conversions gained (that uplift times the treated sessions)
    and interventions per conversion gained; the truth from the potential outcomes: the
    uplift of its decisions (shown or held out) and the conversions its interventions
    gained (P(convert | what was shown) - P(convert | nothing), summed), and what an
    oracle would gain on the sessions the arms can treat differently (an upper bound:
    it knows each session's potential outcomes, the policy only what happened so far);
    and where the model decided, leaving out help requests (which the holdout never
    holds out), its estimate, the truth and the realised uplift."""
    decided = [r for r in results if r.decided != "none"]
    treated = [r for r in decided if not r.holdout]
    held = [r for r in decided if r.holdout]
    realised = uplift(treated=_rate(treated), holdout=_rate(held))
    shown = sum(r.interventions for r in results)
    gained = None
    if realised["estimate"] is not None:
        gained = realised["estimate"] * len(treated)
    # A help request's handoff is never held out, so the holdout cannot measure it: in
    # the holdout hash it is treated all the same, and counting it there would pull the
    # realised uplift down by its own gain (+0.25 in the world) while the estimate and
    # the truth keep it. The comparison is made where the holdout holds.
    estimated = [r for r in decided if r.estimate is not None and not r.asked_for_help]
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
        "triggered_conversions_gained": sum(r.p[r.shown] - r.p["none"] for r in results
                                            if r.p and _triggered(r)),
        "oracle_conversions_gained": sum(_best(r) for r in results if r.p and _triggered(r)),
        "interventions_per_true_conversion_gained": shown / true_gained if true_gained > 0 else None,
        "estimated_uplift": _mean([r.estimate for r in estimated if r.estimate is not None]),
        "estimated_sessions": len(estimated),
        "realised_uplift_where_estimated": on_estimated,
        "true_uplift_where_estimated": _mean([r.true_effect for r in estimated]),
    }


#: A stratum with fewer sessions than this in either arm is pooled with the others of
#: its family (``acts/shown``, ``acts/held``, ``quiet``), then with everything small.
MIN_STRATUM: Final = 50


def _family(name: str) -> str:
    return "/".join(name.split("/")[:2]) if name.startswith("acts/") else "quiet"


def _pooled(arms: dict[str, list[SessionResult]], min_size: int) -> dict[str, str]:
    """Stratum -> the stratum it is counted in, after pooling the small ones."""
    into = {r.stratum: r.stratum for rs in arms.values() for r in rs}
    for level in (_family, lambda name: "small"):
        sizes: dict[str, dict[str, int]] = {}
        for arm, rs in arms.items():
            for r in rs:
                sizes.setdefault(into[r.stratum], dict.fromkeys(arms, 0))[arm] += 1
        into = {s: t if min(sizes[t].values()) >= min_size else level(s) for s, t in into.items()}
    return into


def stratified_difference(
    arms: dict[str, list[SessionResult]], confidence: float = 0.95, min_size: int = MIN_STRATUM
) -> dict[str, Any]:
    """Targeted - rules conversion, post-stratified on the pre-treatment :func:`stratum`.

    Each stratum's difference of conversion rates, weighted by its share of all the
    sessions (both arms): unbiased whatever the strata, because the hash that picks a
    session's arm is independent of everything that happened before either arm could
    act (which is all a stratum reads); the strata only take out the variance of how
    many sessions of each kind each arm happened to get. Interval: normal, from the
    strata's binomial variances.
    """
    into = _pooled(arms, min_size)
    cells: dict[str, dict[str, list[int]]] = {}
    for arm, rs in arms.items():
        for r in rs:
            counts = cells.setdefault(into[r.stratum], {a: [0, 0] for a in arms})[arm]
            counts[0] += r.converted
            counts[1] += 1
    total = sum(len(rs) for rs in arms.values())
    estimate = variance = 0.0
    for cell in cells.values():
        (ct, nt), (cr, nr) = cell["targeted"], cell["rules"]
        if not nt or not nr:
            continue
        w = (nt + nr) / total
        pt, pr = ct / nt, cr / nr
        estimate += w * (pt - pr)
        variance += w * w * (pt * (1 - pt) / nt + pr * (1 - pr) / nr)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    margin = z * math.sqrt(variance)
    return {"estimate": round(estimate, 6), "low": round(estimate - margin, 6),
            "high": round(estimate + margin, 6), "confidence": confidence, "strata": len(cells)}


def _triggered(r: SessionResult) -> bool:
    """Can the two arms treat this session differently? The rules would act on it and it
    is not held out: read before either arm did anything (see :attr:`SessionResult.eligible`)."""
    return r.eligible and not r.holdout


def untouched(r: SessionResult) -> bool:
    """Did a session outside the trigger get what it gets in either arm: nothing, or the
    handoff it asked for? (The premise of the diluted estimate: see :func:`compare`.)"""
    return r.shown == ("handoff" if r.asked_for_help else "none")


def diluted_difference(
    arms: dict[str, list[SessionResult]], confidence: float = 0.95, min_size: int = MIN_STRATUM
) -> dict[str, Any]:
    """Targeted - rules conversion over all sessions, from the triggered ones.

    Outside the trigger (:func:`_triggered`) both arms do the same thing, by
    construction of the policy (the uplift model only chooses where the rules would
    act, nothing is shown in the holdout, a help request gets its handoff in both), so
    those sessions' difference is 0 by design, not by estimate; the difference over all
    sessions is the triggered sessions' (post-stratified, :func:`stratified_difference`)
    times their share of all sessions (Deng and Hu 2015, "diluted treatment effect").
    Unbiased under the hash split as long as that premise holds, which the run checks:
    ``outside_differs`` counts the sessions outside the trigger that got anything but
    nothing or their asked-for handoff (it must be 0). The share is the same for both
    arms (read before any decision) and is taken as fixed.
    """
    inside = {a: [r for r in rs if _triggered(r)] for a, rs in arms.items()}
    total = sum(len(rs) for rs in arms.values())
    share = sum(len(rs) for rs in inside.values()) / total if total else 0.0
    within = stratified_difference(inside, confidence, min_size)
    return {**{k: round(within[k] * share, 6) for k in ("estimate", "low", "high")},
            "confidence": confidence, "strata": within["strata"], "share": round(share, 6),
            "outside_differs": sum(not untouched(r) for rs in arms.values() for r in rs
                                   if not _triggered(r))}


def compare(results: Sequence[SessionResult], confidence: float = 0.95) -> dict[str, Any]:
    """Targeted versus rules: each arm's report and the difference of conversion rates
    (targeted - rules) over all sessions: plain (Newcombe's interval), post-stratified
    on what happened before any decision (:func:`stratified_difference`) and diluted
    from the sessions the arms can treat differently (:func:`diluted_difference`); and
    over those sessions alone: eligible (the rules would intervene) and not in the
    holdout (nothing is shown to those in either arm)."""
    arms = {a: [r for r in results if r.arm == a] for a in ("rules", "targeted")}
    differ = {a: [r for r in rs if _triggered(r)] for a, rs in arms.items()}
    return {
        "arms": {a: arm_report(rs) for a, rs in arms.items()},
        "difference_all": uplift(treated=_rate(arms["targeted"]), holdout=_rate(arms["rules"]),
                                 confidence=confidence),
        "difference_adjusted": stratified_difference(arms, confidence),
        "difference_diluted": diluted_difference(arms, confidence),
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
        ("  of which where the arms can differ", "triggered_conversions_gained", ".1f"),
        ("  an oracle's there (upper bound)", "oracle_conversions_gained", ".1f"),
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
    adjusted, diluted = report["difference_adjusted"], report["difference_diluted"]
    for label, value in (
        ("conversion targeted - rules, all sessions:", _ci(report["difference_all"])),
        (f"  same, post-stratified ({adjusted['strata']} strata):", _ci(adjusted)),
        ("  same, diluted from eligible not held out:",
         f"{_ci(diluted)}  ({diluted['share']:.3f} of the sessions; outside them, sessions "
         f"treated differently: {diluted['outside_differs']})"),
        ("conversion targeted - rules, eligible not held out:", _ci(report["difference_eligible"])),
    ):
        lines.append(f"{label:<52}{value}")
    return "\n".join(lines)
