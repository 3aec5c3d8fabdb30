"""The routes and incident rules of a config reach the engines that watch a replay:
``replay --labels`` (:func:`streamer.tools.evaluate.replay_report`) and the AUC
benchmark (:func:`benchmarks.model_auc.auc_curve`) observe the engine with callbacks,
so they run the configured rules, not the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.model_auc import auc_curve
from streamer.cli import main
from streamer.settings import load_detection_config

TS = 1_767_225_600_000
#: Not among the default routes, and incidents open at once (by default they wait 30 min).
CONFIG = """
[routes]
patterns = ["/only"]

[incidents]
learn_ms = 0
min_count = 3
"""


def _events() -> list[dict[str, Any]]:
    """Eight sessions fail to pay on /only within a few seconds, then leave."""
    events = []
    for n in range(8):
        sid, t = f"s{n}", TS + n * 1000
        events.append({"session_id": sid, "type": "page_view", "ts": t, "page": "/only"})
        events += [{"session_id": sid, "type": "checkout_failed", "ts": t + 100 * i,
                    "code": "402"} for i in (1, 2, 3)]
        events.append({"session_id": sid, "type": "session_end", "ts": t + 400})
    return sorted(events, key=lambda e: e["ts"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fw.toml"
    path.write_text(CONFIG)
    return path


def test_replay_with_labels_runs_the_configured_routes_and_incidents(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels, out = tmp_path / "e.jsonl", tmp_path / "l.jsonl", tmp_path / "out.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _events()))
    labels.write_bytes(b"".join(
        orjson.dumps({"session_id": f"s{n}", "type": "checkout_failure",
                      "onset_ts": TS + n * 1000 + 200}) + b"\n" for n in range(8)))
    assert main(["replay", str(events), "--labels", str(labels), "--config", str(config),
                 "--out", str(out), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["detectors"]["checkout_failure"]["recall"] == 1.0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["route"] for r in records if r["kind"] == "signal"} == {"/only"}
    opened = [r for r in records if r["kind"] == "incident_open"]
    assert [r["key"] for r in opened] == ["/only|checkout_failure"]


def test_the_auc_benchmark_runs_the_configured_routes_and_incidents(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = auc_curve(_events(), load_detection_config(config), every=4)
    assert "after 8 outcomes" in capsys.readouterr().out
    assert len(run.pairs) == 8 and len(run.by_time["signal"]) == 8
    # The replay counted its signals by the configured route ...
    assert run.metrics.registry.get_sample_value(
        "frictionwatch_friction_by_route_total",
        {"route": "/only", "detector": "checkout_failure"}) == 16
    # ... through the engine with the configured rules, incidents included.
    assert run.engine.routes.patterns == ("/only",)
    assert (run.engine.incidents.learn_ms, run.engine.incidents.min_count) == (0, 3)
