"""The pipeline agent and its timers: consume, run the pipeline, publish, expire.

Thin on purpose; the work is in :mod:`streamer.pipeline` and :mod:`detectors`.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import AsyncIterable, Sequence

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner

# The context variable behind faust.streams.current_event(); Faust sets it per event
# in plain iteration, we set it per partition of a batch (see detect_friction).
from faust.streams import _current_event

from streamer.pipeline import Pipeline, Produced, Record
from streamer.settings import EVENTS_TOPIC, Settings
from streamer.topics import Topics

#: Records taken per batch, and how long to wait for a batch to fill (seconds). Under
#: load batches fill at once; when idle a record waits at most BATCH_WITHIN.
BATCH_MAX = 500
BATCH_WITHIN = 0.005


def register(app: faust.App, topics: Topics, pipeline: Pipeline, settings: Settings) -> None:
    async def publish(produced: Produced) -> None:
        for outcome in produced.outcomes:
            key = outcome.session_id.encode()
            for record in outcome.records():
                target = topics.signals if record["kind"] == "signal" else topics.interventions
                await target.send(key=key, value=orjson.dumps(record))
        for dead in produced.dead_letters:
            await topics.deadletter.send(key=dead.key, value=dead.value, headers=dead.headers)

    @app.agent(topics.events, name="detect_friction")
    async def detect_friction(stream: AsyncIterable[faust.EventT]) -> None:
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):  # type: ignore[attr-defined]
            by_partition: dict[int, list[faust.EventT]] = defaultdict(list)
            for event in batch:
                by_partition[event.message.partition].append(event)
            for events in by_partition.values():
                # A RocksDB store files a table write under the partition of the
                # "current event"; in a batch that must be an event of the partition
                # whose sessions are written, not whichever event came last.
                token = _current_event.set(weakref.ref(events[-1]))
                try:
                    produced = pipeline.process_batch(_records(events))
                finally:
                    _current_event.reset(token)
                await publish(produced)

    partitioner = DefaultPartitioner()

    def owns(key: bytes) -> bool:
        """Is this worker the active owner of the session (not just a standby)?"""
        actives = app.assignor.assigned_actives()
        partitions = sorted({tp.partition for tp in actives if tp.topic == EVENTS_TOPIC})
        if not partitions:
            return False
        everything = list(range(settings.partitions))
        return partitioner(key, everything, everything) in partitions

    @app.timer(interval=settings.sweep_interval_s)
    async def expire_idle_sessions() -> None:
        pipeline.sweep(settings.idle_timeout_ms, owns)

    @app.timer(interval=2.0)
    async def update_gauges() -> None:
        m = pipeline.metrics
        m.active_sessions.set(len(topics.session_to_state))
        models = pipeline.engine.models
        if models is not None:
            m.risk_auc.set(models.risk.auc)
            m.model_learned.set(models.risk.learned)


def _records(events: Sequence[faust.EventT]) -> list[Record]:
    return [
        Record(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp)
        for m in (event.message for event in events)
    ]
