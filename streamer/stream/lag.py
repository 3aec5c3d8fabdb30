"""Consumer lag, exported by the worker itself: end offset minus committed offset.

No Kafka exporter is guaranteed to work on every broker (the embedded one included),
so each worker measures the partitions it is assigned, every few seconds, and exports
``frictionwatch_consumer_lag{topic, partition}``. A partition handed to another
worker disappears from this one's export at the next tick, so summing over workers
counts each partition once (``max by (topic, partition)`` covers the moment of a
rebalance when two workers may both report it).

Committed offsets are Kafka's "next offset to read": a partition with nothing
committed yet counts from its earliest available offset (``auto_offset_reset =
earliest``). The end offset is the larger of two lower bounds of the truth: the broker's
answer to ListOffsets (Faust's ``highwaters``: the high watermark, or the last stable
offset when reading transactionally), and the high watermark of the last fetch
response. The first is exact on Apache Kafka; the embedded broker (Tansu) answers it
with the last batch's base offset + 1, short when a batch holds several records. The
second is right on both but can be stale (a paused partition is not fetched).

Wiring, in :func:`streamer.stream.app.build`::

    lag.register(app, [topics.events], metrics.registry)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

#: Seconds between two measurements: two ListOffsets requests per tick, cheap.
LAG_INTERVAL_S = 5.0


class ConsumerLag:
    """The lag gauge and how to fill it; one per app, made against a registry.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> lag = ConsumerLag(registry, ["frictionwatch.events"])
    >>> lag.update({TP("frictionwatch.events", 0): 7, TP("frictionwatch.events", 1): 0})
    >>> registry.get_sample_value(
    ...     "frictionwatch_consumer_lag", {"topic": "frictionwatch.events", "partition": "0"})
    7.0
    >>> lag.update({TP("frictionwatch.events", 1): 0})  # partition 0 went to another worker
    >>> registry.get_sample_value(
    ...     "frictionwatch_consumer_lag", {"topic": "frictionwatch.events", "partition": "0"})
    """

    def __init__(self, registry: CollectorRegistry, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        if not self.topics:
            raise ValueError("topics is empty: name at least one topic to measure the lag of")
        self.gauge = Gauge(
            "frictionwatch_consumer_lag",
            "Records not yet committed by this worker's consumer group: end offset minus "
            "committed offset, per assigned partition.",
            ["topic", "partition"], registry=registry,
        )
        self._exported: set[tuple[str, str]] = set()

    def update(self, lags: Mapping[TP, int]) -> None:
        """Export ``lags``; partitions no longer in it are removed from the export."""
        current = {(tp.topic, str(tp.partition)): value for tp, value in lags.items()}
        for labels in self._exported - current.keys():
            self.gauge.remove(*labels)
        for labels, value in current.items():
            self.gauge.labels(*labels).set(value)
        self._exported = set(current)

    async def measure(self, consumer: Any) -> dict[TP, int]:
        """Lag of every partition of our topics assigned to ``consumer`` (a Faust Consumer)."""
        assigned = sorted(tp for tp in consumer.assignment() if tp.topic in self.topics)
        if not assigned:
            return {}
        listed = await consumer.highwaters(*assigned)
        ends = {tp: _larger(listed.get(tp), consumer.highwater(tp)) for tp in assigned}
        # Faust keeps the offsets it committed (and those it found at assignment).
        # .get: the mapping is a defaultdict, and reading must not add keys to it.
        committed = {tp: consumer._committed_offset.get(tp) for tp in assigned}  # noqa: SLF001
        never = [tp for tp, offset in committed.items() if offset is None]
        if never:
            committed.update(await consumer.earliest_offsets(*never))
        lags: dict[TP, int] = {}
        for tp in assigned:
            end = ends[tp]
            if end is not None:  # not known before the first fetch or ListOffsets answer
                lags[tp] = max(0, end - (committed[tp] or 0))
        return lags


def _larger(*offsets: int | None) -> int | None:
    known = [offset for offset in offsets if offset is not None]
    return max(known) if known else None


def _names(topics: Iterable[str | faust.TopicT]) -> list[str]:
    names: list[str] = []
    for topic in topics:
        names.extend([topic] if isinstance(topic, str) else topic.topics)
    return names


def register(
    app: faust.App,
    topics: Iterable[str | faust.TopicT],
    registry: CollectorRegistry,
    *,
    interval: float = LAG_INTERVAL_S,
) -> ConsumerLag:
    """Measure and export the lag of ``topics`` (names or Faust topics) every ``interval`` s."""
    lag = ConsumerLag(registry, _names(topics))

    @app.timer(interval=interval, name="frictionwatch.export_consumer_lag")
    async def export_consumer_lag() -> None:
        try:
            lags = await lag.measure(app.consumer)
        except (ConsumerNotStarted, KafkaError) as exc:
            # Starting up or rebalancing: keep the last values, try again next tick.
            log.debug("consumer lag not measured this time: %r", exc)
            return
        lag.update(lags)

    return lag
