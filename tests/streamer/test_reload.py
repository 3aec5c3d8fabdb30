"""SIGHUP reloads the config of a running worker on the real broker, keeping state."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streamer.embedded import EmbeddedBroker
from tests.conftest import ROOT, consume, produce, start_worker, stop_process, wait_for

pytestmark = pytest.mark.broker

TS = 1_767_225_600_000


def failures(sid: str, numbers: range) -> list[tuple[bytes, bytes]]:
    return [(sid.encode(), orjson.dumps({"session_id": sid, "type": "checkout_failed",
                                         "ts": TS + 1000 * n, "code": "402"}))
            for n in numbers]


def test_sighup_reloads_config_without_losing_session_state(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    config = tmp_path / "fw.toml"
    config.write_text("[checkout_failure]\nnudge_after = 2\nhandoff_after = 10\n")
    w = start_worker(broker, tmp_path, "fw-reload", "--config", str(config))
    sid = "reload-1"
    try:
        w.wait_consuming(broker)
        bootstrap = broker.address
        asyncio.run(produce(bootstrap, failures(sid, range(1, 4))))
        signals = asyncio.run(consume(
            bootstrap, "frictionwatch.signals",
            lambda rs: sum(r.key == sid.encode() for r in rs) >= 2, timeout=90))
        assert [orjson.loads(r.value)["evidence"]["failures"] for r in signals
                if r.key == sid.encode()] == [2, 3]

        config.write_text("[checkout_failure]\nnudge_after = 2\nhandoff_after = 4\n")
        w.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in w.log.read_text(), 20, "reload log line", w.process)
        assert "checkout_failure.handoff_after: 10 -> 4" in w.log.read_text()

        asyncio.run(produce(bootstrap, failures(sid, range(4, 5))))
        out = asyncio.run(consume(
            bootstrap, "frictionwatch.interventions",
            lambda rs: any(orjson.loads(r.value)["kind"] == "handoff"
                           for r in rs if r.key == sid.encode()), timeout=60))
        handoff = [orjson.loads(r.value) for r in out if r.key == sid.encode()][-1]
        # The 4th failure hands off: the count of 3 survived the reload.
        assert handoff["kind"] == "handoff"
        assert handoff["reasons"][0]["evidence"]["failures"] == 4

        config.write_text("[checkout_failure]\nhandoff_afterr = 4\n")
        w.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "refused" in w.log.read_text(), 20, "refusal log line", w.process)
        assert "checkout_failure.handoff_afterr" in w.log.read_text()
        assert w.process.poll() is None
    finally:
        stop_process(w.process)


def test_worker_with_a_typo_in_its_config_fails_at_start(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[rage_click]\nmax_interval_ms = -3\n")
    result = subprocess.run(
        [sys.executable, "-m", "streamer", "worker", "--broker", "127.0.0.1:1",
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "rage_click.max_interval_ms = -3 is out of range" in result.stderr
