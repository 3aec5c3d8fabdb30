"""What the pipeline's effectively-once state needs from Faust (README "Effectively once").

Two things, wired by :func:`install` in :func:`streamer.stream.app.build`:

- **Committed offsets** of the events topic: a tombstone of an ended session is freed
  once the committed offset of its partition has passed the records it holds (none of
  them can be delivered again). Faust's consumer keeps them (``_committed_offset``:
  read from Kafka when a partition is assigned, updated at every commit) but has no
  public API for them; read defensively, an unreadable one is unknown and the
  pipeline falls back to ``tombstone_ms`` of server time.
- **A partition for writes outside a batch.** The idle sweep (a timer) writes the
  tombstones of the sessions it expires. A RocksDB store files a write under the
  partition of Faust's current event, and a timer has none: the write runs with a
  stand-in whose partition is the key's, as ``use_partitioner=True`` places the key's
  changelog records (the in-memory store does not need it, and gets it all the same).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import _current_event, current_event
from faust.types import TP

from streamer.settings import Settings
from streamer.stream.pipeline import Pipeline
from streamer.stream.topics import EVENTS_TOPIC


def install(app: faust.App, pipeline: Pipeline, settings: Settings) -> None:
    pipeline.committed = committed_offsets(app, EVENTS_TOPIC)
    pipeline.write_scope = key_scope(settings.partitions)
    pipeline.tombstone_ms = settings.tombstone_ms


def committed_offsets(app: faust.App, topic: str) -> Callable[[int], int | None]:
    """``committed(partition)``: the consumer group's committed offset of ``topic``'s
    partition as this worker's consumer knows it (the next offset to read), or None."""

    def committed(partition: int) -> int | None:
        offsets = getattr(app.consumer, "_committed_offset", None)
        if offsets is None:
            return None
        value = offsets.get(TP(topic, partition))
        return value if type(value) is int else None

    return committed


class _Message:
    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition


class _StandIn:
    """As much of a Faust event as a table store reads: ``message.partition``."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


def key_scope(partitions: int) -> Callable[[bytes], AbstractContextManager[Any]]:
    """``scope(key)``: a context in which a table write of ``key`` is filed under the
    key's partition (of ``partitions``), unless an event is current already.

    >>> scope = key_scope(4)
    >>> with scope(b"s-1"):
    ...     current_event().message.partition
    3
    >>> current_event() is None
    True
    """
    partitioner = DefaultPartitioner()
    everything = list(range(partitions))

    @contextmanager
    def scope(key: bytes) -> Iterator[None]:
        if current_event() is not None:
            yield
            return
        stand_in = _StandIn(partitioner(key, everything, everything))
        token = _current_event.set(weakref.ref(stand_in))  # type: ignore[arg-type]
        try:
            yield
        finally:
            _current_event.reset(token)

    return scope
