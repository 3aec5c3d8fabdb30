"""Effectively-once state on the real embedded broker (issue 11, acceptance 2).

A worker SIGKILLed right after its changelog write and before its offset commit, then
restarted: the records it processed are delivered again, and the session's counts and
interventions must equal the uninterrupted run's. "After the changelog write, before
the commit" is made deterministic with a long commit interval (``FW_COMMIT_INTERVAL_S``):
the kill comes once the changelog holds the sessions' states and the interventions
topic their interventions, and the group's committed offsets are checked to be still
where the previous (gracefully stopped) worker left them, in the middle of both sessions.

Two sessions, both cut by that commit: ``ended`` ends with ``session_end`` (before this
fix its state was deleted, so the records delivered again started from nothing and
fired a nudge and a handoff again at lower positions: ids an uninterrupted run never
makes); ``live`` goes on, its events without event ids (before, its counts doubled).

And the order of a batch's writes (README "Faults"): a worker that dies after its
outputs are acknowledged and before its states are written loses no intervention.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.session import Engine, SessionState
from streamer.embedded import EmbeddedBroker
from streamer.metrics import Metrics
from streamer.stream.agents import TEST_EXIT
from streamer.stream.pipeline import Pipeline, Record
from streamer.stream.topics import EVENTS_TOPIC, INTERVENTIONS_TOPIC, SESSIONS_TABLE
from tests.conftest import (
    WorkerProcess,
    consume,
    produce,
    running_worker,
    start_worker,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.broker

APP_ID = "fw-once"
PARTITIONS = 2
BASE_TS = 1_767_225_600_000
ENDED, LIVE = "once-ended", "once-live"
ENV = {"FW_SWEEP_INTERVAL_S": "1"}
#: No commit while this worker runs: killed, it leaves its offsets where they were.
NO_COMMIT = {**ENV, "FW_COMMIT_INTERVAL_S": "3600"}


def _event(sid: str, n: int, kind: str, **fields: Any) -> dict[str, Any]:
    event = {"session_id": sid, "type": kind, "ts": BASE_TS + 1000 * n, **fields}
    if sid == ENDED:
        event["event_id"] = f"{sid}-{n}"  # as the SDK sends them; the end used to drop them
    return event


def _views(sid: str, first: int, count: int) -> list[dict[str, Any]]:
    return [_event(sid, n, "page_view", page=f"/p/{n}") for n in range(first, first + count)]


def _failed(sid: str, n: int) -> dict[str, Any]:
    return _event(sid, n, "checkout_failed", reason="declined", code="402", page="/checkout")


def _click(sid: str, n: int, x: int = 10) -> dict[str, Any]:
    return _event(sid, n, "click", x=x, y=10, target="#pay", page="/checkout")


#: Committed by the first worker (stopped gracefully): eight page views of each session.
BEFORE = [
    [_views(ENDED, 0, 4), _views(LIVE, 0, 4)],
    [_views(ENDED, 4, 4), _views(LIVE, 4, 4)],
]
#: Processed by the second worker and never committed: the kill comes after.
AFTER = [
    [[_event(ENDED, 8, "page_view", page="/checkout"), _failed(ENDED, 9)],
     [_click(LIVE, 8), _click(LIVE, 8, 12)]],
    [[_failed(ENDED, 10), _failed(ENDED, 11)],  # a nudge at seq 11, a handoff at seq 12
     [_click(LIVE, 8, 14), _event(LIVE, 9, "page_view", page="/help")]],
    [[_event(ENDED, 12, "session_end")],
     [_event(LIVE, 10, "help_request")]],
]


def _records(rounds: list[list[list[dict[str, Any]]]]) -> list[tuple[bytes, bytes]]:
    return [(events[0]["session_id"].encode(), orjson.dumps(events))
            for round_ in rounds for events in round_]


def _uninterrupted() -> tuple[dict[str, set[str]], dict[str, SessionState]]:
    """Intervention ids per session and final states, of one uninterrupted run offline."""
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(Engine.from_config({"model": {"enabled": False}}), states, Metrics(),
                        max_record_bytes=1 << 18)
    ids: dict[str, set[str]] = {ENDED: set(), LIVE: set()}
    for offset, (key, value) in enumerate(_records(BEFORE + AFTER)):
        produced = pipeline.process_batch([Record(key, value, EVENTS_TOPIC, 0, offset)])
        for o in produced.outcomes:
            if o.decision is not None:
                ids[o.session_id].add(o.decision.intervention_id)
    return ids, {sid: SessionState.from_json(states[sid.encode()]) for sid in (ENDED, LIVE)}


async def _offsets(bootstrap: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, end) per partition of the events topic for the group, without joining it
    (the end from a fetch's high watermark: the embedded broker's ListOffsets is short)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=APP_ID,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
        for tp in tps:
            consumer.seek(tp, 0)
        ends: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while len(ends) < len(tps) and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200, max_records=1)
            ends.update({tp.partition: hw for tp in tps
                         if (hw := consumer.highwater(tp)) is not None})
        return committed, ends
    finally:
        await consumer.stop()


def _all_committed(bootstrap: str) -> bool:
    committed, ends = asyncio.run(_offsets(bootstrap))
    return len(ends) == PARTITIONS and all(committed[p] >= ends[p] for p in ends)


def _changelog(bootstrap: str, done: Any = lambda latest: True) -> dict[str, bytes | None]:
    """The latest value per session key on the sessions table's changelog (None: deleted),
    read until ``done(latest)``."""
    topic = f"{APP_ID}-{SESSIONS_TABLE}-changelog"

    def latest(records: list[Any]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            if r.key in (ENDED.encode(), LIVE.encode()):
                out[r.key.decode()] = r.value
        return out

    return latest(asyncio.run(consume(bootstrap, topic, lambda rs: done(latest(rs)), timeout=60)))


def _ids(bootstrap: str, done: Any = None) -> dict[str, list[str]]:
    """Intervention ids on the topic per session (every copy), read until ``done(ids)``,
    or (``done`` None) the whole topic, to its end."""

    def ids(records: list[Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {ENDED: [], LIVE: []}
        for r in records:
            if r.key and r.key.decode() in out:
                out[r.key.decode()].append(orjson.loads(r.value)["intervention_id"])
        return out

    if done is None:
        return ids(asyncio.run(_everything(bootstrap, INTERVENTIONS_TOPIC)))
    return ids(asyncio.run(consume(bootstrap, INTERVENTIONS_TOPIC, lambda rs: done(ids(rs)),
                                   timeout=60)))


async def _everything(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic``, from the beginning to the end of each partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, topic
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for msgs in batch.values():
                records.extend(msgs)
            ends = {tp: consumer.highwater(tp) for tp in tps}
            if all(end is not None for end in ends.values()):
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    return records
        raise AssertionError(f"{topic} not read to its end in 30 s")
    finally:
        await consumer.stop()


def _state(raw: bytes | None) -> SessionState | None:
    return None if raw is None else SessionState.from_json(raw)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A broker of its own: on the shared one, the session-wide rules-only worker of the
    other tests reads these events too and publishes its own interventions for them."""
    with EmbeddedBroker() as b:
        yield b


def test_a_worker_killed_between_changelog_write_and_commit_changes_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    expected_ids, expected = _uninterrupted()
    # ended: a nudge and a handoff, 13 events; live: three interventions; all of them
    # decided on records the killed worker processed.
    assert (len(expected_ids[ENDED]), expected[ENDED].seq, len(expected_ids[LIVE])) == (2, 13, 3)
    bootstrap = broker.address
    config = tmp_path / "rules-only.toml"
    config.write_text("[model]\nenabled = false\n")
    args = ("--config", str(config))

    # 1. A first worker processes and commits the sessions' first records, and stops.
    with running_worker(broker, tmp_path, APP_ID, *args, env=ENV) as first:
        asyncio.run(produce(bootstrap, _records(BEFORE)))
        _changelog(bootstrap, lambda s: all(
            (st := _state(s.get(sid))) is not None and st.seq == 8 for sid in (ENDED, LIVE)))
        wait_for(lambda: _all_committed(bootstrap), 60, "the first worker's commits",
                 first.process)
    committed_before, _ = asyncio.run(_offsets(bootstrap))

    # 2. A second worker, which never commits, processes the rest: killed once the
    #    changelog holds the states and the topic the interventions.
    second: WorkerProcess = start_worker(broker, tmp_path, APP_ID, *args, env=NO_COMMIT)
    try:
        second.wait_consuming(broker)
        asyncio.run(produce(bootstrap, _records(AFTER)))
        written = _changelog(bootstrap, lambda s: (
            (e := _state(s.get(ENDED))) is not None and e.ended_at is not None
            and (live := _state(s.get(LIVE))) is not None and live.seq == expected[LIVE].seq))
        _ids(bootstrap, lambda ids: all(set(ids[sid]) >= expected_ids[sid] for sid in ids))
        committed, ends = asyncio.run(_offsets(bootstrap))
        assert committed == committed_before and any(committed[p] < ends[p] for p in ends), (
            "the kill must come before any commit of the records the second worker processed")
    finally:
        stop_process(second.process, signal.SIGKILL)
    assert second.process.returncode == -signal.SIGKILL
    tombstone = _state(written[ENDED])
    assert tombstone is not None and tombstone.seq == expected[ENDED].seq

    # 3. Restarted: the uncommitted records come again and change nothing.
    with running_worker(broker, tmp_path, APP_ID, *args, env=ENV) as third:
        again = len(_records(AFTER))
        wait_for(lambda: third.metric("frictionwatch_redelivered_total") >= again, 60,
                 "the uncommitted records delivered again", third.process)
        wait_for(lambda: _all_committed(bootstrap), 60, "the restarted worker's commits",
                 third.process)
        # Once committed past them, the ended session's records cannot come again: the
        # sweep frees its tombstone (the table's key is deleted).
        final = _changelog(bootstrap, lambda s: ENDED in s and s[ENDED] is None)
        assert third.metric("frictionwatch_session_tombstones") == 0
    ids = _ids(bootstrap)
    for sid in (ENDED, LIVE):
        assert set(ids[sid]) == expected_ids[sid], (sid, ids[sid], expected_ids[sid])
    live = _state(final[LIVE])
    assert live is not None
    assert (live.seq, live.counts, live.signal_counts, live.policy) == (
        expected[LIVE].seq, expected[LIVE].counts, expected[LIVE].signal_counts,
        expected[LIVE].policy)


def test_a_worker_killed_between_the_outputs_ack_and_the_state_write_loses_no_intervention(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The worker exits (``FW_EXIT_AFTER_OUTPUTS_ACKED``: ``os._exit``, as abrupt as a
    SIGKILL) at the boundary between the two writes of its first batch with an
    intervention. Outputs first: the state is not written, the restarted worker
    processes the records again and every intervention is on the topic (some twice).
    State first (the order before): the state marks the records applied, the restarted
    worker skips them, and that batch's interventions never reach the topic."""
    expected_ids, _ = _uninterrupted()
    bootstrap = broker.address
    config = tmp_path / "rules-only.toml"
    config.write_text("[model]\nenabled = false\n")
    args = ("--config", str(config))

    hooked = start_worker(broker, tmp_path, APP_ID, *args,
                          env={**NO_COMMIT, "FW_EXIT_AFTER_OUTPUTS_ACKED": "1"})
    try:
        hooked.wait_consuming(broker)
        asyncio.run(produce(bootstrap, _records(BEFORE + AFTER)))
        hooked.process.wait(90)
    finally:
        stop_process(hooked.process, signal.SIGKILL)
    assert hooked.process.returncode == TEST_EXIT, "the hook must have ended the worker"
    committed, ends = asyncio.run(_offsets(bootstrap))
    assert any(committed[p] < ends[p] for p in ends), "its records must be uncommitted"

    with running_worker(broker, tmp_path, APP_ID, *args, env=ENV) as again:
        wait_for(lambda: _all_committed(bootstrap), 90, "the restarted worker's commits",
                 again.process)
    ids = _ids(bootstrap)
    for sid in (ENDED, LIVE):
        assert set(ids[sid]) >= expected_ids[sid], (
            sid, "missing", sorted(expected_ids[sid] - set(ids[sid])))
