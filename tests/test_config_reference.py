"""deploy/frictionwatch.toml is generated from the settings' declarations; keep it so.

It must be exactly what ``make config-reference`` writes now (so a default, range or doc
changed without regenerating fails here), load as a whole, and hold every section and
key at its default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from detectors import reference
from detectors.config import build, declared, defaults
from detectors.policy import DEFAULT_MESSAGES
from detectors.registry import REGISTRY
from detectors.session import Engine

REFERENCE = Path(__file__).resolve().parent.parent / "deploy" / "frictionwatch.toml"
SECTIONS = {cls.section if hasattr(cls, "section") else cls.name: cls for cls in reference.SECTIONS}


def test_committed_file_is_what_the_declarations_generate() -> None:
    assert reference.PATH == REFERENCE
    assert REFERENCE.read_text(encoding="utf-8") == reference.render(), (
        "deploy/frictionwatch.toml is stale: run `make config-reference`"
    )


def test_reference_config_loads_as_a_whole() -> None:
    engine = Engine.from_config(tomllib.loads(REFERENCE.read_text(encoding="utf-8")))
    assert [d.name for d in engine.detectors] == list(REGISTRY)  # every one enabled
    assert engine.models is not None


def test_every_section_and_key_is_there_at_its_default() -> None:
    config = tomllib.loads(REFERENCE.read_text(encoding="utf-8"))
    assert list(config) == list(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(config[name]) == {f.name for f in declared(cls)}, name
        assert config[name] == defaults(cls), name
    assert config["policy"]["messages"] == DEFAULT_MESSAGES
    assert config["policy"]["weights"] == {}
    assert config["rage_click"]["enabled"] is True and config["model"]["enabled"] is True


@pytest.mark.parametrize("name", [n for n in SECTIONS if n != "model"])
def test_each_section_builds_what_the_defaults_build(name: str) -> None:
    """The file changes nothing: each section builds an object equal to the default one."""
    config = tomllib.loads(REFERENCE.read_text(encoding="utf-8"))
    cls = SECTIONS[name]
    assert build(cls, config[name]) == cls()


def test_generator_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "frictionwatch.toml"
    assert reference.main([str(target), "--check"]) == 1  # missing
    assert reference.main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == reference.render()
    assert reference.main([str(target), "--check"]) == 0
    target.write_text(reference.render().replace("min_clicks = 3", "min_clicks = 4"))
    assert reference.main([str(target), "--check"]) == 1
    assert "make config-reference" in capsys.readouterr().err
