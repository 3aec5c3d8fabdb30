"""How well a configuration finds labelled friction: the ``replay --labels`` report.

Inputs are the replay output records (signal lines and intervention records), the
labels (``{"session_id", "type", "onset_ts"}``, one per friction episode, as written
by ``frictionwatch simulate --labels-out``) and, per session seen in the events file,
the ``ts`` of its events. :func:`evaluate` is pure; :func:`replay_report` runs a
replay and gathers those inputs.

Definitions (per detector *D*; ``tolerance_ms`` defaults to :data:`TOLERANCE_MS`):

- ``episodes``: labels of type *D*.
- A label (session *S*, type *D*, onset *t0*) is **detected** when *D* signals in *S*
  at ``ts >= t0 - tolerance_ms``; the first such signal is the detection. A label
  whose session only got *D* signals before that is counted as ``early`` (and missed).
  Several labels of one type in one session are each matched on their own onset.
- ``recall`` = detected / episodes (null when there are no episodes).
- ``fired`` = sessions in which *D* signalled at least once. The session's **first**
  *D* signal is a true positive when a label of type *D* in that session has
  ``onset - tolerance_ms <= first ts``, else a false positive (fired in a session
  without that friction, or before it began).
- ``precision`` = true positives / fired: null when *D* never fired (undefined, so a
  disabled detector never looks perfect).
- ``detect_ms`` = detection ts - onset (may be down to ``-tolerance_ms``);
  ``detect_events`` = events of that session after the onset up to and including the
  detecting one (``onset < ts <= detection``): 0 means it fired on the onset event.
  Both are reported as median and 90th percentile over detected labels (null if none).
- ``clean_sessions`` = sessions in the events file with no label;
  ``clean_nudged_share`` = share of them that got any intervention (nudge or handoff,
  delivered or held out); ``clean_signalled_share`` likewise for any signal.
- ``interventions_per_session`` = interventions / all sessions, also per kind;
  ``holdout_interventions`` / ``holdout_sessions`` count decisions with
  ``delivered: false``.

Every number is finite: undefined ratios are null, never NaN.

The models (:func:`model_report`; ``"model"`` in the replay report, null when the
models are disabled; also what ``frictionwatch report`` prints):

- ``risk_auc``: the risk model's rolling ROC AUC after the replay, over its last
  ``auc_window`` outcomes, each scored before it was learned (prequential), whenever it
  was scored; ``risk_auc_at_decision``: the same over the outcomes scored at a decision
  (a signal on a session that could still get an intervention): the scores the policy
  used. Sessions that never signalled are scored only when their outcome comes, on
  features that give it away (who reached the payment step mostly bought), which no
  decision uses: they lift ``risk_auc`` and are not in ``risk_auc_at_decision``.
- ``outcomes``: sessions whose outcome is known (after a replay: every session, as
  the replay ends the ones still open); ``outcomes_learned``: what the model learned.
- ``uplift``: conversion of ``treated`` sessions (shown an intervention) minus that of
  ``holdout`` sessions (decided for, not shown), with Newcombe's 95% interval
  (:func:`detectors.uplift.uplift`); ``none``: sessions no intervention was decided for.
- ``targeting`` (null until a session of the targeted arm has ended; see
  ``[policy] uplift_share``): per arm (``rules``, ``targeted``) its sessions,
  conversion, interventions shown, decision points, its own realised uplift (treated
  vs holdout), ``conversions_gained`` (that uplift times its treated sessions) and
  ``interventions_per_conversion_gained``; ``difference``: conversion of the targeted
  arm minus the rules arm, with its interval, and ``conversions_gained`` by targeting
  (that difference times the targeted sessions); ``interventions_avoided``: decision
  points where the uplift model chose nothing; ``estimated_uplift``: the mean of the
  model's estimates for the targeted sessions it decided for, beside their
  ``realised_uplift``; ``uplift_learned`` and ``warm``: how far it has learned.

With a labels file that holds potential outcomes (``simulate --potential-outcomes``),
the replay report also has ``"truth"`` (:func:`truth_report`): the events realise each
session's outcome under one assumed action (what the rules alone deliver), which the
replayed policy may not have taken; ``truth`` picks, per session, the potential outcome
of what the replay actually showed (the strongest intervention delivered; nothing when
held out) and reports the conversions the replayed policy gets in the simulated world,
how many sessions of the file agree with that, and the true uplift of the replay's
decisions, to check the estimates against.

>>> labels = [{"session_id": "a", "type": "rage_click", "onset_ts": 100}]
>>> records = [{"kind": "signal", "session_id": "a", "ts": 120, "detector": "rage_click"},
...            {"kind": "nudge", "session_id": "b", "ts": 50, "delivered": True}]
>>> r = evaluate(records, labels, {"a": [90, 100, 110, 120], "b": [50]})
>>> d = r["detectors"]["rage_click"]
>>> d["precision"], d["recall"], d["median_detect_ms"], d["median_detect_events"]
(1.0, 1.0, 20.0, 2.0)
>>> r["clean_sessions"], r["clean_nudged_share"], r["detectors"]["dead_click"]["precision"]
(1, 1.0, None)
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from detectors.events import Event
from detectors.registry import REGISTRY
from detectors.session import Engine, Outcome, SessionState
from detectors.uplift import uplift
from streamer.metrics import ARMS, Metrics
from streamer.tools.simulate import POTENTIAL_OUTCOMES

Label = dict[str, Any]
Report = dict[str, Any]

#: A signal this much (ms of event time) before the labelled onset still detects it.
TOLERANCE_MS: Final = 500
INTERVENTION_KINDS: Final = ("nudge", "handoff")


class LabelsError(ValueError):
    """A labels file that cannot be read; the message names the file and the line."""


# -- inputs ----------------------------------------------------------------------------
def parse_labels(lines: Iterable[bytes], source: str = "labels") -> list[Label]:
    """Decode and check label lines; blank lines are skipped, anything else must fit.

    >>> parse_labels([b'{"session_id": "s", "type": "dead_click", "onset_ts": 5}'])
    [{'session_id': 's', 'type': 'dead_click', 'onset_ts': 5}]
    >>> parse_labels([b"", b'{"session_id": "s", "type": "dead_click"}'], "l.jsonl")
    Traceback (most recent call last):
    ...
    streamer.tools.evaluate.LabelsError: l.jsonl line 2: missing 'onset_ts' (needs session_id, type, onset_ts)
    """
    labels = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            label = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LabelsError(f"{where}: not JSON ({exc})") from None
        if not isinstance(label, dict):
            raise LabelsError(f"{where}: a label must be a JSON object, got {type(label).__name__}")
        for key, kind in (("session_id", str), ("type", str), ("onset_ts", int)):
            if key not in label:
                raise LabelsError(
                    f"{where}: missing {key!r} (needs session_id, type, onset_ts)"
                )
            value = label[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise LabelsError(
                    f"{where}: {key!r} must be {'a string' if kind is str else 'an integer (ms)'}, "
                    f"got {value!r}"
                )
        labels.append(label)
    return labels


def read_labels(path: str | Path) -> list[Label]:
    """The labels in a JSONL file; :class:`LabelsError` names the line that is wrong."""
    try:
        with open(path, "rb") as fh:
            return parse_labels(fh, str(path))
    except OSError as exc:
        raise LabelsError(f"labels file {str(path)!r}: {exc.strerror or exc}") from None


# -- the metrics ---------------------------------------------------------------------
def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


@dataclass
class _Replayed:
    """What a replay's output lines say, tallied: signal times per (session, detector)."""

    signals: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    signal_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    signalled: set[str] = field(default_factory=set)
    intervened: set[str] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INTERVENTION_KINDS, 0))
    holdout_interventions: int = 0
    holdout_sessions: set[str] = field(default_factory=set)

    @classmethod
    def tally(cls, records: Iterable[Mapping[str, Any]]) -> _Replayed:
        out = cls()
        for record in records:
            kind, sid = record["kind"], record["session_id"]
            if kind == "signal":
                out.signals[sid, record["detector"]].append(record["ts"])
                out.signal_count[record["detector"]] += 1
                out.signalled.add(sid)
            else:
                out.intervened.add(sid)
                out.kinds[kind] = out.kinds.get(kind, 0) + 1
                if record.get("delivered") is False:
                    out.holdout_interventions += 1
                    out.holdout_sessions.add(sid)
        for times in out.signals.values():
            times.sort()
        return out


def evaluate(
    records: Iterable[Mapping[str, Any]],
    labels: Iterable[Mapping[str, Any]],
    sessions: Mapping[str, Sequence[int]],
    *,
    detectors: Iterable[str] = REGISTRY,
    tolerance_ms: int = TOLERANCE_MS,
) -> Report:
    """The report for one replay (see the module docstring for every definition).

    ``sessions`` maps every session id in the events file to its events' ``ts`` (only
    labelled sessions need them, for ``detect_events``). ``detectors`` are reported
    even when they have no episodes and never fire; label types and signalling
    detectors not among them are reported too.
    """
    replayed = _Replayed.tally(records)
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for label in labels:
        by_key[label["session_id"], label["type"]].append(label["onset_ts"])
    names = list(dict.fromkeys([*detectors, *sorted({t for _, t in by_key}),
                                *sorted(replayed.signal_count)]))
    per_detector = _per_detector(names, replayed, by_key, sessions, tolerance_ms)
    labelled = {sid for sid, _ in by_key}
    all_sessions = set(sessions) | labelled | replayed.signalled | replayed.intervened
    clean = all_sessions - labelled
    n = len(all_sessions)
    kinds = replayed.kinds
    total = sum(kinds.values())
    return {
        "detectors": per_detector,
        "sessions": n,
        "labelled_sessions": len(labelled),
        "labels": sum(len(v) for v in by_key.values()),
        "clean_sessions": len(clean),
        "clean_nudged_share": _ratio(len(clean & replayed.intervened), len(clean)),
        "clean_signalled_share": _ratio(len(clean & replayed.signalled), len(clean)),
        "interventions": {"total": total, **kinds},
        "interventions_per_session": _ratio(total, n),
        "interventions_per_session_by_kind": {k: _ratio(v, n) for k, v in kinds.items()},
        "holdout_interventions": replayed.holdout_interventions,
        "holdout_sessions": len(replayed.holdout_sessions),
        "tolerance_ms": tolerance_ms,
    }


def _per_detector(
    names: Sequence[str],
    replayed: _Replayed,
    by_key: Mapping[tuple[str, str], list[int]],
    sessions: Mapping[str, Sequence[int]],
    tolerance_ms: int,
) -> dict[str, dict[str, Any]]:
    """Episodes, detections and time to detect (labels' view); fired and false
    positives (signals' view), per detector."""
    signals = replayed.signals
    stats: dict[str, dict[str, Any]] = {
        name: {"episodes": 0, "detected": 0, "early": 0, "ms": [], "events": []} for name in names
    }
    sorted_ts: dict[str, list[int]] = {}
    for (sid, name), onsets in by_key.items():
        fired = signals.get((sid, name), [])
        s = stats[name]
        for onset in onsets:
            s["episodes"] += 1
            hit = next((ts for ts in fired if ts >= onset - tolerance_ms), None)
            if hit is None:
                s["early"] += bool(fired)
                continue
            s["detected"] += 1
            s["ms"].append(hit - onset)
            if sid not in sorted_ts:
                sorted_ts[sid] = sorted(sessions.get(sid, ()))
            times = sorted_ts[sid]
            s["events"].append(max(0, bisect_right(times, hit) - bisect_right(times, onset)))

    fired_in: dict[str, int] = defaultdict(int)
    true_pos: dict[str, int] = defaultdict(int)
    for (sid, name), times in signals.items():
        fired_in[name] += 1
        onsets = by_key.get((sid, name), [])
        true_pos[name] += any(onset - tolerance_ms <= times[0] for onset in onsets)

    return {
        name: {
            "episodes": stats[name]["episodes"],
            "detected": stats[name]["detected"],
            "missed": stats[name]["episodes"] - stats[name]["detected"],
            "early": stats[name]["early"],
            "fired": fired_in[name],
            "false_positives": fired_in[name] - true_pos[name],
            "signals": replayed.signal_count[name],
            "precision": _ratio(true_pos[name], fired_in[name]),
            "recall": _ratio(stats[name]["detected"], stats[name]["episodes"]),
            "median_detect_ms": _quantile(stats[name]["ms"], 0.5),
            "p90_detect_ms": _quantile(stats[name]["ms"], 0.9),
            "median_detect_events": _quantile(stats[name]["events"], 0.5),
            "p90_detect_events": _quantile(stats[name]["events"], 0.9),
        }
        for name in names
    }


# -- the models: risk AUC, outcomes, uplift -------------------------------------------
OUTCOMES_SAMPLE: Final = "frictionwatch_outcomes_total"
RISK_AUC_SAMPLE: Final = "frictionwatch_model_risk_auc"
RISK_AUC_AT_DECISION_SAMPLE: Final = "frictionwatch_model_risk_auc_at_decision"
LEARNED_SAMPLE: Final = "frictionwatch_model_outcomes_learned"
ARM_OUTCOMES_SAMPLE: Final = "frictionwatch_arm_outcomes_total"
ARM_DECISIONS_SAMPLE: Final = "frictionwatch_arm_decisions_total"
ARM_INTERVENTIONS_SAMPLE: Final = "frictionwatch_arm_interventions_total"
ESTIMATED_SUM_SAMPLE: Final = "frictionwatch_uplift_estimated_sum"
ESTIMATED_COUNT_SAMPLE: Final = "frictionwatch_uplift_estimated_count"
UPLIFT_LEARNED_SAMPLE: Final = "frictionwatch_uplift_outcomes_learned"
UPLIFT_WARM_SAMPLE: Final = "frictionwatch_uplift_warm"
#: Samples that add up over workers (counters and the estimate's sum and count).
_ADDITIVE: Final = (OUTCOMES_SAMPLE, ARM_OUTCOMES_SAMPLE, ARM_DECISIONS_SAMPLE,
                    ARM_INTERVENTIONS_SAMPLE, ESTIMATED_SUM_SAMPLE, ESTIMATED_COUNT_SAMPLE,
                    UPLIFT_LEARNED_SAMPLE)
GROUPS: Final = ("treated", "holdout", "none")


class ArmCounts:
    """What the arm metrics count (see :meth:`streamer.metrics.Metrics.watch_models`)."""

    def __init__(self) -> None:
        #: (arm, group, result) -> sessions
        self.outcomes: dict[tuple[str, str, str], float] = {}
        #: (arm, rules, chosen) -> decision points
        self.decisions: dict[tuple[str, str, str], float] = {}
        #: (arm, kind) -> interventions shown
        self.shown: dict[tuple[str, str], float] = {}
        self.estimated_sum = 0.0
        self.estimated_count = 0.0
        self.learned: dict[str, float] = {}
        self.warm = False

    def add(self, sample: Any) -> bool:
        """Count one Prometheus sample if it is an arm metric; True when it was."""
        name, labels, value = sample.name, sample.labels, sample.value
        if name == ARM_OUTCOMES_SAMPLE:
            key = (labels["arm"], labels["group"], labels["result"])
            self.outcomes[key] = self.outcomes.get(key, 0.0) + value
        elif name == ARM_DECISIONS_SAMPLE:
            key = (labels["arm"], labels["rules"], labels["chosen"])
            self.decisions[key] = self.decisions.get(key, 0.0) + value
        elif name == ARM_INTERVENTIONS_SAMPLE:
            pair = (labels["arm"], labels["kind"])
            self.shown[pair] = self.shown.get(pair, 0.0) + value
        elif name == ESTIMATED_SUM_SAMPLE:
            self.estimated_sum += value
        elif name == ESTIMATED_COUNT_SAMPLE:
            self.estimated_count += value
        elif name == UPLIFT_LEARNED_SAMPLE:
            self.learned[labels["action"]] = self.learned.get(labels["action"], 0.0) + value
        elif name == UPLIFT_WARM_SAMPLE:
            self.warm = self.warm or value > 0
        else:
            return False
        return True


def targeting_report(arms: ArmCounts, confidence: float = 0.95) -> Report | None:
    """The ``targeting`` section (see the module docstring); None before any session of
    the targeted arm has ended.

    >>> arms = ArmCounts()
    >>> for arm, group, result, n in [("rules", "treated", "converted", 100),
    ...         ("rules", "treated", "abandoned", 300), ("rules", "holdout", "converted", 20),
    ...         ("rules", "holdout", "abandoned", 80), ("targeted", "treated", "converted", 110),
    ...         ("targeted", "treated", "abandoned", 190), ("targeted", "holdout", "converted", 15),
    ...         ("targeted", "holdout", "abandoned", 60), ("targeted", "none", "abandoned", 125)]:
    ...     arms.outcomes[arm, group, result] = n
    >>> arms.shown = {("rules", "nudge"): 400, ("targeted", "nudge"): 300}
    >>> arms.decisions = {("targeted", "nudge", "none"): 125}
    >>> t = targeting_report(arms)
    >>> t["arms"]["rules"]["conversions_gained"], t["arms"]["targeted"]["conversions_gained"]
    (20.0, 50.0)
    >>> t["arms"]["rules"]["interventions_per_conversion_gained"], t["interventions_avoided"]
    (20.0, 125)
    """
    def count(arm: str, group: str, result: str) -> int:
        return int(arms.outcomes.get((arm, group, result), 0))

    if not any(count("targeted", g, r) for g in GROUPS for r in ("converted", "abandoned")):
        return None
    out: Report = {"arms": {}}
    totals = {}
    for arm in ARMS:
        cells = {g: (count(arm, g, "converted"), count(arm, g, "converted") + count(arm, g, "abandoned"))
                 for g in GROUPS}
        converted, sessions = sum(c for c, _ in cells.values()), sum(n for _, n in cells.values())
        totals[arm] = (converted, sessions)
        realised = uplift(treated=cells["treated"], holdout=cells["holdout"], confidence=confidence)
        shown = int(sum(v for (a, _), v in arms.shown.items() if a == arm))
        gained = (None if realised["estimate"] is None
                  else round(realised["estimate"] * cells["treated"][1], 2))
        out["arms"][arm] = {
            "sessions": sessions,
            "converted": converted,
            "rate": converted / sessions if sessions else None,
            "interventions": shown,
            "decision_points": int(sum(v for (a, _, _), v in arms.decisions.items() if a == arm)),
            "uplift": realised,
            "conversions_gained": gained,
            "interventions_per_conversion_gained": (
                round(shown / gained, 2) if gained is not None and gained > 0 else None),
        }
    difference = uplift(treated=totals["targeted"], holdout=totals["rules"], confidence=confidence)
    out["difference"] = difference
    out["conversions_gained"] = (None if difference["estimate"] is None
                                 else round(difference["estimate"] * totals["targeted"][1], 2))
    out["interventions_avoided"] = int(sum(
        v for (a, _, chosen), v in arms.decisions.items() if a == "targeted" and chosen == "none"))
    out["estimated_uplift"] = (round(arms.estimated_sum / arms.estimated_count, 6)
                               if arms.estimated_count else None)
    out["estimated_sessions"] = int(arms.estimated_count)
    out["realised_uplift"] = out["arms"]["targeted"]["uplift"]
    out["uplift_learned"] = {k: int(v) for k, v in arms.learned.items()}
    out["warm"] = arms.warm
    return out


def model_report(
    outcomes: Mapping[tuple[str, str], float],
    *,
    risk_auc: float | None,
    outcomes_learned: int | None = None,
    risk_auc_at_decision: float | None = None,
    arms: ArmCounts | None = None,
    confidence: float = 0.95,
) -> Report:
    """The ``"model"`` section from outcome counts by (result, group) and the AUC.

    >>> counts = {("converted", "treated"): 30, ("abandoned", "treated"): 70,
    ...           ("converted", "holdout"): 10, ("abandoned", "holdout"): 90}
    >>> r = model_report(counts, risk_auc=0.91, outcomes_learned=200)
    >>> r["outcomes"], r["uplift"]["estimate"], r["uplift"]["low"] > 0, r["targeting"]
    (200, 0.2, True, None)
    """
    def count(result: str, group: str) -> int:
        return int(outcomes.get((result, group), 0))

    cells = {
        g: (count("converted", g), count("converted", g) + count("abandoned", g)) for g in GROUPS
    }
    c, n = cells["none"]
    return {
        "risk_auc": None if risk_auc is None else round(risk_auc, 4),
        "risk_auc_at_decision": None if risk_auc_at_decision is None else round(risk_auc_at_decision, 4),
        "outcomes_learned": outcomes_learned,
        "outcomes": sum(n for _, n in cells.values()),
        "uplift": uplift(treated=cells["treated"], holdout=cells["holdout"], confidence=confidence),
        "none": {"converted": c, "sessions": n, "rate": c / n if n else None},
        "targeting": None if arms is None else targeting_report(arms, confidence),
    }


def model_from_samples(samples: Iterable[Any]) -> Report:
    """:func:`model_report` from Prometheus samples (``.name``, ``.labels``, ``.value``).

    The samples of a live worker's ``/metrics`` (``prometheus_client.parser``) and of a
    replay's own registry (``registry.collect()``) read the same. The risk AUCs are
    null when no outcome was learned (models disabled, or nothing ended yet).
    """
    outcomes: dict[tuple[str, str], float] = {}
    auc = at_decision = learned = None
    arms = ArmCounts()
    for sample in samples:
        if sample.name == OUTCOMES_SAMPLE:
            key = (sample.labels.get("result", ""), sample.labels.get("group", "none"))
            outcomes[key] = outcomes.get(key, 0.0) + sample.value
        elif sample.name == RISK_AUC_SAMPLE:
            auc = float(sample.value)
        elif sample.name == RISK_AUC_AT_DECISION_SAMPLE:
            at_decision = float(sample.value)
        elif sample.name == LEARNED_SAMPLE:
            learned = int(sample.value)
        else:
            arms.add(sample)
    return model_report(outcomes, risk_auc=auc if learned else None, outcomes_learned=learned,
                        risk_auc_at_decision=at_decision if learned else None, arms=arms)


def _samples(families: Iterable[Any]) -> Iterator[Any]:
    for family in families:
        yield from family.samples


def model_from_metrics(metrics: Metrics, engine: Engine) -> Report:
    """The section after a replay: the replay's counters and the engine's models."""
    models = engine.models
    if models is not None:  # what the worker's gauge timer does
        metrics.risk_auc.set(models.risk.auc)
        metrics.model_learned.set(models.risk.learned)
        metrics.set_model_gauges(models)
    return model_from_samples(_samples(metrics.registry.collect()))


def model_from_text(texts: Iterable[str]) -> Report:
    """The section from Prometheus text exposition, one text per worker.

    Outcomes and the arm counts add up over workers; each risk AUC is the workers'
    AUCs weighted by the outcomes each learned (each worker's model learns only its own
    sessions).
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[Any] = []
    workers = []
    for text in texts:
        own = list(_samples(text_string_to_metric_families(text)))
        samples += [s for s in own if s.name in _ADDITIVE or s.name == UPLIFT_WARM_SAMPLE]
        workers.append(model_from_samples(own))
    report = model_from_samples(samples)
    learned = sum(w["outcomes_learned"] or 0 for w in workers if w["risk_auc"] is not None)
    if learned:
        for key in ("risk_auc", "risk_auc_at_decision"):
            known = [w for w in workers if w["risk_auc"] is not None]
            report[key] = None if any(w[key] is None for w in known) else round(
                sum(w[key] * w["outcomes_learned"] for w in known) / learned, 4)
        report["outcomes_learned"] = learned
    if len(workers) > 1:
        report["workers"] = [
            {"risk_auc": w["risk_auc"], "risk_auc_at_decision": w["risk_auc_at_decision"],
             "outcomes_learned": w["outcomes_learned"], "outcomes": w["outcomes"]} for w in workers
        ]
    return report


def fetch_metrics(url: str, timeout_s: float = 10.0) -> str:
    """GET a worker's ``/metrics`` (a bare host:port gets ``http://`` and ``/metrics``)."""
    import urllib.request

    if "://" not in url:
        url = f"http://{url}"
    if url.count("/") == 2:
        url += "/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode()


def offline_report(
    lines: Iterable[bytes],
    engine: Engine,
    *,
    max_record_bytes: int,
    idle_ms: int,
    err: IO[str] | None = None,
) -> Report:
    """``frictionwatch report FILE``: replay, then the model section (labels not needed)."""
    from streamer.tools.replay import replay_lines

    metrics = Metrics()
    if engine.models is not None:
        engine = engine.observed(on_outcome=metrics.watch_models(engine.models))
    for _ in replay_lines(_progress(lines, err, "report"), engine, max_record_bytes=max_record_bytes,
                          errors=err, idle_ms=idle_ms, metrics=metrics):
        pass
    report = model_from_metrics(metrics, engine)
    report["models"] = engine.models is not None
    return report


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def format_model(model: Report) -> str:
    """The model section as lines of text (``frictionwatch report``).

    >>> counts = {("converted", "treated"): 30, ("abandoned", "treated"): 70,
    ...           ("converted", "holdout"): 10, ("abandoned", "holdout"): 90}
    >>> print(format_model(model_report(counts, risk_auc=0.91, outcomes_learned=200,
    ...                                 risk_auc_at_decision=0.83)))
    risk AUC (prequential, rolling)    0.9100  (200 outcomes learned)
    risk AUC at decision               0.8300
    outcomes                           200
    conversion treated                 0.3000  (30 / 100)
    conversion holdout                 0.1000  (10 / 100)
    conversion none (no intervention)  -
    uplift (treated - holdout)         +0.2000  95% CI [+0.0900, +0.3058]
    """
    u = model["uplift"]
    rows: list[tuple[str, str]] = []
    auc = model["risk_auc"]
    learned = model.get("outcomes_learned")
    rows.append(("risk AUC (prequential, rolling)", "-" if auc is None else (
        f"{auc:.4f}" + (f"  ({learned} outcomes learned)" if learned is not None else ""))))
    rows.append(("risk AUC at decision", _fmt(model.get("risk_auc_at_decision"), 4)))
    rows.append(("outcomes", str(model["outcomes"])))
    for name, cell in (("treated", u["treated"]), ("holdout", u["holdout"]),
                       ("none (no intervention)", model["none"])):
        rate = cell["rate"]
        rows.append((f"conversion {name}", "-" if rate is None else
                     f"{rate:.4f}  ({cell['converted']} / {cell['sessions']})"))
    level = f"{u['confidence']:.0%}"
    if u["estimate"] is not None:
        estimate = f"{_interval(u)}".replace(" [", f"  {level} CI [")
    elif not u["holdout"]["sessions"]:
        estimate = "-  (no holdout sessions: set [policy] holdout_share)"
    else:
        estimate = "-  (no treated sessions)"
    rows.append(("uplift (treated - holdout)", estimate))
    for i, worker in enumerate(model.get("workers", ()), 1):
        rows.append((f"  worker {i}", f"risk AUC {_fmt(worker['risk_auc'], 4)}, "
                     f"{worker['outcomes']} outcomes"))
    targeting = model.get("targeting")
    if targeting:
        rows += _targeting_rows(targeting)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in rows)


def _interval(u: Mapping[str, Any]) -> str:
    if u.get("estimate") is None:
        return "-"
    return f"{_signed(u['estimate'])} [{_signed(u['low'])}, {_signed(u['high'])}]"


def _targeting_rows(t: Report) -> list[tuple[str, str]]:
    """The uplift-targeted arm beside the rules arm (see :func:`targeting_report`)."""
    rules, targeted = t["arms"]["rules"], t["arms"]["targeted"]

    def both(key: str, digits: int) -> str:
        return f"rules {_fmt(rules[key], digits)}, targeted {_fmt(targeted[key], digits)}"

    learned = t.get("uplift_learned") or {}
    return [
        ("uplift model", ("deciding" if t.get("warm") else "warming up: the rules decide")
         + (f"  (learned: {', '.join(f'{k} {v}' for k, v in learned.items())})" if learned else "")),
        ("sessions by arm", both("sessions", 0)),
        ("conversion by arm", both("rate", 4)),
        ("conversion targeted - rules", _interval(t["difference"])
         + f"  ({_fmt(t['conversions_gained'], 1)} conversions gained)"),
        ("interventions shown by arm", both("interventions", 0)),
        ("interventions avoided", str(t["interventions_avoided"])),
        ("realised uplift rules arm", _interval(rules["uplift"])),
        ("realised uplift targeted arm", _interval(targeted["uplift"])),
        ("estimated uplift (model)", _signed(t["estimated_uplift"])
         + f"  ({t['estimated_sessions']} sessions decided for)"),
        ("conversions gained vs holdout", both("conversions_gained", 1)),
        ("interventions per conversion gained", both("interventions_per_conversion_gained", 1)),
    ]


# -- running a replay for it ---------------------------------------------------------
class _Sessions:
    """Notes each session the engine stepped and, if labelled, its events' ``ts``.

    Only events the engine accepted count: invalid ones never reach it, and
    duplicates (retried beacons) are skipped as the engine skips them. Passed to the
    engine as its ``on_outcome`` callback.
    """

    def __init__(self, keep_ts: set[str]) -> None:
        self.keep_ts = keep_ts
        self.ts: dict[str, list[int]] = {}

    def __call__(self, state: SessionState, event: Event | None, outcome: Outcome) -> None:
        if event is None or outcome.duplicate:
            return
        times = self.ts.setdefault(state.session_id, [])
        if state.session_id in self.keep_ts:
            times.append(event["ts"])


def _progress(lines: Iterable[bytes], err: IO[str] | None, what: str) -> Iterator[bytes]:
    """The lines, with a progress bar on ``err`` when it is a terminal (silent when piped)."""
    from streamer.tools.progress import progress

    return progress(lines, err, what)


class _Shown:
    """Per session, the strongest intervention decided and the strongest shown."""

    STRENGTH: Final = {"none": 0, "nudge": 1, "handoff": 2}

    def __init__(self) -> None:
        self.decided: dict[str, str] = {}
        self.shown: dict[str, str] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        sid, kind = record["session_id"], record["kind"]
        for seen, counts in ((self.decided, True), (self.shown, record.get("delivered", True))):
            if counts and self.STRENGTH[kind] > self.STRENGTH[seen.get(sid, "none")]:
                seen[sid] = kind


def truth_report(
    potential: Mapping[str, Mapping[str, Any]],
    decided: Mapping[str, str],
    shown: Mapping[str, str],
    estimate: Mapping[str, Any] | None = None,
) -> Report:
    """The replay's decisions against the simulator's potential outcomes.

    ``potential``: session -> its :data:`~streamer.tools.simulate.POTENTIAL_OUTCOMES`
    line; ``decided`` / ``shown``: session -> the strongest intervention the replay
    decided / showed; ``estimate``: the replay's treated-vs-holdout uplift, to say
    whether its interval holds the truth.

    >>> line = {"p": {"none": 0.2, "nudge": 0.5, "handoff": 0.6},
    ...         "y": {"none": False, "nudge": True, "handoff": True}, "converted": True}
    >>> t = truth_report({"a": line, "b": dict(line, converted=False)}, {"a": "nudge", "b": "nudge"},
    ...                  {"a": "nudge"})
    >>> t["converted_realised"], t["converted_in_file"], t["agree"], t["true_uplift"]
    (1, 1, 1.0, 0.3)
    """
    realised = {sid: bool(line["y"][shown.get(sid, "none")]) for sid, line in potential.items()}
    effects = [line["p"][decided[sid]] - line["p"]["none"]
               for sid, line in potential.items() if decided.get(sid, "none") != "none"]
    out: Report = {
        "sessions": len(potential),
        "converted_in_file": sum(bool(line["converted"]) for line in potential.values()),
        "converted_realised": sum(realised.values()),
        "agree": _ratio(sum(realised[sid] == bool(line["converted"])
                            for sid, line in potential.items()), len(potential)),
        "decided_for": len(effects),
        "true_uplift": round(sum(effects) / len(effects), 6) if effects else None,
        "true_uplift_within_interval": None,
    }
    if estimate is not None and estimate.get("low") is not None and effects:
        out["true_uplift_within_interval"] = bool(
            estimate["low"] <= out["true_uplift"] <= estimate["high"])
    return out


def replay_report(
    lines: Iterable[bytes],
    engine: Engine,
    labels: Sequence[Mapping[str, Any]],
    *,
    max_record_bytes: int,
    out: IO[bytes] | None = None,
    err: IO[str] | None = None,
    what: str = "replay",
    tolerance_ms: int = TOLERANCE_MS,
    idle_ms: int | None = None,
) -> Report:
    """Replay ``lines`` through ``engine`` and evaluate against ``labels``.

    ``out`` (if given) still receives every output record as a JSON line, as plain
    ``replay`` writes them; ``err`` gets bad-line reports and progress. ``idle_ms``
    (default: the settings' default) ends sessions idle that long during the replay;
    the report's ``"model"`` is :func:`model_report` after it (null without models).
    """
    from streamer.settings import Settings
    from streamer.tools.replay import replay_lines

    potential = {label["session_id"]: label for label in labels
                 if label["type"] == POTENTIAL_OUTCOMES}
    labels = [label for label in labels if label["type"] != POTENTIAL_OUTCOMES]
    sessions = _Sessions({label["session_id"] for label in labels})
    metrics = Metrics()
    records: list[dict[str, Any]] = []
    shown = _Shown()
    watched = engine.observed(on_outcome=sessions)
    if engine.models is not None:
        watched = watched.observed(on_outcome=metrics.watch_models(engine.models))
    for record in replay_lines(
        _progress(lines, err, what), watched,
        max_record_bytes=max_record_bytes, errors=err,
        idle_ms=Settings.idle_timeout_ms if idle_ms is None else idle_ms, metrics=metrics,
    ):
        if out is not None:
            out.write(orjson.dumps(record) + b"\n")
        if record["kind"] in ("incident_open", "incident_close"):
            continue  # fleet-wide, not a session's: nothing here measures them
        # Keep only what the metrics read: contexts and evidence can be large.
        slim = {"kind": record["kind"], "session_id": record["session_id"], "ts": record["ts"]}
        if record["kind"] == "signal":
            slim["detector"] = record["detector"]
        else:
            slim["delivered"] = record.get("delivered", True)
            shown.add(slim)
        records.append(slim)
    report = evaluate(
        records, labels, sessions.ts,
        detectors=[*REGISTRY, *(d.name for d in engine.detectors)], tolerance_ms=tolerance_ms,
    )
    report["model"] = model_from_metrics(metrics, engine) if engine.models is not None else None
    if potential:
        model = report["model"]
        report["truth"] = truth_report(potential, shown.decided, shown.shown,
                                       model["uplift"] if model else None)
    return report


# -- rendering -------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt_delta(a: Any, b: Any, digits: int = 3) -> str:
    if a is None or b is None:
        return "-"
    return f"{b - a:+.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    out = []
    for row in (header, *rows):
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
    return out


def _summary(report: Report) -> list[tuple[str, Any, int]]:
    """(label, value, digits) of the summary lines."""
    by_kind = report["interventions_per_session_by_kind"]
    rows = [
        ("sessions", report["sessions"], 0),
        ("labelled sessions", report["labelled_sessions"], 0),
        ("clean sessions", report["clean_sessions"], 0),
        ("clean sessions nudged (share)", report["clean_nudged_share"], 4),
        ("clean sessions signalled (share)", report["clean_signalled_share"], 4),
        ("interventions per session", report["interventions_per_session"], 4),
        ("  nudges per session", by_kind.get("nudge"), 4),
        ("  handoffs per session", by_kind.get("handoff"), 4),
        ("holdout interventions", report["holdout_interventions"], 0),
        ("holdout sessions", report["holdout_sessions"], 0),
    ]
    if "model" in report:  # a replay's report: the models' lines, "-" when disabled
        model = report["model"] or {}
        u = model.get("uplift", {})
        rows += [
            ("risk AUC (prequential)", model.get("risk_auc"), 4),
            ("risk AUC at decision", model.get("risk_auc_at_decision"), 4),
            ("outcomes", model.get("outcomes"), 0),
            ("conversion treated", u.get("treated", {}).get("rate"), 4),
            ("conversion holdout", u.get("holdout", {}).get("rate"), 4),
            ("uplift (treated - holdout)", u.get("estimate"), 4),
            ("  uplift 95% low", u.get("low"), 4),
            ("  uplift 95% high", u.get("high"), 4),
        ]
    return rows


def format_report(report: Report) -> str:
    """An aligned table per detector, then the summary lines.

    >>> print(format_report(evaluate([], [], {"s": [1]}, detectors=["rage_click"])))
    ... # doctest: +NORMALIZE_WHITESPACE
    detector    episodes  detected  fired  false+  precision  recall  median ms  median events
    rage_click         0         0      0       0          -       -          -              -
    <BLANKLINE>
    sessions                          1
    ...
    """
    header = ["detector", "episodes", "detected", "fired", "false+", "precision", "recall",
              "median ms", "median events"]
    rows = [
        [name, d["episodes"], d["detected"], d["fired"], d["false_positives"],
         _fmt(d["precision"]), _fmt(d["recall"]), _fmt(d["median_detect_ms"], 0),
         _fmt(d["median_detect_events"], 1)]
        for name, d in report["detectors"].items()
    ]
    lines = _table(header, rows)
    lines.append("")
    width = max(len(label) for label, _, _ in _summary(report))
    lines += [f"{label.ljust(width)}  {_fmt(value, digits)}" for label, value, digits in _summary(report)]
    return "\n".join(lines)


def format_comparison(a: Report, b: Report, names: Sequence[str] = ("A", "B")) -> str:
    """Two reports side by side: per detector precision, recall, median ms; B - A."""
    x, y = names
    header = ["detector", "episodes",
              f"precision {x}", f"precision {y}", "delta",
              f"recall {x}", f"recall {y}", "delta",
              f"median ms {x}", f"median ms {y}", "delta"]
    rows = []
    for name in dict.fromkeys([*a["detectors"], *b["detectors"]]):
        da, db = a["detectors"].get(name, {}), b["detectors"].get(name, {})
        row = [name, da.get("episodes", db.get("episodes", 0))]
        for key, digits in (("precision", 3), ("recall", 3), ("median_detect_ms", 0)):
            va, vb = da.get(key), db.get(key)
            row += [_fmt(va, digits), _fmt(vb, digits), _fmt_delta(va, vb, digits)]
        rows.append(row)
    lines = _table(header, rows)
    lines.append("")
    summary_rows = []
    for (label, va, digits), (_, vb, _) in zip(_summary(a), _summary(b), strict=True):
        summary_rows.append([label.strip(), _fmt(va, digits), _fmt(vb, digits),
                             _fmt_delta(va, vb, digits)])
    lines += _table(["summary", x, y, "delta"], summary_rows)
    return "\n".join(lines)


def print_json(report: Any, out: IO[str] | None = None) -> None:
    """One JSON object on one line (``null`` for undefined ratios, never NaN)."""
    stream = sys.stdout if out is None else out
    stream.write(orjson.dumps(report).decode() + "\n")
