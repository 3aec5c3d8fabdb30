"""``/healthz`` and ``/readyz`` of a real worker while its broker is paused and resumed."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from streamer.embedded import EmbeddedBroker
from tests.conftest import WorkerProcess, start_worker, stop_process, wait_for

pytestmark = pytest.mark.broker


def _get(w: WorkerProcess, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{w.web}{path}", timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _healthy(w: WorkerProcess) -> bool:
    status, body = _get(w, "/healthz")
    ready, _ = _get(w, "/readyz")
    return status == 200 and body["status"] == "ok" and ready == 200


def test_healthz_is_degraded_during_a_broker_pause_and_recovers(tmp_path: Path) -> None:
    # A broker of its own: pausing the shared one would stall every other test's worker.
    with EmbeddedBroker() as broker:
        assert broker.process is not None
        pid = broker.process.pid
        w = start_worker(broker, tmp_path, "fw-health")
        try:
            w.wait_consuming(broker)
            wait_for(lambda: _healthy(w), 30, "healthz ok and ready", w.process)
            status, ready = _get(w, "/readyz")
            assert ready["ready"] is True and ready["partitions"] == [0, 1]

            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                def degraded() -> bool:
                    return _get(w, "/healthz")[1]["status"] == "degraded"

                wait_for(degraded, 10, "healthz to say degraded during the pause", w.process)
                took = time.monotonic() - stopped
                status, body = _get(w, "/healthz")
                assert "broker_unreachable" in body["reasons"], body
                assert body["details"]["broker_unreachable"]
                # Liveness: restarting workers does not bring a broker back.
                assert status == 200
                # Readiness: no traffic to a worker that can neither publish nor consume.
                status, ready = _get(w, "/readyz")
                assert status == 503 and "broker_unreachable" in ready["reasons"]
                assert took <= 10
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: _healthy(w), 60, "healthz ok again after the pause", w.process)
        finally:
            stop_process(w.process)
