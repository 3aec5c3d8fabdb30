"""The uplift-targeted arm in the metrics and in ``report``: offline over a replay, live
from a worker's /metrics, added up over workers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detectors.session import Engine
from streamer.cli import main
from streamer.metrics import Metrics
from streamer.tools.evaluate import model_from_metrics, model_from_text
from streamer.tools.replay import replay_lines
from streamer.tools.simulate import generate, write_jsonl
from tests.conftest import serving_metrics

MAX_BYTES = 1 << 20
CONFIG = {"policy": {"holdout_share": 0.2, "uplift_share": 0.5}, "model": {"uplift_warmup": 50}}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("targeting")
    events, config = root / "events.jsonl", root / "targeting.toml"
    sessions = list(generate(seed=12, sessions=2500, effects="heterogeneous", holdout_share=0.2))
    write_jsonl(sessions, events, None)
    config.write_text("[policy]\nholdout_share = 0.2\nuplift_share = 0.5\n\n"
                      "[model]\nuplift_warmup = 50\n")
    return events, config


def test_report_shows_both_arms_and_what_targeting_changed(
    traffic: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events, config = traffic
    assert main(["report", str(events), "--config", str(config), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    t = report["targeting"]
    rules, targeted = t["arms"]["rules"], t["arms"]["targeted"]
    assert rules["sessions"] + targeted["sessions"] == report["outcomes"] == 2500
    assert 0.4 < targeted["sessions"] / 2500 < 0.6
    assert t["warm"] is True and t["uplift_learned"]["none"] >= 50
    assert t["interventions_avoided"] > 0 and targeted["decision_points"] > t["interventions_avoided"]
    assert rules["interventions"] > 0 and targeted["interventions"] > 0
    assert t["estimated_sessions"] > 0 and -1 < t["estimated_uplift"] < 1
    assert t["difference"]["low"] < t["difference"]["estimate"] < t["difference"]["high"]
    assert t["realised_uplift"] == targeted["uplift"]
    assert report["risk_auc_at_decision"] is not None
    assert main(["report", str(events), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    for line in ("risk AUC at decision", "conversion targeted - rules", "interventions avoided",
                 "estimated uplift (model)", "interventions per conversion gained"):
        assert line in text


def test_without_an_uplift_share_there_is_no_targeted_arm(
    traffic: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = traffic
    assert main(["report", str(events), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["targeting"] is None


def test_a_workers_metrics_give_the_same_targeting_report(
    traffic: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker counts the arms with the engine observer (streamer/stream/app.py)."""
    events, _ = traffic
    engine = Engine.from_config(CONFIG)
    metrics = Metrics()
    watched = engine.observed(on_outcome=metrics.watch_models(engine.models))
    list(replay_lines(iter(events.read_bytes().splitlines()), watched, max_record_bytes=MAX_BYTES,
                      metrics=metrics))
    offline = model_from_metrics(metrics, engine)
    assert offline["targeting"] is not None
    with serving_metrics(metrics.registry) as url:
        assert main(["report", "--metrics", url, "--json"]) == 0
        live = orjson.loads(capsys.readouterr().out)
    assert live == offline
    # two such workers add up: twice the sessions, the same rates
    text = _text(metrics)
    both = model_from_text([text, text])
    t, one = both["targeting"], offline["targeting"]
    assert t["arms"]["targeted"]["sessions"] == 2 * one["arms"]["targeted"]["sessions"]
    assert t["interventions_avoided"] == 2 * one["interventions_avoided"]
    assert t["estimated_uplift"] == pytest.approx(one["estimated_uplift"])
    assert both["risk_auc_at_decision"] == offline["risk_auc_at_decision"]


def _text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
