"""Faults on the real embedded broker: a SIGKILLed worker's successor commits what it did.

The commit stall (issue 11): after a restart, Faust's table recovery resumes the
stream partitions *before* it seeks them to the committed offsets (and clears the
streams' queues only after that), so records come in while the seek is awaited; the
seek sets the read offset back to the committed offset, the next record looks like a
jump over the ones just delivered, and Faust files them as a gap. Merged into the
acked offsets at commit time, each is there twice, and every commit moved the
partition on by one offset. The fix is in :mod:`streamer.stream.transport`; without it
this test failed in 2 of 3 restarts here (the race needs records to arrive while the
seek is awaited). A first attempt that only kept the read offset past those records
lost the records the queue clearing dropped: hence the count of processed events.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamer.embedded import EmbeddedBroker
from streamer.stream.topics import EVENTS_TOPIC
from tests.conftest import WorkerProcess, start_worker, stop_process, wait_for

pytestmark = pytest.mark.broker

#: Of the topics the worker creates; the session's broker may hold the events topic
#: with more (another test created it first): the ends come from the acks.
PARTITIONS = 2
#: Fetches answered at once: the successor's first records come in while the recovery's
#: seek to the committed offsets is still awaited (the race behind the stall).
ENV = {"FW_FETCH_MAX_WAIT_MS": "5"}
BASE_TS = 1_767_225_600_000


def _records(prefix: str, sessions: int, per_session: int) -> list[tuple[bytes, bytes]]:
    """Per-session records of 4 page views each; sessions interleaved."""
    out = []
    for n in range(per_session):
        for s in range(sessions):
            sid = f"{prefix}-{s}"
            events = [{"session_id": sid, "type": "page_view", "page": f"/p{n}-{i}",
                       "ts": BASE_TS + 1000 * (4 * n + i), "event_id": f"{sid}-{n}-{i}"}
                      for i in range(4)]
            out.append((sid.encode(), orjson.dumps(events)))
    return out


async def _produce(bootstrap: str, records: list[tuple[bytes, bytes]], ends: dict[int, int]) -> None:
    """Send ``records``; ``ends`` gets each partition's end offset from the broker's acks
    (the embedded broker's ListOffsets(latest) answers short)."""
    # Big batches: many records per fetch, as a backlog is read after a restart.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=4 << 20)
    await producer.start()
    try:
        futures = [await producer.send(EVENTS_TOPIC, value=value, key=key)
                   for key, value in records]
        for ack in await asyncio.gather(*futures):
            ends[ack.partition] = max(ends.get(ack.partition, 0), ack.offset + 1)
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, partitions: Iterable[int]) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in partitions]
        consumer.assign(tps)
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


def _short(bootstrap: str, group: str, ends: dict[int, int]) -> dict[int, int]:
    committed = asyncio.run(_committed(bootstrap, group, ends))
    return {p: end - committed[p] for p, end in ends.items() if committed[p] < end}


def _consumed_all(w: WorkerProcess, at_least: int) -> float:
    """Wait until the worker has counted ``at_least`` records and then nothing new for 1 s;
    returns the monotonic time of the last change."""
    seen = [-1.0, time.monotonic()]

    def settled() -> bool:
        if not w.answers():
            return False
        n = w.metric("frictionwatch_records_total")
        if n != seen[0]:
            seen[:] = [n, time.monotonic()]
            return False
        return n >= at_least and time.monotonic() - seen[1] >= 1.0

    wait_for(settled, 120, f"worker to consume {at_least} records", w.process)
    return seen[1]


#: Restarts per test: whether the race comes up depends on timing (on today's Faust
#: alone, two restarts in three stalled here); three make a miss unlikely.
ROUNDS = 3


def test_committed_offsets_reach_the_end_after_sigkills_and_restarts(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    app_id = "fw-commit-stall"
    bootstrap = broker.address
    worker = start_worker(broker, tmp_path, app_id, partitions=PARTITIONS, env=ENV)
    try:
        worker.wait_consuming(broker)
        ends: dict[int, int] = {}
        asyncio.run(_produce(bootstrap, _records("stall-0", 100, 10), ends))
        # Everything the first worker read is committed: its successor starts from there.
        wait_for(lambda: not _short(bootstrap, app_id, ends), 90, "the first worker's commits",
                 worker.process)
        for n in range(1, ROUNDS + 1):
            stop_process(worker.process, signal.SIGKILL)
            assert worker.process.returncode == -signal.SIGKILL
            # A backlog waits for the successor: it reads it right after table recovery.
            asyncio.run(_produce(bootstrap, _records(f"stall-{n}", 100, 10), ends))
            backlog = sum(_short(bootstrap, app_id, ends).values())
            assert backlog == 1000
            worker = start_worker(broker, tmp_path, app_id, partitions=PARTITIONS, env=ENV)
            done = _consumed_all(worker, backlog)
            # Faust commits every 2.8 s: within a few seconds every offset is committed.
            deadline = done + 8.0
            short = _short(bootstrap, app_id, ends)
            while short and time.monotonic() < deadline:
                time.sleep(0.25)
                short = _short(bootstrap, app_id, ends)
            assert not short, (
                f"restart {n}: records consumed {time.monotonic() - done:.1f}s ago, yet the "
                f"committed offsets are short of the end by {short} (log {worker.log})")
            # ...and every record of the backlog was processed (each event has its own id:
            # a record processed twice counts its events as duplicates, not here).
            events = worker.metric("frictionwatch_events_total")
            assert events == 4 * backlog, (
                f"restart {n}: {events} events processed of {4 * backlog} (log {worker.log})")
    finally:
        stop_process(worker.process)
