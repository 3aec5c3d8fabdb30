"""Frozen settings: the only place that reads the environment or config files.

Every field can be set as ``FW_<NAME>`` in the environment (``FW_BROKER``,
``FW_WEB_PORT``, ...) or by a CLI flag; flags win over the environment, which wins
over the defaults here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from detectors.errors import ConfigError
from detectors.events import MAX_RECORD_BYTES
from detectors.session import Engine

EVENTS_TOPIC = "frictionwatch.events"
INTERVENTIONS_TOPIC = "frictionwatch.interventions"
SIGNALS_TOPIC = "frictionwatch.signals"
DEADLETTER_TOPIC = "frictionwatch.deadletter"


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "frictionwatch"
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    store: str = "memory://"
    #: Bytes per Kafka record or per HTTP beacon; larger ones are refused as too_large.
    max_record_bytes: int = MAX_RECORD_BYTES
    #: A TOML file with detector sections and a [policy] section (see README).
    config_file: str | None = None
    #: at_least_once everywhere; exactly_once only on brokers with transactions.
    processing_guarantee: str = "at_least_once"
    #: Faust consumer-group timeouts; short ones make a restarted worker rejoin fast.
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    loglevel: str = "warning"
    #: Detector and policy configuration, read from config_file.
    detection: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigError(f"partitions = {self.partitions} is out of range: allowed 1 to 1024")
        if not 0 <= self.web_port <= 65535:
            raise ConfigError(f"web_port = {self.web_port} is out of range: allowed 0 to 65535")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ConfigError(
                f"processing_guarantee = {self.processing_guarantee!r}: "
                "allowed 'at_least_once' or 'exactly_once'"
            )
        if self.config_file and not self.detection:
            object.__setattr__(self, "detection", load_detection_config(self.config_file))
        # Fail at start, before any broker is touched, naming the bad key.
        Engine.from_config(self.detection)

    @property
    def broker_urls(self) -> list[str]:
        return [u if "://" in u else f"kafka://{u}" for u in self.broker.split(",")]

    @property
    def bootstrap_servers(self) -> str:
        """The broker list as plain host:port, for aiokafka and kcat."""
        return ",".join(u.split("://", 1)[1] for u in self.broker_urls)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``FW_*`` variables, then non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"FW_{f.name.upper()}")
            if raw is None or f.name == "detection":
                continue
            kind = type(getattr(cls, f.name, "")) if f.name != "config_file" else str
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ConfigError(f"FW_{f.name.upper()} = {raw!r} must be {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def load_detection_config(path: str | Path) -> dict[str, Any]:
    """Read the detector/policy TOML; the engine checks keys and ranges when built."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
