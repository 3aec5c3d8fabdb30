"""A SIGHUP replaces the rules and keeps what the models learned; checkpoints only go on.

No broker: the reloader and the checkpoint timer's body run against a pipeline with
a dict for the table, as the worker builds them (:mod:`streamer.stream.app`).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path

import pytest

from detectors.events import MAX_RECORD_BYTES
from detectors.model import Models
from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.settings import load_detection_config
from streamer.stream.checkpoint import Checkpointer
from streamer.stream.pipeline import Pipeline
from streamer.stream.reload import ConfigReloader
from streamer.tools.simulate import generate, interleave

CONFIG = "[policy]\nholdout_share = 0.2\n\n[model]\nlearning_rate = 0.05\n"


def _feed(pipeline: Pipeline, seed: int, sessions: int) -> None:
    """Simulated sessions through the pipeline, every one ended (its outcome learned)."""
    for key, value in interleave(generate(seed=seed, sessions=sessions, holdout_share=0.2)):
        pipeline.process(key, value)
    pipeline.sweep(-1)


def _pipeline_factory(tmp_path: Path) -> tuple[Pipeline, Path, list[bytes], Checkpointer]:
    config = tmp_path / "fw.toml"
    config.write_text(CONFIG)
    engine = Engine.from_config(load_detection_config(config))
    pipeline = Pipeline(engine, {}, Metrics(), max_record_bytes=MAX_RECORD_BYTES)
    sent: list[bytes] = []

    async def send(key: bytes, value: bytes) -> None:
        assert key == b"fw-test"
        sent.append(value)

    return pipeline, config, sent, Checkpointer(pipeline, send, b"fw-test", pipeline.metrics)


def _learned(checkpoint: bytes) -> int:
    models = pickle.loads(checkpoint)
    assert isinstance(models, Models)
    return models.risk.learned


def test_sighup_with_an_unchanged_config_keeps_the_learned_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, config, sent, checkpointer = _pipeline_factory(tmp_path)
    reloader = ConfigReloader(pipeline, str(config), load_detection_config(config))
    _feed(pipeline, seed=5, sessions=400)
    models = pipeline.engine.models
    assert models is not None
    learned, auc = models.risk.learned, models.risk.auc
    assert learned == 400 and auc != 0.5
    assert asyncio.run(checkpointer.checkpoint()) and _learned(sent[-1]) == learned

    with caplog.at_level(logging.WARNING):
        assert reloader.reload()
    assert "reloaded: no changes" in caplog.text
    after = pipeline.engine.models
    assert after is not None
    assert (after.risk.learned, after.risk.auc) == (learned, auc)

    # The next checkpoint holds at least as many learned outcomes as the last one.
    _feed(pipeline, seed=6, sessions=50)
    assert asyncio.run(checkpointer.checkpoint())
    assert _learned(sent[-1]) == learned + 50


def test_sighup_applies_new_rules_and_defers_model_and_incident_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, config, _, _ = _pipeline_factory(tmp_path)
    reloader = ConfigReloader(pipeline, str(config), load_detection_config(config))
    _feed(pipeline, seed=5, sessions=100)
    models = pipeline.engine.models
    running_incidents = pipeline.engine.incidents
    config.write_text("[policy]\nholdout_share = 0.5\n\n[routes]\npatterns = [\"/only\"]\n\n"
                      "[model]\nlearning_rate = 0.1\n\n[incidents]\nmin_count = 9\n")
    with caplog.at_level(logging.WARNING):
        assert reloader.reload()
    engine = pipeline.engine
    assert engine.policy.holdout_share == 0.5 and engine.routes.patterns == ("/only",)
    assert engine.models is models and models is not None and models.risk.learned == 100
    assert engine.incidents is running_incidents  # the incident agent's, built at start
    assert "policy.holdout_share: 0.2 -> 0.5" in caplog.text
    assert "take effect at the next start" in caplog.text
    assert "model.learning_rate: 0.05 -> 0.1" in caplog.text
    assert "incidents.min_count: '(default)' -> 9" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # still waiting, and still said
        assert reloader.reload()
    assert "reloaded: no changes" in caplog.text and "model.learning_rate" in caplog.text


def test_a_checkpoint_never_holds_fewer_outcomes_than_the_last_restored_or_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, config, sent, _ = _pipeline_factory(tmp_path)
    _feed(pipeline, seed=5, sessions=60)

    async def send(key: bytes, value: bytes) -> None:
        sent.append(value)

    # Started with restored models that hold 60 outcomes: nothing new, nothing written.
    checkpointer = Checkpointer(pipeline, send, b"fw-test", pipeline.metrics)
    assert not asyncio.run(checkpointer.checkpoint()) and not sent
    # Fresh models in their place (what reloading used to do) are never written over it.
    pipeline.engine = Engine.from_config(load_detection_config(config))
    _feed(pipeline, seed=7, sessions=30)
    with caplog.at_level(logging.WARNING):
        assert not asyncio.run(checkpointer.checkpoint())
        assert not asyncio.run(checkpointer.checkpoint())
    assert not sent
    assert "hold 30 learned outcomes, fewer than the 60" in caplog.text
    assert "(2 checkpoint(s) skipped)" in caplog.text
    _feed(pipeline, seed=8, sessions=40)
    assert asyncio.run(checkpointer.checkpoint()) and _learned(sent[-1]) == 70
    assert pipeline.metrics.registry.get_sample_value(
        "frictionwatch_model_checkpoints_total") == 1
