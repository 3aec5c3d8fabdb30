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
  ``auc_window`` outcomes, each scored before it was learned (prequential).
- ``outcomes``: sessions whose outcome is known (after a replay: every session, as
  the replay ends the ones still open); ``outcomes_learned``: what the model learned.
- ``uplift``: conversion of ``treated`` sessions (shown an intervention) minus that of
  ``holdout`` sessions (decided for, not shown), with Newcombe's 95% interval
  (:func:`detectors.uplift.uplift`); ``none``: sessions no intervention was decided for.

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
from streamer.metrics import Metrics

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
LEARNED_SAMPLE: Final = "frictionwatch_model_outcomes_learned"
GROUPS: Final = ("treated", "holdout", "none")


def model_report(
    outcomes: Mapping[tuple[str, str], float],
    *,
    risk_auc: float | None,
    outcomes_learned: int | None = None,
    confidence: float = 0.95,
) -> Report:
    """The ``"model"`` section from outcome counts by (result, group) and the AUC.

    >>> counts = {("converted", "treated"): 30, ("abandoned", "treated"): 70,
    ...           ("converted", "holdout"): 10, ("abandoned", "holdout"): 90}
    >>> r = model_report(counts, risk_auc=0.91, outcomes_learned=200)
    >>> r["outcomes"], r["uplift"]["estimate"], r["uplift"]["low"] > 0
    (200, 0.2, True)
    """
    def count(result: str, group: str) -> int:
        return int(outcomes.get((result, group), 0))

    cells = {
        g: (count("converted", g), count("converted", g) + count("abandoned", g)) for g in GROUPS
    }
    c, n = cells["none"]
    return {
        "risk_auc": None if risk_auc is None else round(risk_auc, 4),
        "outcomes_learned": outcomes_learned,
        "outcomes": sum(n for _, n in cells.values()),
        "uplift": uplift(treated=cells["treated"], holdout=cells["holdout"], confidence=confidence),
        "none": {"converted": c, "sessions": n, "rate": c / n if n else None},
    }


def model_from_samples(samples: Iterable[Any]) -> Report:
    """:func:`model_report` from Prometheus samples (``.name``, ``.labels``, ``.value``).

    The samples of a live worker's ``/metrics`` (``prometheus_client.parser``) and of a
    replay's own registry (``registry.collect()``) read the same. The risk AUC is
    null when no outcome was learned (models disabled, or nothing ended yet).
    """
    outcomes: dict[tuple[str, str], float] = {}
    auc = learned = None
    for sample in samples:
        if sample.name == OUTCOMES_SAMPLE:
            key = (sample.labels.get("result", ""), sample.labels.get("group", "none"))
            outcomes[key] = outcomes.get(key, 0.0) + sample.value
        elif sample.name == RISK_AUC_SAMPLE:
            auc = float(sample.value)
        elif sample.name == LEARNED_SAMPLE:
            learned = int(sample.value)
    return model_report(outcomes, risk_auc=auc if learned else None, outcomes_learned=learned)


def _samples(families: Iterable[Any]) -> Iterator[Any]:
    for family in families:
        yield from family.samples


def model_from_metrics(metrics: Metrics, engine: Engine) -> Report:
    """The section after a replay: the replay's counters and the engine's models."""
    models = engine.models
    if models is not None:  # what the worker's gauge timer does
        metrics.risk_auc.set(models.risk.auc)
        metrics.model_learned.set(models.risk.learned)
    return model_from_samples(_samples(metrics.registry.collect()))


def model_from_text(texts: Iterable[str]) -> Report:
    """The section from Prometheus text exposition, one text per worker.

    Outcomes add up over workers; the risk AUC is the workers' AUCs weighted by the
    outcomes each learned (each worker's model learns only its own sessions).
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[Any] = []
    workers = []
    for text in texts:
        own = list(_samples(text_string_to_metric_families(text)))
        samples += [s for s in own if s.name == OUTCOMES_SAMPLE]
        workers.append(model_from_samples(own))
    report = model_from_samples(samples)
    learned = sum(w["outcomes_learned"] or 0 for w in workers if w["risk_auc"] is not None)
    if learned:
        report["risk_auc"] = round(sum(
            w["risk_auc"] * w["outcomes_learned"] for w in workers if w["risk_auc"] is not None
        ) / learned, 4)
        report["outcomes_learned"] = learned
    if len(workers) > 1:
        report["workers"] = [
            {"risk_auc": w["risk_auc"], "outcomes_learned": w["outcomes_learned"],
             "outcomes": w["outcomes"]} for w in workers
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
    >>> print(format_model(model_report(counts, risk_auc=0.91, outcomes_learned=200)))
    risk AUC (prequential, rolling)    0.9100  (200 outcomes learned)
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
    rows.append(("outcomes", str(model["outcomes"])))
    for name, cell in (("treated", u["treated"]), ("holdout", u["holdout"]),
                       ("none (no intervention)", model["none"])):
        rate = cell["rate"]
        rows.append((f"conversion {name}", "-" if rate is None else
                     f"{rate:.4f}  ({cell['converted']} / {cell['sessions']})"))
    level = f"{u['confidence']:.0%}"
    if u["estimate"] is not None:
        estimate = f"{_signed(u['estimate'])}  {level} CI [{_signed(u['low'])}, {_signed(u['high'])}]"
    elif not u["holdout"]["sessions"]:
        estimate = "-  (no holdout sessions: set [policy] holdout_share)"
    else:
        estimate = "-  (no treated sessions)"
    rows.append(("uplift (treated - holdout)", estimate))
    for i, worker in enumerate(model.get("workers", ()), 1):
        rows.append((f"  worker {i}", f"risk AUC {_fmt(worker['risk_auc'], 4)}, "
                     f"{worker['outcomes']} outcomes"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


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

    sessions = _Sessions({label["session_id"] for label in labels})
    metrics = Metrics()
    records: list[dict[str, Any]] = []
    for record in replay_lines(
        _progress(lines, err, what), engine.observed(on_outcome=sessions),
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
        records.append(slim)
    report = evaluate(
        records, labels, sessions.ts,
        detectors=[*REGISTRY, *(d.name for d in engine.detectors)], tolerance_ms=tolerance_ms,
    )
    report["model"] = model_from_metrics(metrics, engine) if engine.models is not None else None
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
