"""The pipeline's side of "outputs acknowledged, then the state written" (README
Contracts → The order of a batch's writes): with ``defer_writes`` a batch writes nothing
to the table; its writes come back in ``Produced.writes`` for the agent to apply, and a
batch processed again before they are applied (the worker died in between) decides the
same thing again (same intervention ids)."""

from __future__ import annotations

from typing import Any

import orjson
from faust.streams import current_event

from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.stream.batching import write_in_context
from streamer.stream.pipeline import Pipeline, Record, Write
from streamer.stream.topics import EVENTS_TOPIC
from tests.conftest import RULES_ONLY

TS = 1_767_225_600_000


def _failed(sid: str, n: int) -> dict[str, Any]:
    return {"session_id": sid, "type": "checkout_failed", "ts": TS + 1000 * n,
            "reason": "declined", "code": "402", "page": "/checkout"}


def _pipeline(states: dict[bytes, bytes]) -> Pipeline:
    return Pipeline(Engine.from_config(RULES_ONLY), states, Metrics(), max_record_bytes=1 << 18,
                    defer_writes=True)


def _batch(offset: int) -> list[Record]:
    return [Record(b"s1", orjson.dumps([_failed("s1", n) for n in range(3)]), EVENTS_TOPIC, 1,
                   offset)]


def _ids(produced: Any) -> list[str]:
    return [o.decision.intervention_id for o in produced.outcomes if o.decision is not None]


def test_deferred_writes_leave_the_table_alone_until_applied() -> None:
    states: dict[bytes, bytes] = {}
    pipeline = _pipeline(states)
    first = pipeline.process_batch(_batch(0))
    assert _ids(first) and states == {}
    assert [(key, partition) for key, _, partition in first.writes] == [(b"s1", 1)]
    # Died before applying: the record comes again and decides the same, same ids.
    again = pipeline.process_batch(_batch(0))
    assert _ids(again) == _ids(first)
    pipeline.apply(again.writes)
    assert set(states) == {b"s1"}
    # Applied: now it is a re-delivery, skipped.
    assert pipeline.process_batch(_batch(0)).outcomes == []


def test_without_defer_writes_the_table_is_written_at_once() -> None:
    states: dict[bytes, bytes] = {}
    pipeline = _pipeline(states)
    pipeline.defer_writes = False
    produced = pipeline.process_batch(_batch(0))
    assert set(states) == {b"s1"} and produced.writes == []


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


def test_each_partitions_writes_are_applied_as_if_processing_its_own_event() -> None:
    events = [_Event(0), _Event(2), _Event(0)]
    seen: list[tuple[int, list[Write]]] = []

    def apply(writes: list[Write]) -> None:
        event = current_event()
        assert event is not None
        seen.append((event.message.partition, writes))

    writes: list[Write] = [(b"a", b"1", 2), (b"b", b"2", 0), (b"c", None, 2)]
    write_in_context(events, apply, writes)  # type: ignore[arg-type]
    assert seen == [(2, [(b"a", b"1", 2), (b"c", None, 2)]), (0, [(b"b", b"2", 0)])]
    assert current_event() is None
