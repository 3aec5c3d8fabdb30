"""SIGHUP reloads the detector/policy config in a running worker.

Detectors and policy hold settings only; every session's state lives in the table,
so swapping the engine between two records loses nothing. A config that does not
validate is refused with the reason in the log, and the running one stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

import faust

from detectors.errors import DetectorError
from detectors.session import Engine
from streamer.settings import load_detection_config
from streamer.stream.pipeline import Pipeline

log = logging.getLogger(__name__)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for a readable list of changes."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a.get(k, '(default)')!r} -> {b.get(k, '(default)')!r}"
            for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


class ConfigReloader:
    def __init__(self, pipeline: Pipeline, path: str | None, current: Mapping[str, Any]) -> None:
        self.pipeline = pipeline
        self.path = path
        self.current = dict(current)

    def reload(self) -> bool:
        if not self.path:
            log.warning("SIGHUP: no config file to reload (start the worker with --config)")
            return False
        try:
            config = load_detection_config(self.path)
            engine = Engine.from_config(config)
        except DetectorError as exc:
            log.error("SIGHUP: config %s refused, the running config stays: %s", self.path, exc)
            return False
        self.pipeline.engine = engine
        diff = changes(self.current, config)
        self.current = config
        log.warning("SIGHUP: config %s reloaded: %s", self.path, "; ".join(diff) or "no changes")
        return True

    def install(self, app: faust.App) -> None:
        @app.task
        async def reload_config_on_sighup() -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
