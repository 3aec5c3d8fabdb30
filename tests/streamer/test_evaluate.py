"""The ``replay --labels`` / ``compare`` report: metrics on hand-made records, then the CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.registry import REGISTRY
from streamer.cli import main
from streamer.tools.evaluate import LabelsError, evaluate, format_comparison, format_report, parse_labels

T0 = 1_000_000


def signal_factory(sid: str, detector: str, ts: int) -> dict[str, Any]:
    return {"kind": "signal", "session_id": sid, "ts": ts, "detector": detector,
            "strength": 0.7, "evidence": {}}


def intervention_factory(sid: str, ts: int, kind: str = "nudge", delivered: bool = True) -> dict[str, Any]:
    return {"kind": kind, "session_id": sid, "ts": ts, "intervention_id": f"{sid}-{ts}",
            "reasons": [], "message": "", "risk": 0.5, "delivered": delivered}


def label_factory(sid: str, kind: str, onset: int) -> dict[str, Any]:
    return {"session_id": sid, "type": kind, "onset_ts": onset, "episode": kind}


def ticks(start: int, n: int, step: int = 100) -> list[int]:
    return [start + i * step for i in range(n)]


# -- metrics ---------------------------------------------------------------------------
def test_hit_miss_false_positive_and_time_to_detect() -> None:
    sessions = {"hit": ticks(T0, 10), "miss": ticks(T0, 10), "fp": ticks(T0, 10),
                "clean": ticks(T0, 10)}
    labels = [label_factory("hit", "rage_click", T0 + 200),
              label_factory("miss", "rage_click", T0 + 300)]
    records = [
        signal_factory("hit", "rage_click", T0 + 500),   # 3 events after onset
        signal_factory("hit", "rage_click", T0 + 700),   # later signals do not matter
        signal_factory("fp", "rage_click", T0 + 100),    # no label there: false positive
    ]
    report = evaluate(records, labels, sessions)
    rage = report["detectors"]["rage_click"]
    assert rage["episodes"] == 2 and rage["detected"] == 1 and rage["missed"] == 1
    assert rage["fired"] == 2 and rage["false_positives"] == 1 and rage["signals"] == 3
    assert rage["precision"] == 0.5 and rage["recall"] == 0.5
    assert rage["median_detect_ms"] == 300.0
    assert rage["median_detect_events"] == 3.0
    assert report["sessions"] == 4 and report["clean_sessions"] == 2
    assert report["labelled_sessions"] == 2 and report["labels"] == 2
    assert report["clean_signalled_share"] == 0.5  # "fp" is clean and got a signal
    assert report["clean_nudged_share"] == 0.0


def test_every_registered_detector_is_reported_with_null_ratios_when_undefined() -> None:
    report = evaluate([], [], {"s": [T0]})
    assert list(report["detectors"])[: len(REGISTRY)] == list(REGISTRY)
    for d in report["detectors"].values():
        assert d["episodes"] == d["fired"] == 0
        assert d["precision"] is None and d["recall"] is None and d["median_detect_ms"] is None
    orjson.dumps(report)  # JSON-valid: no NaN anywhere


def test_unknown_label_types_are_reported_too() -> None:
    report = evaluate([], [label_factory("s", "made_up", T0)], {"s": [T0]})
    assert report["detectors"]["made_up"]["recall"] == 0.0


def test_early_detection_within_tolerance_counts_beyond_it_does_not() -> None:
    sessions = {"a": ticks(T0, 20), "b": ticks(T0, 20)}
    labels = [label_factory("a", "dead_click", T0 + 1000), label_factory("b", "dead_click", T0 + 1000)]
    records = [signal_factory("a", "dead_click", T0 + 900),   # 100 ms early: within tolerance
               signal_factory("b", "dead_click", T0 + 200)]   # fired long before the friction
    report = evaluate(records, labels, sessions, tolerance_ms=500)
    dead = report["detectors"]["dead_click"]
    assert dead["detected"] == 1 and dead["early"] == 1 and dead["recall"] == 0.5
    assert dead["precision"] == 0.5 and dead["false_positives"] == 1
    assert dead["median_detect_ms"] == -100.0 and dead["median_detect_events"] == 0.0
    strict = evaluate(records, labels, sessions, tolerance_ms=0)["detectors"]["dead_click"]
    assert strict["detected"] == 0 and strict["early"] == 2 and strict["precision"] == 0.0


def test_late_detection_counts_events_after_onset() -> None:
    sessions = {"a": [T0, T0 + 10, T0 + 10, T0 + 20, T0 + 5000, T0 + 9000]}
    labels = [label_factory("a", "checkout_failure", T0 + 10)]
    records = [signal_factory("a", "checkout_failure", T0 + 5000)]
    d = evaluate(records, labels, sessions)["detectors"]["checkout_failure"]
    # onset < ts <= detection: T0+20 and T0+5000; the two onset-time events are not "after".
    assert d["median_detect_events"] == 2.0 and d["median_detect_ms"] == 4990.0
    assert d["precision"] == 1.0 and d["recall"] == 1.0


def test_an_early_false_fire_then_a_hit_is_a_false_positive_and_a_detection() -> None:
    labels = [label_factory("a", "rage_click", T0 + 5000)]
    records = [signal_factory("a", "rage_click", T0), signal_factory("a", "rage_click", T0 + 5000)]
    d = evaluate(records, labels, {"a": ticks(T0, 60)})["detectors"]["rage_click"]
    assert d["precision"] == 0.0 and d["recall"] == 1.0 and d["median_detect_ms"] == 0.0


def test_clean_sessions_nudged_interventions_and_holdout() -> None:
    sessions = {f"c{i}": [T0] for i in range(4)} | {"f": [T0, T0 + 1]}
    labels = [label_factory("f", "help_request", T0 + 1)]
    records = [
        signal_factory("c0", "rage_click", T0), intervention_factory("c0", T0),
        signal_factory("c1", "dead_click", T0), intervention_factory("c1", T0, "handoff", False),
        signal_factory("f", "help_request", T0 + 1), intervention_factory("f", T0 + 1, "handoff"),
    ]
    report = evaluate(records, labels, sessions)
    assert report["clean_sessions"] == 4 and report["clean_nudged_share"] == 0.5
    assert report["interventions"] == {"total": 3, "nudge": 1, "handoff": 2}
    assert report["interventions_per_session"] == pytest.approx(3 / 5)
    assert report["interventions_per_session_by_kind"] == {"nudge": 0.2, "handoff": 0.4}
    assert report["holdout_interventions"] == 1 and report["holdout_sessions"] == 1


def test_no_clean_sessions_gives_null_share() -> None:
    report = evaluate([], [label_factory("a", "rage_click", T0)], {"a": [T0]})
    assert report["clean_sessions"] == 0 and report["clean_nudged_share"] is None


def test_tables_render_every_detector_and_the_summary() -> None:
    labels = [label_factory("a", "rage_click", T0)]
    a = evaluate([signal_factory("a", "rage_click", T0)], labels, {"a": [T0], "b": [T0]})
    b = evaluate([], labels, {"a": [T0], "b": [T0]})
    text = format_report(a)
    for name in REGISTRY:
        assert name in text
    assert "clean sessions nudged (share)" in text and "interventions per session" in text
    side = format_comparison(a, b)
    rage = next(line for line in side.splitlines() if line.startswith("rage_click"))
    # episodes; precision A, B, delta; recall A, B, delta; median ms A, B, delta
    assert rage.split()[1:] == ["1", "1.000", "-", "-", "1.000", "0.000", "-1.000", "0", "-", "-"]


# -- labels ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "line 2: not JSON"),
        (b"[1, 2]", "line 2: a label must be a JSON object"),
        (b'{"session_id": "s", "type": "rage_click"}', "line 2: missing 'onset_ts'"),
        (b'{"session_id": "s", "type": "rage_click", "onset_ts": "soon"}',
         "line 2: 'onset_ts' must be an integer"),
        (b'{"session_id": 7, "type": "rage_click", "onset_ts": 1}', "line 2: 'session_id' must be"),
    ],
)
def test_bad_label_lines_name_the_line(line: bytes, message: str) -> None:
    good = orjson.dumps(label_factory("s", "rage_click", T0))
    with pytest.raises(LabelsError, match=message):
        parse_labels([good, line], "labels.jsonl")


# -- the command line ----------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sim")
    events, labels = root / "events.jsonl", root / "labels.jsonl"
    assert main(["simulate", "--seed", "3", "--sessions", "300",
                 "--events-out", str(events), "--labels-out", str(labels)]) == 0
    return events, labels


def _finite(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _finite(v)
    elif isinstance(value, float):
        assert math.isfinite(value)


def test_replay_labels_json_is_one_object(simulated: tuple[Path, Path], capsys) -> None:
    events, labels = simulated
    capsys.readouterr()
    assert main(["replay", str(events), "--labels", str(labels), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    report = orjson.loads(out)
    assert {"detectors", "clean_sessions", "clean_nudged_share", "interventions_per_session",
            "holdout_interventions", "sessions"} <= set(report)
    assert report["sessions"] == 300
    assert set(REGISTRY) <= set(report["detectors"])
    for d in report["detectors"].values():
        assert {"precision", "recall", "episodes", "median_detect_ms", "median_detect_events"} <= set(d)
    assert sum(d["episodes"] for d in report["detectors"].values()) == len(labels.read_bytes().splitlines())
    _finite(report)


def test_replay_labels_table_and_out_still_writes_the_lines(
    simulated: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    events, labels = simulated
    plain, with_report = tmp_path / "plain.jsonl", tmp_path / "report.jsonl"
    assert main(["replay", str(events), "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["replay", str(events), "--labels", str(labels), "--out", str(with_report)]) == 0
    out = capsys.readouterr().out
    assert with_report.read_bytes() == plain.read_bytes()
    assert out.splitlines()[0].split()[:3] == ["detector", "episodes", "detected"]
    assert "clean sessions nudged (share)" in out


def test_replay_json_without_labels_is_refused(simulated: tuple[Path, Path], capsys) -> None:
    assert main(["replay", str(simulated[0]), "--json"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_replay_with_a_bad_labels_file_names_the_line(
    simulated: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    events, labels = simulated
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(labels.read_bytes().splitlines()[0] + b"\n{oops\n")
    assert main(["replay", str(events), "--labels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} line 2: not JSON" in err
    assert main(["replay", str(events), "--labels", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_compare_two_configs(simulated: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    events, labels = simulated
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("")
    b.write_text("[dead_click]\nenabled = false\n")
    capsys.readouterr()
    assert main(["compare", str(events), "--labels", str(labels), str(a), str(b), "--json"]) == 0
    both = orjson.loads(capsys.readouterr().out)
    dead_a, dead_b = both["a"]["detectors"]["dead_click"], both["b"]["detectors"]["dead_click"]
    assert dead_a["episodes"] == dead_b["episodes"] > 0
    assert dead_a["recall"] > 0.5 and dead_b["recall"] == 0.0 and dead_b["precision"] is None
    assert both["a"]["detectors"]["rage_click"] == both["b"]["detectors"]["rage_click"]

    assert main(["compare", str(events), "--labels", str(labels), str(a), str(b)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("detector"))
    assert "precision A" in header and "recall B" in header and "delta" in header
    dead = next(line for line in text.splitlines() if line.startswith("dead_click"))
    assert f"{-dead_a['recall']:+.3f}" in dead
    assert any(line.startswith("clean sessions nudged") for line in text.splitlines())


def test_compare_names_the_bad_config(simulated: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    events, labels = simulated
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("")
    b.write_text("[rage_click]\nmin_clics = 4\n")
    assert main(["compare", str(events), "--labels", str(labels), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert str(b) in err and "rage_click.min_clics" in err
