"""Frozen settings: the only place that reads the environment or config files.

Every field can be set as ``FW_<NAME>`` in the environment (``FW_BROKER``,
``FW_WEB_PORT``, ...) or by a CLI flag; flags win over the environment, which wins
over the defaults here.
"""

from __future__ import annotations

import os
import secrets
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
MODELS_TOPIC = "frictionwatch.models"
INCIDENTS_TOPIC = "frictionwatch.incidents"


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "frictionwatch"
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    store: str = "memory://"
    #: Where Faust keeps local files (RocksDB tables); a temp dir when not set.
    data_dir: str | None = None
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
    #: The longest a consumer fetch waits for data (Faust hard-codes 1500).
    fetch_max_wait_ms: int = 100
    #: A session silent for this long (event time, ms) is abandoned and its state freed.
    idle_timeout_ms: int = 1_800_000
    #: How often (seconds) the worker looks for idle sessions.
    sweep_interval_s: float = 10.0
    #: How often (seconds) the online models are checkpointed to frictionwatch.models.
    model_checkpoint_s: float = 30.0
    #: Detector and policy configuration, read from config_file.
    detection: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # -- browser endpoints (SDK, SSE); see streamer/guard.py ----------------------------
    #: HMAC-SHA256 key of session tokens. Empty: a random one per process, so tokens
    #: open streams only on the worker that issued them; set FW_SECRET on every worker.
    secret: str = field(default="", repr=False, compare=False)
    #: Lifetime of a session token; the SDK renews it before it runs out.
    token_ttl_s: float = 3600.0
    #: Site keys /v1/collect and /v1/sessions accept, comma-separated; empty: none needed.
    site_keys: str = ""
    #: Origins allowed to call the browser endpoints cross-origin, comma-separated ("*":
    #: any). The worker's own origin is always allowed; calls without Origin are not CORS.
    cors_origins: str = ""
    #: Proxy addresses whose X-Forwarded-For names the client (for per-client limits).
    trusted_proxies: str = ""
    #: Token buckets: requests per client address, events per session (429 beyond).
    rate_client_per_s: float = 20.0
    rate_client_burst: float = 100.0
    rate_session_per_s: float = 20.0
    rate_session_burst: float = 200.0

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
        _check_browser_settings(self)

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
            # The default's type says how to read the variable; optional ones are paths.
            kind = str if f.default is None else type(f.default)
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


def _check_browser_settings(settings: Settings) -> None:
    if not settings.secret:
        object.__setattr__(settings, "secret", secrets.token_hex(32))
    elif len(settings.secret) < 16:
        raise ConfigError("secret is too short: use at least 16 characters (32 random bytes)")
    for name in ("token_ttl_s", "rate_client_per_s", "rate_session_per_s"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name} = {getattr(settings, name)} must be > 0")
    for name in ("rate_client_burst", "rate_session_burst"):
        if not getattr(settings, name) >= 1:
            raise ConfigError(f"{name} = {getattr(settings, name)} must be >= 1")
