"""Fixtures that start real things: the embedded broker and worker processes.

Everything started here is stopped by pid in a finally, even when a test fails.
Under CI (``CI=true``) a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server

from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker, create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
#: The embedded broker holds a group join for half the session timeout: keep it short.
EMBEDDED_GROUP_ENV = {f"FW_{k.upper()}": str(v) for k, v in EMBEDDED_GROUP_TIMEOUTS.items()}
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(name: str) -> str:
    """The path of a command-line tool; a failure under CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it: deploy/test-packages.txt)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    web: str
    settings: Settings
    log: Path

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.web}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def answers(self) -> bool:
        try:
            self.metrics_text()
        except OSError:
            return False
        return True

    def wait_consuming(self, broker: EmbeddedBroker) -> None:
        """Until the web server answers and a probe record has been consumed."""
        wait_for(self.answers, 60, f"worker web server (log {self.log})", self.process)
        probe = b'{"session_id": "probe", "type": "page_view", "ts": 1, "page": "/"}'
        asyncio.run(produce(broker.address, [(b"probe", probe)]))
        wait_for(lambda: self.metric("frictionwatch_records_total") >= 1, 90,
                 f"worker to consume (log {self.log})", self.process)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


def start_worker(
    broker: EmbeddedBroker, tmp: Path, app_id: str, *extra_args: str,
    env: dict[str, str] | None = None, partitions: int = 2,
) -> WorkerProcess:
    port = free_port()
    settings = Settings.load(broker=broker.address, app_id=app_id, partitions=partitions,
                             web_port=port)
    asyncio.run(create_topics(broker.address, Topics.names(settings), settings.partitions))
    log = tmp / f"{app_id}.log"
    with open(log, "ab") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "worker", "--broker", broker.address,
             "--app-id", app_id, "--partitions", str(partitions), "--web-port", str(port),
             "--loglevel", "info", *extra_args],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, **EMBEDDED_GROUP_ENV, **(env or {})},
        )
    return WorkerProcess(process, f"http://127.0.0.1:{port}", settings, log)


@contextlib.contextmanager
def serving_metrics(registry: CollectorRegistry) -> Iterator[str]:
    """A /metrics URL on 127.0.0.1 serving ``registry``, for as long as the block runs."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def running_worker(
    broker: EmbeddedBroker, tmp: Path, app_id: str, *extra_args: str,
    env: dict[str, str] | None = None, partitions: int = 2,
) -> Iterator[WorkerProcess]:
    """A worker that is consuming when the block starts and stopped when it ends."""
    w = start_worker(broker, tmp, app_id, *extra_args, env=env, partitions=partitions)
    try:
        w.wait_consuming(broker)
        yield w
    finally:
        stop_process(w.process)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


#: The online models learn from every session a worker sees, in arrival order, so only
#: a rules-only worker is comparable record for record with an offline replay.
RULES_ONLY = {"model": {"enabled": False}}


@pytest.fixture(scope="session")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A rules-only worker shared by the tests that compare the stream with replay."""
    tmp = tmp_path_factory.mktemp("worker")
    config = tmp / "rules-only.toml"
    config.write_text("[model]\nenabled = false\n")
    with running_worker(broker, tmp, "fw-test", "--config", str(config)) as w:
        yield w


def wait_for(
    check: Callable[[], bool], timeout: float, what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} waiting for {what}")
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def produce(
    bootstrap: str, records: list[tuple[bytes | None, bytes]], topic: str = "frictionwatch.events"
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, done: Callable[[list], bool], timeout: float = 60
) -> list:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline and not done(records):
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records
