"""The pipeline agent: consume records, run the pipeline, publish what it produced.

Thin on purpose; the work is in :mod:`streamer.pipeline` and :mod:`detectors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import faust
import orjson

from streamer.pipeline import Pipeline
from streamer.topics import Topics


def register(app: faust.App, topics: Topics, pipeline: Pipeline) -> None:
    @app.agent(topics.events, name="detect_friction")
    async def detect_friction(stream: AsyncIterable[faust.EventT]) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            msg = event.message
            produced = pipeline.process(
                msg.key, msg.value, topic=msg.topic, partition=msg.partition,
                offset=msg.offset, timestamp_s=msg.timestamp,
            )
            for outcome in produced.outcomes:
                key = outcome.session_id.encode()
                for record in outcome.records():
                    target = topics.signals if record["kind"] == "signal" else topics.interventions
                    await target.send(key=key, value=orjson.dumps(record))
            for dead in produced.dead_letters:
                await topics.deadletter.send(key=dead.key, value=dead.value, headers=dead.headers)

    @app.timer(interval=2.0)
    async def count_active_sessions() -> None:
        pipeline.metrics.active_sessions.set(len(topics.session_to_state))
