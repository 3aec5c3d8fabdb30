"""Frozen process settings: the only place that reads the environment or config files.

Every field can be set as ``FW_<NAME>`` in the environment (``FW_BROKER``,
``FW_WEB_PORT``, ...) or by a CLI flag; flags win over the environment, which wins
over the defaults here. Each field is declared once (default, range, doc) with
:func:`detectors.config.setting`; a variable is read by the field's declared type, so
``FW_DEMO=false`` is false.

>>> Settings.load({"FW_PARTITIONS": "8", "FW_DEMO": "false"}).partitions
8
>>> Settings.load({"FW_DEMO": "no"}).demo, Settings.load({"FW_DEMO": "1"}).demo
(False, True)
>>> Settings.load({"FW_PARTITIONS": "eight"})
Traceback (most recent call last):
...
detectors.errors.ConfigError: FW_PARTITIONS = 'eight' must be an integer
>>> Settings.load({"FW_WEB_PORT": "70000"})
Traceback (most recent call last):
...
detectors.errors.ConfigError: web_port = 70000 is out of range: allowed 0 to 65535
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from detectors.config import check, setting
from detectors.errors import ConfigError
from detectors.events import MAX_RECORD_BYTES
from detectors.session import STATE_MAX_BYTES, Engine

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    section = ""

    broker: str = setting("kafka://127.0.0.1:9092", doc="bootstrap servers, comma-separated")
    app_id: str = setting("frictionwatch", doc="Faust app id = consumer group")
    partitions: int = setting(4, low=1, high=1024, doc="partitions of topics the worker creates")
    web_host: str = setting("127.0.0.1", doc="HTTP bind address")
    web_port: int = setting(6066, low=0, high=65535, doc="HTTP port")
    store: str = setting("memory://", doc="Faust table store (rocksdb:// in production)")
    #: Where Faust keeps local files (RocksDB tables); a temp dir when empty.
    data_dir: str = setting("", doc="where Faust keeps RocksDB files (a temp dir when empty)")
    max_record_bytes: int = setting(MAX_RECORD_BYTES, low=1024, high=16 << 20,
                                    doc="cap per Kafka record and per HTTP beacon")
    config_file: str = setting("", doc="detector/policy/model TOML file")
    processing_guarantee: str = setting(
        "at_least_once", choices=("at_least_once", "exactly_once"),
        doc="exactly_once needs a broker with transactions")
    session_timeout_s: float = setting(10.0, low=0.5, high=300,
                                       doc="consumer-group session timeout")
    heartbeat_interval_s: float = setting(1.0, low=0.1, high=60, doc="consumer-group heartbeat")
    loglevel: str = setting("warning", doc="worker log level")
    fetch_max_wait_ms: int = setting(100, low=1, high=10_000,
                                     doc="longest a consumer fetch waits (Faust hard-codes 1500)")
    batch_within_ms: float = setting(
        10.0, low=0.1, high=1000,
        doc="longest the sessions agent waits for a batch to fill: under load a larger one "
            "makes fewer, bigger batches (benchmarks/README.md), idle it is added latency")
    idle_timeout_ms: int = setting(1_800_000, low=1000, high=7 * 86_400_000,
                                   doc="a session silent this long is abandoned")
    sweep_interval_s: float = setting(10.0, low=0.1, high=3600, doc="how often idle sessions are looked for")
    state_max_bytes: int = setting(STATE_MAX_BYTES, low=8192, high=256 * 1024,
                                   doc="byte budget of one session's stored state (a changelog record)")
    model_checkpoint_s: float = setting(30.0, low=0.1, high=86_400,
                                        doc="how often the online models are checkpointed")
    demo: bool = setting(False, doc="serve the demo shop at /demo (frictionwatch run does)")
    # -- effectively-once state (README "Effectively once") ---------------------------------
    commit_interval_s: float = setting(
        2.8, low=0.05, high=86_400,
        doc="how often consumed offsets are committed (Faust's broker_commit_interval)")
    tombstone_ms: int = setting(
        3_600_000, low=1000, high=30 * 86_400_000,
        doc="server time an ended session's tombstone is kept when the committed offset "
            "of its partition cannot be read")
    # -- output order (README "Faults"); a fault hook for the tests ------------------------
    exit_after_outputs_acked: bool = setting(
        False, doc="tests only: exit at once after the first batch with an intervention has "
                   "its outputs acknowledged, before its session states are written")
    # -- browser endpoints (SDK, SSE); see streamer/web/guard.py ----------------------------
    #: HMAC-SHA256 key of session tokens. Unset: a random one per process, so tokens
    #: open streams only on the worker that issued them; set FW_SECRET on every worker.
    secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False, compare=False)
    token_ttl_s: float = setting(3600.0, low=1, high=30 * 86_400, doc="lifetime of a session token")
    site_keys: str = setting("", doc="site keys collect and sessions accept (empty: none needed)")
    cors_origins: str = setting("", doc='origins allowed cross-origin, comma-separated ("*": any)')
    trusted_proxies: str = setting("", doc="proxies whose X-Forwarded-For names the client")
    rate_client_per_s: float = setting(20.0, low=0.001, high=1e6, doc="requests/s per client")
    rate_client_burst: float = setting(100.0, low=1, high=1e6, doc="request burst per client")
    rate_session_per_s: float = setting(20.0, low=0.001, high=1e6, doc="events/s per session")
    rate_session_burst: float = setting(200.0, low=1, high=1e6, doc="event burst per session")
    rate_client_events_per_s: float = setting(200.0, low=0.001, high=1e6,
                                              doc="events/s per client (all its sessions)")
    rate_client_events_burst: float = setting(1000.0, low=1, high=1e6,
                                              doc="event burst per client")
    new_sessions_per_min: float = setting(
        30.0, low=0.01, high=1e6,
        doc="new sessions a client may start per minute (also the burst)")
    collect_requires_token: bool = setting(
        True, doc="collect only events whose session's token comes with them (false: any "
                  "session id, for backends that cannot hold tokens)")
    sse_streams_per_client: int = setting(20, low=1, high=100_000,
                                          doc="open intervention streams per client address")
    # -- webhook sink: handoffs (and incidents) POSTed to helpdesks; streamer/sinks/webhook.py
    webhook_urls: str = setting("", doc="URLs each handoff is POSTed to, comma-separated (empty: off)")
    #: HMAC-SHA256 key of the X-FW-Signature header; required when webhook_urls is set.
    webhook_secret: str = field(default="", repr=False, compare=False)
    webhook_max_tries: int = setting(5, low=1, high=100, doc="attempts per URL before the dead letters")
    webhook_backoff_s: float = setting(0.5, low=0.001, high=3600, doc="first retry delay (doubles)")
    webhook_backoff_max_s: float = setting(60.0, low=0.001, high=86_400, doc="longest retry delay")
    webhook_timeout_s: float = setting(10.0, low=0.01, high=600, doc="per-request timeout")
    webhook_concurrency: int = setting(8, low=1, high=1000, doc="records delivered at once")
    webhook_incidents: bool = setting(False, doc="also POST incident opens and closes")
    webhook_start: str = setting("latest", choices=("latest", "earliest"),
                                 doc="where a new webhook consumer group starts reading")
    # -- operator console at / (streamer/web/console) -------------------------------------
    #: Declared with setting() for its check and doc, kept out of repr like the secrets.
    console_token: str = field(default="", repr=False, compare=False, metadata=setting(
        "", doc="operator token of the console at / (empty: loopback clients only)").metadata)
    console_streams: int = setting(8, low=1, high=1000, doc="console streams open at once")
    #: Detector, policy, model, routes and incidents configuration, from config_file.
    detection: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check(self)
        if len(self.secret) < 16:
            raise ConfigError("secret is too short: use at least 16 characters (32 random bytes)")
        if self.console_token and len(self.console_token) < 16:
            raise ConfigError("console_token is too short: use at least 16 characters")
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
        """Defaults, then ``FW_*`` variables, then non-None ``overrides``; the detection
        config is read from ``config_file`` when one is named."""
        env = os.environ if env is None else env
        types = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"FW_{f.name.upper()}")
            if raw is None or f.name == "detection" or (f.name == "secret" and not raw):
                continue
            values[f.name] = parse_env(f"FW_{f.name.upper()}", raw, types[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("config_file") and "detection" not in values:
            values["detection"] = load_detection_config(values["config_file"])
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_env(name: str, raw: str, kind: Any) -> Any:
    """One environment variable, read as ``kind`` (bool, int, float or str)."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{name} = {raw!r} must be true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name} = {raw!r} must be an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name} = {raw!r} must be a number") from None
    return raw


def load_detection_config(path: str | Path) -> dict[str, Any]:
    """Read the detector/policy TOML; the engine checks keys and ranges when built."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
