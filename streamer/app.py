"""The faust.App, built from settings: no module-level app, no I/O at import."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from detectors.session import Engine
from streamer import agents, views
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline
from streamer.reload import ConfigReloader
from streamer.settings import Settings
from streamer.topics import Topics, declare


@dataclass(frozen=True)
class Service:
    app: faust.App
    topics: Topics
    pipeline: Pipeline
    metrics: Metrics
    settings: Settings


def build(settings: Settings, metrics: Metrics | None = None) -> Service:
    metrics = metrics or Metrics()
    engine = Engine.from_config(settings.detection)  # bad config fails here, before Kafka
    app = faust.App(
        settings.app_id,
        broker=settings.broker_urls,
        store=settings.store,
        autodiscover=False,
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        loghandlers=[],
    )
    topics = declare(app, settings)
    pipeline = Pipeline(
        engine, topics.session_to_state, metrics, max_record_bytes=settings.max_record_bytes
    )
    agents.register(app, topics, pipeline)
    views.register(app, topics, metrics, settings.max_record_bytes)
    ConfigReloader(pipeline, settings.config_file, settings.detection).install(app)
    return Service(app, topics, pipeline, metrics, settings)
