"""Online models survive restarts: pickled to a compacted topic, restored at start.

The models are a worker's own learned state (not per session), so they live beside
the session table rather than in it: every ``model_checkpoint_s`` the worker writes
them, pickled, to ``frictionwatch.models`` keyed by app id; a starting worker reads
that topic to its end and keeps the newest. A restart loses at most one interval of
learning, and a checkpoint never goes backwards (:class:`Checkpointer`). Only our
workers write that topic; a pickle is code, so nobody else may.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Awaitable, Callable
from typing import Any

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


class Checkpointer:
    """Writes the models when they have learned more than any checkpoint before them.

    The high-water mark starts at what the models hold when the worker starts (the
    restored checkpoint's outcomes, or 0 for fresh models) and rises with each write,
    so a checkpoint never holds fewer learned outcomes than the one restored at start
    or the last one written: models that somehow hold fewer (fresh ones put in place of
    the learned ones) are not written, and each skip is counted in a log line.
    """

    def __init__(
        self, pipeline: Pipeline, send: Callable[[bytes, bytes], Awaitable[Any]], key: bytes,
        metrics: Metrics,
    ) -> None:
        self.pipeline = pipeline
        self.send = send
        self.key = key
        self.metrics = metrics
        models = pipeline.engine.models
        self.high_water = 0 if models is None else models.risk.learned
        self.skipped = 0

    async def checkpoint(self) -> bool:
        """Write the running models if they learned more; True when written."""
        models = self.pipeline.engine.models
        if models is None:
            return False
        learned = models.risk.learned
        if learned < self.high_water:
            self.skipped += 1
            log.warning(
                "models not checkpointed: they hold %d learned outcomes, fewer than the %d "
                "of the last checkpoint restored or written (%d checkpoint(s) skipped)",
                learned, self.high_water, self.skipped,
            )
            return False
        if learned == self.high_water:
            return False  # nothing new since
        await self.send(self.key, pickle.dumps(models))
        self.high_water = learned
        self.metrics.checkpoints.inc()
        log.info("models checkpointed after %d outcomes", learned)
        return True


def install(
    app: faust.App, topics: Topics, pipeline: Pipeline, settings: Settings, metrics: Metrics
) -> Checkpointer:
    """The checkpoint timer; call it once ``pipeline`` holds the restored models."""

    async def send(key: bytes, value: bytes) -> None:
        await topics.models.send(key=key, value=value)

    checkpointer = Checkpointer(pipeline, send, settings.app_id.encode(), metrics)

    @app.timer(interval=settings.model_checkpoint_s)
    async def checkpoint_models() -> None:
        await checkpointer.checkpoint()

    return checkpointer
