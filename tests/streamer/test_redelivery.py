"""Effectively-once state (issue 11): a record delivered twice changes nothing.

Kafka delivers again every record a worker processed but did not commit before it
stopped. On the pipeline with a dict for the table and records with Kafka positions,
as the agent gives them: the second delivery must change neither a session's state nor
its outputs, also after the session ended; records without positions (replay) keep
the event-id de-duplication only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import current_event

from detectors.session import Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline, Produced, Record
from streamer.stream.positions import committed_offsets, key_scope
from streamer.tools import simulate
from tests.conftest import RULES_ONLY

TOPIC = "frictionwatch.events"
T0 = 1_767_225_600_000


class Table(dict[bytes, bytes]):
    """A dict that counts writes, as the changelog would."""

    writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def pipeline_factory(states: Table | None = None, **kwargs: Any) -> tuple[Pipeline, Table, Metrics]:
    states = Table() if states is None else states
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config(RULES_ONLY), states, metrics, max_record_bytes=1 << 18,
                        **kwargs)
    return pipeline, states, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def record(sid: str, events: Sequence[dict[str, Any]], offset: int, partition: int = 1,
           *, key: bool = True) -> Record:
    """A record holding ``events`` of ``sid`` at ``partition``/``offset`` (no event ids:
    nothing but the position tells a second delivery)."""
    value = [{"session_id": sid, **e} for e in events]
    return Record(sid.encode() if key else None, orjson.dumps(value), TOPIC, partition, offset,
                  (T0 + 1000 * offset) / 1000)


def view(ts: int, page: str = "/") -> dict[str, Any]:
    return {"type": "page_view", "ts": ts, "page": page}


def failed(ts: int) -> dict[str, Any]:
    return {"type": "checkout_failed", "ts": ts, "reason": "declined", "code": "402",
            "page": "/checkout"}


def checkout_session(sid: str = "s", first: int = 10) -> list[Record]:
    """Four records: views, then failed payments (a nudge at seq 5, a handoff at seq 6),
    then the end."""
    return [
        record(sid, [view(T0), view(T0 + 1000, "/cart")], first),
        record(sid, [view(T0 + 2000, "/checkout"), failed(T0 + 3000)], first + 1),
        record(sid, [failed(T0 + 4000), failed(T0 + 5000)], first + 2),
        record(sid, [{"type": "session_end", "ts": T0 + 6000}], first + 3),
    ]


def decisions(produced: Produced) -> list[tuple[str, str]]:
    return [(o.decision.kind, o.decision.intervention_id)
            for o in produced.outcomes if o.decision is not None]


def outputs(produced: Produced) -> list[bytes]:
    return [orjson.dumps(r) for o in produced.outcomes for r in o.records()]


def test_a_record_delivered_twice_changes_neither_state_nor_outputs() -> None:
    pipeline, states, metrics = pipeline_factory()
    records = checkout_session()[:3]  # the session goes on: no end
    first = pipeline.process_batch(records)
    assert [kind for kind, _ in decisions(first)] == ["nudge", "handoff"]
    before, writes = dict(states), states.writes
    for again in ([records[1]], [records[2]], records, [records[0], records[2]]):
        produced = pipeline.process_batch(again)
        assert produced.outcomes == [] and produced.dead_letters == []
    assert dict(states) == before and states.writes == writes  # not even rewritten
    state = SessionState.from_json(states[b"s"])
    assert state.seq == 6 and state.counts == {"page_view": 3, "checkout_failed": 3}
    assert state.applied == {"1": 12}
    assert sample(metrics, "frictionwatch_redelivered_total") == 1 + 1 + 3 + 2  # records
    assert sample(metrics, "frictionwatch_events_total", type="checkout_failed") == 3
    # The next record is new: applied.
    nxt = record("s", [view(T0 + 9000, "/help")], 13)
    pipeline.process_batch([nxt])
    assert SessionState.from_json(states[b"s"]).seq == 7


def test_an_ended_session_delivered_again_produces_nothing_new() -> None:
    """The issue's unexpected ids: the end deleted the state, and the session's records,
    delivered again after a restart, fired again at lower positions (seq 3 and 4
    instead of 5 and 6)."""
    pipeline, states, metrics = pipeline_factory()
    records = checkout_session()
    uninterrupted = decisions(pipeline.process_batch(records))
    assert [kind for kind, _ in uninterrupted] == ["nudge", "handoff"]
    tombstone = states[b"s"]
    assert SessionState.from_json(tombstone).ended_at is not None
    for start in range(len(records)):  # the commit may have been anywhere in the session
        restarted, _, _ = pipeline_factory(states)  # a new worker over the same changelog
        for again in (records[start:], records[start:start + 1]):
            produced = restarted.process_batch(again)
            assert produced.outcomes == [] and produced.dead_letters == []
        assert states[b"s"] == tombstone
    assert sample(metrics, "frictionwatch_outcomes_total", result="abandoned", group="treated") == 1


def test_a_tombstone_is_small_and_keeps_where_the_session_stands() -> None:
    pipeline, states, _ = pipeline_factory()
    sid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    pipeline.process_batch(checkout_session(sid, first=123_456_789))
    raw = states[sid.encode()]
    assert len(raw) <= 128, raw
    tomb = orjson.loads(raw)
    assert type(tomb.pop("ended_at")) is int  # the partition's clock at the end
    assert tomb == {"session_id": sid, "seq": 7, "applied": {"1": 123_456_792}}
    assert pipeline.active_sessions() == 0 and len(states) == 1


def test_a_later_record_for_an_ended_session_id_starts_a_new_session() -> None:
    """The documented choice: past the tombstone, the id starts afresh (as it did when the
    end deleted the state), in whatever batches the records come."""
    later = record("s", [view(T0 + 60_000, "/again")], 20)
    results = []
    for batches in ([checkout_session() + [later]], [checkout_session(), [later]],
                    [[r] for r in [*checkout_session(), later]]):
        pipeline, states, _ = pipeline_factory()
        produced = [pipeline.process_batch(b) for b in batches]
        results.append((states[b"s"], [d for p in produced for d in decisions(p)]))
    assert results[0] == results[1] == results[2]
    state = SessionState.from_json(results[0][0])
    assert (state.seq, state.counts, state.applied, state.ended_at) == (
        1, {"page_view": 1}, {"1": 20}, None)


def test_events_without_kafka_positions_keep_todays_behaviour() -> None:
    """Replay and the unit tests: partition and offset -1. Only event ids de-duplicate;
    an end leaves nothing."""
    pipeline, states, metrics = pipeline_factory()
    events = orjson.dumps([{"session_id": "r", **view(T0)}, {"session_id": "r", **failed(T0 + 1)}])
    pipeline.process(b"r", events)
    pipeline.process(b"r", events)  # no position, no event id: counted again
    assert SessionState.from_json(states[b"r"]).counts == {"page_view": 2, "checkout_failed": 2}
    with_ids = orjson.dumps({"session_id": "r", "event_id": "e1", **view(T0 + 2)})
    pipeline.process(b"r", with_ids)
    pipeline.process(b"r", with_ids)
    assert sample(metrics, "frictionwatch_duplicate_events_total") == 1
    pipeline.process(b"r", orjson.dumps({"session_id": "r", "type": "session_end", "ts": T0 + 3}))
    assert states == {}
    assert sample(metrics, "frictionwatch_redelivered_total") == 0


def _positions(records: list[tuple[bytes, bytes]], partitions: int) -> list[Record]:
    """The records as a topic of ``partitions`` partitions holds them (placed by key)."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    next_offset = dict.fromkeys(every, 0)
    out = []
    for i, (key, value) in enumerate(records):
        p = partitioner(key, every, every)
        # No event ids: only positions can tell a second delivery.
        stripped = orjson.dumps([{k: v for k, v in e.items() if k != "event_id"}
                                 for e in orjson.loads(value)])
        out.append(Record(key, stripped, TOPIC, p, next_offset[p], (T0 + 100 * i) / 1000))
        next_offset[p] += 1
    return out


def _run(pipeline: Pipeline, records: Sequence[Record], size: int) -> list[bytes]:
    """Process ``records`` a partition at a time in batches of ``size``, as the agent does."""
    out: list[bytes] = []
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        for p in sorted({r.partition for r in chunk}):
            out += outputs(pipeline.process_batch([r for r in chunk if r.partition == p]))
    return out


@pytest.mark.parametrize("cut", [(5, 40), (0, 60), (30, 31), (45, 90), (90, 90)])
def test_killed_and_delivered_again_from_any_committed_offset_is_the_uninterrupted_run(
    cut: tuple[int, int],
) -> None:
    """Simulated traffic (2 partitions, sessions that end, buy or go on): a worker
    processes up to record ``k`` and is killed; its successor gets everything from each
    partition's committed offset (up to record ``j`` <= ``k``) again. Outputs and final
    states are exactly the uninterrupted run's: nothing twice, nothing missing."""
    committed_at, killed_at = cut
    records = _positions(simulate.interleave(simulate.generate(seed=5, sessions=40)), 2)
    assert len(records) > 90
    reference, reference_states, _ = pipeline_factory()
    expected = _run(reference, records, 7)
    assert any(b'"kind":"nudge"' in r for r in expected)

    first, states, _ = pipeline_factory()
    produced = _run(first, records[:killed_at], 5)
    # The successor: a new pipeline over the table as the changelog holds it, fed again
    # from the committed offsets on.
    successor, _, metrics = pipeline_factory(states)
    produced += _run(successor, records[committed_at:], 11)
    assert sorted(produced) == sorted(expected)
    assert dict(states) == dict(reference_states)
    assert sample(metrics, "frictionwatch_redelivered_total") == killed_at - committed_at


def test_a_state_trimmed_to_its_budget_keeps_its_position() -> None:
    pipeline, states, metrics = pipeline_factory(state_max_bytes=2048)
    pages = [view(T0 + i, f"/p/{i}/" + "x" * 150) for i in range(12)]
    records = [record("big", pages[:6], 40), record("big", pages[6:], 41)]
    pipeline.process_batch(records)
    assert sample(metrics, "frictionwatch_state_trimmed_total", part="pages") > 0
    raw = states[b"big"]
    assert len(raw) <= 2048 and SessionState.from_json(raw).applied == {"1": 41}
    assert pipeline.process_batch(records).outcomes == [] and states[b"big"] == raw
    assert sample(metrics, "frictionwatch_redelivered_total") == 2


def test_a_keyless_record_is_checked_for_each_of_its_sessions() -> None:
    pipeline, states, metrics = pipeline_factory()
    mixed = Record(None, orjson.dumps([{"session_id": "a", **view(T0)},
                                       {"session_id": "b", **view(T0 + 1)},
                                       {"session_id": "a", **view(T0 + 2)}]), TOPIC, 0, 7)
    pipeline.process_batch([mixed])
    assert pipeline.process_batch([mixed]).outcomes == []
    assert sample(metrics, "frictionwatch_redelivered_total") == 2  # once per session
    del states[b"b"]  # b's state is gone (say, never written): b takes the record again
    pipeline.process_batch([mixed])
    assert SessionState.from_json(states[b"a"]).seq == 2
    assert SessionState.from_json(states[b"b"]).seq == 1


# -- tombstones: never expired, freed when nothing can come again -------------------------
def test_tombstones_are_freed_once_the_committed_offset_has_passed_them() -> None:
    committed: dict[int, int | None] = {1: None}
    pipeline, states, metrics = pipeline_factory(committed=committed.get)
    pipeline.process_batch(checkout_session())  # ends at offset 13
    pipeline.process_batch([record("live", [view(T0)], 14)])
    assert pipeline.active_sessions() == 1 and len(states) == 2
    for value in (None, 10, 13):  # unknown, or not past offset 13: it may come again
        committed[1] = value
        assert pipeline.sweep(idle_ms=-1, owns=lambda key: key != b"live") == []  # never expired
        assert b"s" in states
        assert sample(metrics, "frictionwatch_session_tombstones") == 1
    committed[1] = 14
    assert pipeline.sweep(idle_ms=10**9, owns=lambda key: key != b"s") == []  # not ours
    assert b"s" in states
    assert pipeline.sweep(idle_ms=10**9) == []
    assert set(states) == {b"live"} and pipeline.active_sessions() == 1
    assert sample(metrics, "frictionwatch_session_tombstones") == 0
    assert sample(metrics, "frictionwatch_outcomes_total", result="abandoned", group="treated") == 1


def test_without_committed_offsets_a_tombstone_waits_for_its_partitions_clock() -> None:
    pipeline, states, _ = pipeline_factory(tombstone_ms=60_000)
    pipeline.process_batch(checkout_session())  # partition 1, ends at server time T0 + 13 s
    ended_at = SessionState.from_json(states[b"s"]).ended_at
    assert ended_at == T0 + 13_000
    # Another partition's clock runs ahead: it says nothing of partition 1's records.
    pipeline.process_batch([record("other", [view(T0)], 5_000, partition=0)])
    pipeline.sweep(idle_ms=10**9)
    assert b"s" in states
    pipeline.process_batch([record("late", [view(T0)], 72, partition=1)])  # T0 + 72 s
    pipeline.sweep(idle_ms=10**9)
    assert b"s" in states
    pipeline.process_batch([record("later", [view(T0)], 73, partition=1)])  # 60 s past the end
    pipeline.sweep(idle_ms=10**9)
    assert b"s" not in states


def test_a_tombstone_recovered_from_the_changelog_is_known_to_the_sweep() -> None:
    pipeline, states, _ = pipeline_factory()
    pipeline.process_batch(checkout_session())
    pipeline.process_batch([record("live", [view(T0)], 14)])
    restarted, _, metrics = pipeline_factory(states, committed={1: 12}.get)
    assert restarted.active_sessions() == 2  # not read yet
    assert restarted.sweep(idle_ms=-1, owns=lambda key: key == b"s") == []
    assert restarted.active_sessions() == 1
    assert sample(metrics, "frictionwatch_session_tombstones") == 1


def test_an_expired_session_leaves_a_tombstone_and_gets_one_outcome() -> None:
    scoped: list[bytes] = []

    @contextmanager
    def scope(key: bytes) -> Iterator[None]:
        scoped.append(key)
        yield

    pipeline, states, metrics = pipeline_factory(write_scope=scope)
    records = checkout_session()[:3]
    pipeline.process_batch(records)
    pipeline.process_batch([record("busy", [view(T0)], 2_000)])  # the clock: T0 + 2000 s
    expired = pipeline.sweep(idle_ms=1_800_000)
    assert [o.session_id for o in expired] == ["s"] and scoped == [b"s"]
    tombstone = SessionState.from_json(states[b"s"])
    assert tombstone.ended_at == T0 + 2_000_000 and tombstone.applied == {"1": 12}
    # Its records, delivered again, are skipped; it is not expired again.
    assert pipeline.process_batch(records).outcomes == []
    assert pipeline.sweep(idle_ms=1_800_000) == []
    assert sample(metrics, "frictionwatch_outcomes_total", result="abandoned", group="treated") == 1
    assert pipeline.active_sessions() == 1  # busy


def test_an_expired_session_without_positions_is_freed_as_before() -> None:
    pipeline, states, _ = pipeline_factory()
    pipeline.process(b"r", orjson.dumps({"session_id": "r", **view(T0)}), timestamp_s=T0 / 1000)
    pipeline.process(b"x", orjson.dumps({"session_id": "x", **view(T0)}),
                     timestamp_s=T0 / 1000 + 2000)
    assert [o.session_id for o in pipeline.sweep(idle_ms=1_800_000)] == ["r"]
    assert set(states) == {b"x"}


# -- the Faust side: committed offsets and the sweep's partition ---------------------------
def test_the_sweeps_tombstone_writes_are_filed_under_the_keys_partition() -> None:
    """A RocksDB store files a write under the current event's partition; the sweep is a
    timer, with no current event: it writes in a stand-in for the key's partition."""
    seen: list[tuple[bytes, int | None]] = []

    class Store(Table):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            event = current_event()
            seen.append((key, None if event is None else event.message.partition))
            super().__setitem__(key, value)

    pipeline, states, _ = pipeline_factory(Store(), write_scope=key_scope(8))
    for n in range(20):
        pipeline.process_batch([record(f"s{n}", [view(T0)], n)])
    pipeline.process_batch([record("busy", [view(T0)], 5_000)])
    seen.clear()
    assert len(pipeline.sweep(idle_ms=1_800_000)) == 20
    every = list(range(8))
    assert seen == [(f"s{n}".encode(), DefaultPartitioner()(f"s{n}".encode(), every, every))
                    for n in range(20)]
    assert current_event() is None


def test_committed_offsets_are_read_from_the_consumer_or_unknown() -> None:
    from faust.types import TP

    class Consumer:
        _committed_offset = {TP(TOPIC, 0): 42, TP(TOPIC, 1): None}

    class App:
        consumer = Consumer()

    committed = committed_offsets(App(), TOPIC)  # type: ignore[arg-type]
    assert (committed(0), committed(1), committed(2)) == (42, None, None)
    App.consumer = object()  # type: ignore[assignment]
    assert committed(0) is None
