"""How our agents take records from Faust: in batches, one partition at a time.

Both agents that keep a table (sessions, incidents) read with ``take_events`` so a
key's state is read and written once per batch, not once per record (the sessions
agent takes every partition's records together and writes the states after its
outputs are acknowledged: :mod:`streamer.stream.agents`). Two things make
that correct, and they live here once:

- A RocksDB store files a table write under the partition of Faust's "current
  event". In a batch that must be an event of the partition whose keys are written,
  so each partition's records are processed in the context of one of its own events.
- A timer that walks a table must only touch keys this worker actively owns (a
  standby copy is another worker's to change).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import faust
from aiokafka.partitioner import DefaultPartitioner

# The context variable behind faust.streams.current_event(); Faust sets it per event
# in plain iteration, we set it per partition of a batch.
from faust.streams import _current_event

#: Records taken per batch, and how long to wait for a batch to fill (seconds). Under
#: load batches fill at once; when idle a record waits at most BATCH_WITHIN. (The
#: sessions agent's window is the setting ``batch_within_ms``.)
BATCH_MAX = 500
BATCH_WITHIN = 0.005

T = TypeVar("T")
A = TypeVar("A")
W = TypeVar("W", bound=tuple[Any, ...])


async def partition_batches(stream: Any) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Batches of events, each from a single partition, in partition order."""
    async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
        by_partition: dict[int, list[faust.EventT[Any]]] = defaultdict(list)
        for event in batch:
            by_partition[event.message.partition].append(event)
        for events in by_partition.values():
            yield events


def in_context_of(events: Sequence[faust.EventT[Any]], work: Callable[[A], T], arg: A) -> T:
    """``work(arg)`` (which writes a table) as if processing ``events``' partition."""
    token = _current_event.set(weakref.ref(events[-1]))
    try:
        return work(arg)
    finally:
        _current_event.reset(token)


def write_in_context(
    events: Sequence[faust.EventT[Any]], apply: Callable[[list[W]], object], writes: Sequence[W]
) -> None:
    """``apply(writes)`` of each partition in the context of that partition's last event
    in ``events``; each write's partition is its item 2 (``Produced.writes``)."""
    last = {event.message.partition: event for event in events}
    by_partition: dict[int, list[W]] = defaultdict(list)
    for write in writes:
        by_partition[write[2]].append(write)
    for partition, some in by_partition.items():
        event = last.get(partition, events[-1])
        in_context_of([event], apply, some)


def owner(app: faust.App, topic: str, partitions: int) -> Callable[[bytes], bool]:
    """``owns(key)``: is this worker the active owner of ``key`` on ``topic``?"""
    partitioner = DefaultPartitioner()
    everything = list(range(partitions))

    def owns(key: bytes) -> bool:
        mine = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
        return bool(mine) and partitioner(key, everything, everything) in mine

    return owns
