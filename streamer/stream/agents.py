"""The pipeline agent and its timers: consume, run the pipeline, publish, expire.

Thin on purpose; the work is in :mod:`streamer.stream.pipeline` and :mod:`detectors`.

Each batch Faust hands over goes, in this order (README "Faults"):

1. the pipeline processes its records (every partition's) and returns the outputs and
   the state writes, writing nothing yet;
2. every output record (signals, interventions, incident observations, dead letters)
   is handed to the producer together, and all are awaited once
   (:class:`~streamer.stream.outbox.Outbox`: a failed send is retried, the batch held);
3. only then are the session states written to the table (its changelog), each in the
   context of an event of its partition (:func:`~streamer.stream.batching.write_in_context`);
4. the events are acked when the next batch is asked for, and only acked offsets are
   committed: so a commit never passes a record whose outputs or state are not written.

A worker killed between 2 and 3 leaves the outputs on their topics and the records
uncommitted without their state: they are processed again and their outputs sent a
second time (consumers de-duplicate by id). The other order lost them: a state written
first marks the records as applied, and their outputs were never sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterable, Sequence
from typing import Any

import faust
import orjson

from streamer.settings import Settings
from streamer.stream.batching import BATCH_MAX, owner, write_in_context
from streamer.stream.incidents import IncidentFeed
from streamer.stream.outbox import Outbox, OutputHealth
from streamer.stream.pipeline import Pipeline, Produced, Record
from streamer.stream.topics import EVENTS_TOPIC, Topics

log = logging.getLogger(__name__)

#: Exit status of the test hook ``exit_after_outputs_acked``.
TEST_EXIT = 86


def register(
    app: faust.App, topics: Topics, pipeline: Pipeline, settings: Settings,
    incident_feed: IncidentFeed,
) -> None:
    if not pipeline.defer_writes:  # the order of the module docstring needs it
        raise ValueError("the agent writes the states itself: build the Pipeline with defer_writes=True")
    health = getattr(app, "output_health", None)
    outbox = Outbox(app.maybe_start_producer, pipeline.metrics,
                    topics.deadletter.get_topic_name(),
                    health if isinstance(health, OutputHealth) else None)
    signals, interventions, deadletter, feed = (
        t.get_topic_name() for t in (topics.signals, topics.interventions, topics.deadletter,
                                     incident_feed.topic))
    #: One batch at a time touches the table: the sweep must not read a state whose new
    #: value waits for its batch's outputs.
    busy = asyncio.Lock()

    def collect(produced: Produced) -> None:
        dumps = orjson.dumps
        for outcome in produced.outcomes:
            key = outcome.session_id.encode()
            for record in outcome.records():
                topic = signals if record["kind"] == "signal" else interventions
                outbox.add(topic, key, dumps(record))
        for key, value in incident_feed.records(produced.observations()):
            outbox.add(feed, key, value)
        for dead in produced.dead_letters:
            outbox.add(deadletter, dead.key, dead.value, dead.headers)

    @app.agent(topics.events, name="detect_friction")
    async def detect_friction(stream: AsyncIterable[faust.EventT[Any]]) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
                BATCH_MAX, within=settings.batch_within_ms / 1000):
            async with busy:
                produced = pipeline.process_batch(_records(events))
                collect(produced)
                await outbox.flush()
                if settings.exit_after_outputs_acked and any(
                        o.decision is not None for o in produced.outcomes):
                    _test_exit()
                write_in_context(events, pipeline.apply, produced.writes)
            # Faust acks the batch's events when the next batch is asked for: after this.

    owns = owner(app, EVENTS_TOPIC, settings.partitions)

    @app.timer(interval=settings.sweep_interval_s)
    async def expire_idle_sessions() -> None:
        # Expiry publishes nothing (its outcomes are counted), so its writes need no
        # outputs before them; it waits for a batch in flight to write its states.
        async with busy:
            pipeline.sweep(settings.idle_timeout_ms, owns)

    @app.timer(interval=2.0)
    async def update_gauges() -> None:
        m = pipeline.metrics
        m.active_sessions.set(pipeline.active_sessions())  # tombstones of ended ones not counted
        models = pipeline.engine.models
        if models is not None:
            m.risk_auc.set(models.risk.auc)
            m.model_learned.set(models.risk.learned)


def _test_exit() -> None:
    """The test hook: die like a SIGKILL between the outputs' ack and the state write."""
    log.critical("exit_after_outputs_acked: exiting before the batch's state is written")
    logging.shutdown()
    os._exit(TEST_EXIT)


def _records(events: Sequence[faust.EventT[Any]]) -> list[Record]:
    return [
        Record(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp)
        for m in (event.message for event in events)
    ]
