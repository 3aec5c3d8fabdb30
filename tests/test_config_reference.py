"""deploy/frictionwatch.toml documents every key at its default; keep it that way."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

from detectors.incidents import IncidentDetector
from detectors.model import Models
from detectors.policy import DEFAULT_MESSAGES, Policy
from detectors.registry import REGISTRY
from detectors.routes import DEFAULT_PATTERNS
from detectors.session import Engine

REFERENCE = Path(__file__).resolve().parent.parent / "deploy" / "frictionwatch.toml"


def _defaults(cls: type) -> dict[str, object]:
    return {
        name: (list(p.default) if isinstance(p.default, tuple) else p.default)
        for name, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty and not callable(p.default)
    }


def test_reference_config_loads_and_lists_every_key_at_its_default() -> None:
    config = tomllib.loads(REFERENCE.read_text())
    Engine.from_config(config)  # valid as a whole
    for name, cls in REGISTRY.items():
        assert name in config, f"[{name}] missing"
        assert config[name] == _defaults(cls), name
    policy = dict(config["policy"])
    assert policy.pop("messages") == DEFAULT_MESSAGES
    assert policy.pop("weights") == {}
    assert policy == {k: v for k, v in _defaults(Policy).items() if k not in ("messages", "weights")}
    assert config["model"] == _defaults(Models)
    assert config["routes"] == {"patterns": list(DEFAULT_PATTERNS)}
    assert config["incidents"] == _defaults(IncidentDetector)
