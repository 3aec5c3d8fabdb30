"""The online models survive a SIGKILL: a restarted worker continues where it was."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from streamer.embedded import EmbeddedBroker
from streamer.tools import simulate
from tests.conftest import WorkerProcess, produce, start_worker, stop_process, wait_for

pytestmark = pytest.mark.broker

FAST = {
    "FW_MODEL_CHECKPOINT_S": "1",
    "FW_SWEEP_INTERVAL_S": "1",
    # Simulated sessions are minutes long: a one-minute silence ends one.
    "FW_IDLE_TIMEOUT_MS": "60000",
}


def _settled(w: WorkerProcess, name: str, quiet_s: float = 3.0) -> float:
    """Wait until ``name`` stops growing for ``quiet_s``; return its value."""
    last = [-1.0, 0]

    def still() -> bool:
        value = w.metric(name)
        if value != last[0]:
            last[:] = [value, 0]
            return False
        last[1] += 1
        return last[1] * 0.2 >= quiet_s

    wait_for(still, 180, f"{name} to settle", w.process)
    return last[0]


def test_models_continue_after_sigkill(broker: EmbeddedBroker, tmp_path: Path) -> None:
    sessions = list(simulate.generate(seed=11, sessions=3000))
    asyncio.run(produce(broker.address, simulate.interleave(sessions)))
    w = start_worker(broker, tmp_path, "fw-models", env=FAST)
    try:
        w.wait_consuming(broker)
        learned = _settled(w, "frictionwatch_model_outcomes_learned")
        assert learned >= 2000, f"only {learned} outcomes learned"
        auc = w.metric("frictionwatch_model_risk_auc")
        assert auc != 0.5
        # One checkpoint after the last outcome holds the final model.
        checkpoints = w.metric("frictionwatch_model_checkpoints_total")
        wait_for(lambda: w.metric("frictionwatch_model_checkpoints_total") >= checkpoints
                 and _checkpointed(w, learned), 30, "final checkpoint", w.process)
    finally:
        stop_process(w.process, signal.SIGKILL)
    assert w.process.returncode == -signal.SIGKILL

    again = start_worker(broker, tmp_path, "fw-models", env=FAST)
    try:
        wait_for(again.answers, 60, "restarted worker web", again.process)
        wait_for(lambda: again.metric("frictionwatch_model_outcomes_learned") >= learned, 60,
                 "restored model", again.process)
        # Restored from the checkpoint: the same model, not a fresh one at AUC 0.5.
        assert again.metric("frictionwatch_model_risk_auc") == pytest.approx(auc, abs=0.02)
        assert "restored models" in again.log.read_text()
        more = list(simulate.generate(seed=12, sessions=300))
        asyncio.run(produce(broker.address, simulate.interleave(more)))
        wait_for(lambda: again.metric("frictionwatch_model_outcomes_learned") > learned + 100,
                 120, "learning to continue", again.process)
    finally:
        stop_process(again.process)


def _checkpointed(w: WorkerProcess, learned: float) -> bool:
    return f"models checkpointed after {int(learned)} outcomes" in w.log.read_text()
