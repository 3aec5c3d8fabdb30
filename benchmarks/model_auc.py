"""The risk model's honest AUC as outcomes accumulate, and what the models cost per event.

``python -m benchmarks.model_auc [--seed 1] [--sessions 10000] [--every 1000]
[--effects uniform|heterogeneous] [--nudge-effect 0.2 --holdout-share 0.3]`` simulates
labelled traffic (:func:`streamer.tools.simulate.generate`; outcomes from the causal
model of :mod:`streamer.tools.world`) and then:

1. **AUC.** Replays it as ``frictionwatch replay`` does (:func:`streamer.tools.replay.replay_lines`:
   the pipeline, the idle sweep with the settings' default timeout, every session
   still open ended at the end of the input). Each outcome is scored before it is
   learned (prequential), so every figure is out of sample. Every ``--every``
   outcomes it prints the rolling ROC AUC the worker exports (last ``auc_window``
   outcomes), the exact AUC of just those ``--every`` outcomes ("-" when they are all
   of one class, as the sessions ended by the end of the input are: all abandoned)
   and the exact AUC of all outcomes so far. Then the AUC split by when the score was
   given: at a decision (a signal: what the policy uses; the rolling figure is
   ``model.risk_auc_at_decision`` of ``replay --labels --json``, issue 13 asks >= 0.80
   at seed 1, 10,000 sessions), or only when the outcome came (sessions that never
   signalled: scored on everything before the outcome event, which tells much, e.g.
   whether the customer got as far as paying; a separate learner, no decision uses
   it); and the uplift of interventions (treated vs holdout).
2. **Cost.** Steps the same events, in event-time order, straight through
   :meth:`detectors.session.Engine.step` (no decoding, no JSON state: only the
   engine), once with the models and once without, best of ``--repeat`` runs each,
   and prints microseconds per event for both, the difference, and how often each
   model ran per event: the risk model scores only when an event raised a signal on
   a session that can still get an intervention (elsewhere its score cannot change a
   decision) and learns once per outcome; the anomaly model scores only where its
   weak signal could tip the policy over a threshold and learns from a sample of
   milestone events; the uplift model learns once per session decided for (with
   ``[policy] uplift_share`` it also chooses there: see benchmarks/uplift_policy.py).

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.events import MAX_RECORD_BYTES
from detectors.session import Engine, Learned, SessionState
from streamer.metrics import Metrics
from streamer.tools import simulate
from streamer.tools.evaluate import model_from_metrics
from streamer.tools.replay import replay_lines


def exact_auc(pairs: Sequence[tuple[bool, float]]) -> float | None:
    """ROC AUC by ranks (Mann-Whitney U), ties counted half; None with one class only.

    >>> exact_auc([(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.4)])
    0.875
    """
    ranked = sorted(pairs, key=lambda pair: pair[1])
    positives = sum(label for label, _ in ranked)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return None
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][1] == ranked[i][1]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # ranks i+1..j share their mean
        rank_sum += mid_rank * sum(label for label, _ in ranked[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _events(sessions: Sequence[simulate.SimSession]) -> list[dict[str, Any]]:
    """All events in event-time order, as ``simulate --events-out`` writes them."""
    return list(heapq.merge(*(s.events for s in sessions), key=lambda e: e["ts"]))


def _fmt(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.4f}"


@dataclass
class AucRun:
    """What :func:`auc_curve` found, and the engine it replayed the events through."""

    engine: Engine
    metrics: Metrics
    #: (abandoned, predicted) per outcome learned, in order.
    pairs: list[tuple[bool, float]] = field(default_factory=list)
    #: The same, split by when the score was given: "signal" or "outcome".
    by_time: dict[str, list[tuple[bool, float]]] = field(
        default_factory=lambda: {"signal": [], "outcome": []})


def auc_curve(events: list[dict[str, Any]], config: dict[str, Any], every: int) -> AucRun:
    engine = Engine.from_config(config)
    models = engine.models
    if models is None:
        raise SystemExit("the models are disabled in this config: nothing to measure")
    run = AucRun(engine, Metrics())

    def note(learned: Learned) -> None:
        pair = (learned.abandoned, learned.predicted)
        run.pairs.append(pair)
        run.by_time[learned.scored_at].append(pair)
        if len(run.pairs) % every == 0:
            print(f"{len(run.pairs):>8}  {_fmt(models.risk.auc)}  "
                  f"{_fmt(exact_auc(run.pairs[-every:]))}  {_fmt(exact_auc(run.pairs))}")

    print(f"{'outcomes':>8}  {'rolling':>6}  {'block':>6}  {'all':>6}   "
          f"(ROC AUC of P(abandon), each outcome scored before it was learned)")
    run.engine = engine = engine.observed(on_learn=note)  # same rules, same models
    lines = (orjson.dumps(e) for e in events)
    for _ in replay_lines(lines, engine, max_record_bytes=MAX_RECORD_BYTES, metrics=run.metrics):
        pass
    model = model_from_metrics(run.metrics, engine)
    u = model["uplift"]
    pairs = run.pairs
    print(f"\nafter {len(pairs)} outcomes: rolling AUC {_fmt(models.risk.auc).strip()} "
          f"(window {models.risk.window}), all {_fmt(exact_auc(pairs)).strip()}")
    for at, what in (("signal", "scored at a decision (the scores the policy uses)"),
                     ("outcome", "never signalled, scored when the outcome came")):
        some = run.by_time[at]
        abandoned = sum(label for label, _ in some) / len(some) if some else 0.0
        print(f"  {what:<50} {len(some):>6} outcomes, {abandoned:.0%} abandoned, "
              f"AUC {_fmt(exact_auc(some)).strip()} (all), "
              f"{_fmt(exact_auc(some[-models.risk.window:])).strip()} (last {models.risk.window})")
    print(f"model.risk_auc_at_decision (rolling, window {models.risk.window}): "
          f"{_fmt(models.risk.auc_at_decision).strip()}   model.risk_auc: "
          f"{_fmt(models.risk.auc).strip()}")
    if u["estimate"] is not None:
        print(f"uplift treated - holdout: {u['estimate']:+.4f}, 95% CI [{u['low']:+.4f}, "
              f"{u['high']:+.4f}]  (treated {u['treated']['converted']}/{u['treated']['sessions']}"
              f", holdout {u['holdout']['converted']}/{u['holdout']['sessions']})")
    return run


def step_all(events: list[dict[str, Any]], engine: Engine) -> tuple[float, dict[str, int]]:
    states: dict[str, SessionState] = {}
    runs = {"risk_scored": 0, "anomaly_scored": 0}
    started = time.perf_counter()
    for event in events:
        sid = event["session_id"]
        state = states.get(sid)
        if state is None:
            state = states[sid] = SessionState(sid)
        outcome = engine.step(state, dict(event))
        runs["risk_scored"] += outcome.risk is not None
        runs["anomaly_scored"] += outcome.anomaly is not None
    for state in states.values():  # the sweep at the end: every open session's outcome
        engine.expire(state)
    elapsed = time.perf_counter() - started
    if engine.models is not None:
        runs["risk_learned"] = engine.models.risk.learned
        runs["anomaly_learned"] = engine.models.anomaly.seen
        runs["uplift_learned"] = sum(engine.models.uplift.learned.values())
    return elapsed, runs


def cost(events: list[dict[str, Any]], config: dict[str, Any], repeat: int) -> None:
    off = {**config, "model": {**config.get("model", {}), "enabled": False}}
    best: dict[str, float] = {}
    runs: dict[str, int] = {}
    for attempt in range(repeat):
        for name, cfg in (("off", off), ("on", config)):
            elapsed, counted = step_all(events, Engine.from_config(cfg))
            best[name] = min(best.get(name, elapsed), elapsed)
            if name == "on":
                runs = counted
        print(f"cost run {attempt + 1}/{repeat}: off {best['off']:.2f} s, on {best['on']:.2f} s",
              file=sys.stderr)
    n = len(events)
    on_us, off_us = best["on"] / n * 1e6, best["off"] / n * 1e6
    print(f"\nEngine.step over {n:,} events (best of {repeat}):")
    print(f"  models off  {off_us:7.1f} us/event")
    print(f"  models on   {on_us:7.1f} us/event")
    print(f"  the models  {on_us - off_us:7.1f} us/event")
    for key, what in (("risk_scored", "risk model scored"), ("risk_learned", "risk model learned"),
                      ("anomaly_scored", "anomaly model scored"),
                      ("anomaly_learned", "anomaly model learned"),
                      ("uplift_learned", "uplift model learned")):
        count = runs.get(key, 0)
        print(f"  {what:<22} {count:>8,}  = {count / n:.4f} per event")
    model_runs = sum(runs.values())
    if model_runs:
        print(f"  per model run         {(best['on'] - best['off']) / model_runs * 1e6:7.1f} us")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_auc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--every", type=int, default=1000, help="print the AUC every N outcomes")
    p.add_argument("--effects", choices=("uniform", "heterogeneous"), default="uniform")
    p.add_argument("--nudge-effect", type=float, default=0.0)
    p.add_argument("--holdout-share", type=float, default=0.0,
                   help="simulated and configured as policy.holdout_share")
    p.add_argument("--repeat", type=int, default=3, help="cost: best of this many runs")
    p.add_argument("--no-cost", dest="cost", action="store_false", help="skip the cost part")
    args = p.parse_args(argv)
    print(f"simulating {args.sessions} sessions (seed {args.seed})", file=sys.stderr)
    sessions = list(simulate.generate(args.seed, args.sessions, effects=args.effects,
                                      nudge_effect=args.nudge_effect,
                                      holdout_share=args.holdout_share))
    events = _events(sessions)
    config: dict[str, Any] = {"policy": {"holdout_share": args.holdout_share}}
    print(f"{args.sessions} sessions, {len(events):,} events, seed {args.seed}, effects "
          f"{args.effects} {args.nudge_effect or ''}, holdout share {args.holdout_share}\n")
    auc_curve(events, config, args.every)
    if args.cost:
        cost(events, config, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
