"""Starting a worker: topics, the model checkpoint, then Faust's worker loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import faust
from aiokafka import AIOKafkaProducer

from detectors.session import Engine
from streamer.embedded import create_topics
from streamer.settings import Settings
from streamer.stream import app as app_module
from streamer.stream import checkpoint
from streamer.stream.topics import Topics

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings) -> None:
    """Create missing topics (idempotent); production clusters may pre-create them."""
    asyncio.run(create_topics(settings.bootstrap_servers, Topics.names(settings),
                              settings.partitions, compacted=Topics.compacted(settings)))


async def produce(settings: Settings, records: Iterable[tuple[bytes, bytes]],
                  topic: str = "frictionwatch.events") -> int:
    """Send (key, value) records with a plain aiokafka producer; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    sent = 0
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def run(service: app_module.Service) -> int:
    # Our own status line goes to stdout; Faust must not reroute it into its logger.
    worker = faust.Worker(
        service.app, loglevel=service.settings.loglevel, quiet=True, redirect_stdouts=False
    )
    # Faust's terminal spinner sets the root logger to DEBUG so it can spin on every
    # record: every debug call in aiokafka and Faust then builds a log record (~7% of
    # CPU in a profile). Our status line replaces it.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_worker(settings: Settings) -> int:
    """A worker of the consumer group ``settings.app_id``; stops on SIGINT/SIGTERM."""
    from streamer.stream.transport import use_uvloop

    use_uvloop()  # before any loop exists: the worker's and its consumer thread's
    models = None
    if Engine.from_config(settings.detection).models is not None:
        models = asyncio.run(checkpoint.restore(settings))
        if models is not None:
            log.warning("restored models: %s", models.summary())
    return run(app_module.build(settings, models=models))
