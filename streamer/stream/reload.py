"""SIGHUP reloads the config file in a running worker: new rules, the same models.

The file is read and validated whole, as at start; a file that does not validate is
refused with the reason in the log, and the running config stays. What changes at
once is the engine's :class:`~detectors.session.Rules` (detectors, policy and page
routes), swapped between two records. Nothing learned is lost: every session's state
lives in the table, and the models keep what they learned and go on learning, so the
next checkpoint holds at least as many outcomes as the last one.

Two sections cannot change in a running worker and take effect at its next start,
which the log says: ``[model]`` (other model settings mean new, untrained models) and
``[incidents]`` (the incident agent builds its rules at start).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import replace
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


#: Sections a reload validates but does not apply: they take effect at the next start.
AT_START = ("model", "incidents")


class ConfigReloader:
    def __init__(self, pipeline: Pipeline, path: str | None, current: Mapping[str, Any]) -> None:
        self.pipeline = pipeline
        self.path = path
        #: The config that runs (with the ``AT_START`` sections the worker started with).
        self.current = dict(current)

    def reload(self) -> bool:
        """Read the file again and put its rules in place; True when it was accepted.

        The running models stay (with what they learned); a changed ``[model]`` or
        ``[incidents]`` section is logged as waiting for a restart.
        """
        if not self.path:
            log.warning("SIGHUP: no config file to reload (start the worker with --config)")
            return False
        try:
            config = load_detection_config(self.path)
            rules = Engine.from_config(config).rules  # every section checked, [model] too
        except DetectorError as exc:
            log.error("SIGHUP: config %s refused, the running config stays: %s", self.path, exc)
            return False
        engine = self.pipeline.engine
        applied = {k: v for k, v in config.items() if k not in AT_START}
        applied.update((k, self.current[k]) for k in AT_START if k in self.current)
        engine.rules = replace(rules, incidents=engine.rules.incidents)
        diff, waiting = changes(self.current, applied), changes(applied, config)
        self.current = applied
        log.warning("SIGHUP: config %s reloaded: %s", self.path, "; ".join(diff) or "no changes")
        if waiting:
            log.warning("SIGHUP: [model] and [incidents] settings take effect at the next start "
                        "(the running models keep what they learned): %s", "; ".join(waiting))
        return True

    def install(self, app: faust.App) -> None:
        @app.task
        async def reload_config_on_sighup() -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
