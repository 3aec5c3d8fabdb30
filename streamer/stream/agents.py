"""The pipeline agent and its timers: consume, run the pipeline, publish, expire.

Thin on purpose; the work is in :mod:`streamer.stream.pipeline` and :mod:`detectors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

import faust
import orjson

from streamer.settings import Settings
from streamer.stream.batching import in_context_of, owner, partition_batches
from streamer.stream.incidents import IncidentFeed
from streamer.stream.pipeline import Pipeline, Produced, Record
from streamer.stream.topics import EVENTS_TOPIC, Topics


def register(
    app: faust.App, topics: Topics, pipeline: Pipeline, settings: Settings,
    incident_feed: IncidentFeed,
) -> None:
    async def publish(produced: Produced) -> None:
        for outcome in produced.outcomes:
            key = outcome.session_id.encode()
            for record in outcome.records():
                if record["kind"] == "signal":
                    await topics.signals.send(key=key, value=orjson.dumps(record))
                else:
                    await topics.interventions.send(key=key, value=orjson.dumps(record))
        await incident_feed.send(produced.observations())
        for dead in produced.dead_letters:
            await topics.deadletter.send(key=dead.key, value=dead.value, headers=dead.headers)

    @app.agent(topics.events, name="detect_friction")
    async def detect_friction(stream: AsyncIterable[faust.EventT[Any]]) -> None:
        async for events in partition_batches(stream):
            await publish(in_context_of(events, pipeline.process_batch, _records(events)))

    owns = owner(app, EVENTS_TOPIC, settings.partitions)

    @app.timer(interval=settings.sweep_interval_s)
    async def expire_idle_sessions() -> None:
        pipeline.sweep(settings.idle_timeout_ms, owns)

    @app.timer(interval=2.0)
    async def update_gauges() -> None:
        m = pipeline.metrics
        m.active_sessions.set(pipeline.active_sessions())  # tombstones of ended ones not counted
        models = pipeline.engine.models
        if models is not None:
            m.risk_auc.set(models.risk.auc)
            m.model_learned.set(models.risk.learned)


def _records(events: Sequence[faust.EventT[Any]]) -> list[Record]:
    return [
        Record(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp)
        for m in (event.message for event in events)
    ]
