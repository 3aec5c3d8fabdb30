"""Starting things: a worker on a given Kafka, or the whole product locally."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable

import faust
from aiokafka import AIOKafkaProducer

from detectors.session import Engine
from streamer import app as app_module
from streamer import checkpoint
from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker, create_topics, free_port
from streamer.settings import Settings
from streamer.topics import Topics

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


def _run(service: app_module.Service) -> int:
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
    models = None
    if Engine.from_config(settings.detection).models is not None:
        models = asyncio.run(checkpoint.restore(settings))
        if models is not None:
            log.warning("restored models: %s", models.summary())
    return _run(app_module.build(settings, models=models))


def run_local(settings: Settings, *, traffic: bool, speed: float, seed: int) -> int:
    """``frictionwatch run``: embedded broker, worker, web, and synthetic traffic."""
    from streamer import traffic as traffic_module

    broker = EmbeddedBroker().start()
    try:
        wanted = settings.web_port
        web_port = wanted if wanted and _port_free(wanted) else free_port()
        settings = settings.with_(broker=f"kafka://{broker.address}", web_port=web_port,
                                  **EMBEDDED_GROUP_TIMEOUTS)
        ensure_topics(settings)
        service = app_module.build(settings)
        out = sys.stdout
        base = f"http://{settings.web_host}:{web_port}"
        print(f"web: {base}/", file=out)
        print(f"metrics: {base}/metrics", file=out)
        print(f"demo: {base}/demo", file=out)
        print(f"broker: {broker.address}", file=out)
        print(f"topics: {', '.join(Topics.names(settings)[:4])}", file=out)
        print("Ctrl-C stops everything.", file=out, flush=True)
        if traffic:
            traffic_module.attach(service, speed=speed, seed=seed)
        _attach_status(service)
        return _run(service)
    finally:
        broker.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _attach_status(service: app_module.Service) -> None:
    """A live line of counts, read from the worker's own metrics."""
    m = service.metrics
    started = time.monotonic()
    tty = sys.stdout.isatty()

    def total(counter: object) -> int:
        return int(sum(s.value for metric in counter.collect()  # type: ignore[attr-defined]
                       for s in metric.samples if s.name.endswith("_total")))

    @service.app.timer(interval=2.0)
    async def print_status() -> None:
        kinds = {"nudge": 0, "handoff": 0}
        for metric in m.interventions.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    kinds[s.labels["kind"]] += int(s.value)
        line = (
            f"[{time.monotonic() - started:6.0f}s] events {total(m.events):>8}  "
            f"signals {total(m.signals):>6}  nudges {kinds['nudge']:>5}  "
            f"handoffs {kinds['handoff']:>5}  invalid {total(m.invalid):>5}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
