"""Settings declared once: default, allowed range and doc beside each field.

Every configurable class (a detector, the policy, the models, the incident rules, the
routes, the worker's process settings) is a dataclass whose fields are made with
:func:`setting`. From that one declaration come the range checks (:func:`check`,
called by the class itself, so a bad value fails however the object is built), the
unknown-key check of a config section (:func:`build`, the one loader), and the
reference file ``deploy/frictionwatch.toml`` (:func:`reference_toml`).

>>> from dataclasses import dataclass
>>> @dataclass
... class Burst:
...     section = "burst"
...     min_count: int = setting(3, low=2, high=100, doc="events that make a burst")
...     label: str = setting("x", doc="what to call it")
...     def __post_init__(self) -> None:
...         check(self)
>>> build(Burst, {"min_count": 5}).min_count
5
>>> build(Burst, {"min_cuont": 5})
Traceback (most recent call last):
...
detectors.errors.ConfigError: unknown key burst.min_cuont (known: label, min_count)
>>> Burst(min_count=1)
Traceback (most recent call last):
...
detectors.errors.ConfigError: burst.min_count = 1 is out of range: allowed 2 to 100
>>> Burst(label=3)
Traceback (most recent call last):
...
detectors.errors.ConfigError: burst.label = 3 must be a string
>>> print(reference_toml([Burst]).strip())
[burst]
min_count = 3  # 2 to 100: events that make a burst
label = "x"  # what to call it
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from detectors.errors import ConfigError

_MISSING = dataclasses.MISSING


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    doc: str = "",
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its allowed range (numbers) or ``choices`` and a doc line.

    A list or dict default is copied per instance; its type is what values must have.
    """
    meta = {"low": low, "high": high, "doc": doc, "choices": tuple(choices) if choices else None,
            "default": default}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value)) if isinstance(value, list | dict) else set(value)


def declared(cls_or_obj: Any) -> list[dataclasses.Field[Any]]:
    """The fields made with :func:`setting`, in declaration order."""
    return [f for f in dataclasses.fields(cls_or_obj) if "doc" in f.metadata]


def _section(obj: Any) -> str:
    """The config section's name: ``section``, else the detector ``name``."""
    for attribute in ("section", "name"):
        value = getattr(obj, attribute, None)
        if isinstance(value, str):
            return value
    return type(obj).__name__


def check(obj: Any) -> None:
    """Raise :class:`ConfigError` naming the first field out of its type, range or choices."""
    section = _section(obj)
    for f in declared(obj):
        value, meta = getattr(obj, f.name), f.metadata
        name = f"{section}.{f.name}" if section else f.name
        _check_value(name, value, meta)


def _check_value(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    default = meta["default"]
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            allowed = " or ".join(repr(c) for c in meta["choices"])
            raise ConfigError(f"{name} = {value!r}: allowed {allowed}")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
    elif isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{name} = {value!r} must be a number")
        low, high = meta["low"], meta["high"]
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                allowed = f">= {low}"
            elif low is None:
                allowed = f"<= {high}"
            else:
                allowed = f"{low} to {high}"
            raise ConfigError(f"{name} = {value!r} is out of range: allowed {allowed}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r} must be a string")
    elif isinstance(default, list | tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{name} = {value!r} must be a list")
    elif isinstance(default, dict) and not isinstance(value, Mapping):
        raise ConfigError(f"{name} = {value!r} must be a table")


def build(cls: Any, section: Mapping[str, Any] | None, name: str | None = None) -> Any:
    """``cls(**section)``, refusing keys ``cls`` does not declare: the one loader."""
    section = dict(section or {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name or _section(cls)}] must be a table")
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    for key in section:
        if key not in known:
            raise ConfigError(
                f"unknown key {name or _section(cls)}.{key} (known: {', '.join(known)})")
    return cls(**section)


def defaults(cls: Any) -> dict[str, Any]:
    """Every declared field at its default, as it would be written in TOML."""
    return {f.name: _plain(f.metadata["default"]) for f in declared(cls)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _toml_value(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }" \
            if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return orjson.dumps(value).decode()


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() else orjson.dumps(key).decode()


def reference_toml(classes: Iterable[Any], *, header: str = "") -> str:
    """A TOML document with a section per class: every key at its default, with its
    range and doc as a comment. Tables (dict defaults) come as sub-tables."""
    lines = [header.rstrip()] if header else []
    for cls in classes:
        if lines:
            lines.append("")
        doc = (getattr(cls, "section_doc", "") or "").strip()
        lines.extend(f"# {line}".rstrip() for line in doc.splitlines() if doc)
        lines.append(f"[{_section(cls)}]")
        tables = []
        for f in declared(cls):
            value = _plain(f.metadata["default"])
            if isinstance(value, dict) and value:
                tables.append(f)
                continue
            lines.append(f"{f.name} = {_toml_value(value)}{_comment(f.metadata)}")
        for f in tables:
            lines.append("")
            lines.append(f"[{_section(cls)}.{f.name}]{_comment(f.metadata)}")
            for key, value in f.metadata["default"].items():
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _comment(meta: Mapping[str, Any]) -> str:
    low, high, doc, choices = meta["low"], meta["high"], meta["doc"], meta["choices"]
    if choices:
        span = " or ".join(_toml_value(c) for c in choices)
    elif low is not None and high is not None:
        span = f"{_num(low)} to {_num(high)}"
    elif low is not None:
        span = f">= {_num(low)}"
    elif high is not None:
        span = f"<= {_num(high)}"
    else:
        span = ""
    text = ": ".join(p for p in (span, doc) if p)
    return f"  # {text}" if text else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
