"""Online models survive restarts: pickled to a compacted topic, restored at start.

The models are a worker's own learned state (not per session), so they live beside
the session table rather than in it: every ``model_checkpoint_s`` the worker writes
them, pickled, to ``frictionwatch.models`` keyed by app id; a starting worker reads
that topic to its end and keeps the newest. A restart loses at most one interval of
learning. Only our workers write that topic; a pickle is code, so nobody else may.
"""

from __future__ import annotations

import logging
import pickle
import time

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.model import Models
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.stream.pipeline import Pipeline
from streamer.stream.topics import MODELS_TOPIC, Topics

log = logging.getLogger(__name__)


async def restore(settings: Settings, *, timeout_s: float = 30.0) -> Models | None:
    """The newest checkpoint of this app id, or None when there is none."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
        max_partition_fetch_bytes=64 << 20, fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    newest: bytes | None = None
    try:
        partitions = consumer.partitions_for_topic(MODELS_TOPIC) or set()
        tps = [TopicPartition(MODELS_TOPIC, p) for p in sorted(partitions)]
        if not tps:
            return None
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        key = settings.app_id.encode()
        # Read until a fetch comes back empty: the end, whatever ListOffsets says.
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    if record.key == key and record.value:
                        newest = record.value
    finally:
        await consumer.stop()
    if newest is None:
        return None
    models = pickle.loads(newest)
    if not isinstance(models, Models):
        raise TypeError(f"{MODELS_TOPIC} holds a {type(models).__name__}, not Models")
    return models


def install(
    app: faust.App, topics: Topics, pipeline: Pipeline, settings: Settings, metrics: Metrics
) -> None:
    last = {"learned": -1}

    @app.timer(interval=settings.model_checkpoint_s)
    async def checkpoint_models() -> None:
        models = pipeline.engine.models
        if models is None or models.risk.learned == last["learned"]:
            return
        await topics.models.send(key=settings.app_id.encode(), value=pickle.dumps(models))
        last["learned"] = models.risk.learned
        metrics.checkpoints.inc()
        log.info("models checkpointed after %d outcomes", models.risk.learned)
