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
label = "x"    # what to call it
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

    The default's type is what values must have: a field annotated ``int`` takes whole
    numbers only; a list default means a list of non-empty strings; a table (dict)
    default with ``low``/``high`` means a table of numbers in that range. A list or
    dict default is copied per instance.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Rules:
    ...     section = "rules"
    ...     window_ms: int = setting(1000, low=1, doc="")
    ...     names: list[str] = setting([], doc="")
    ...     weights: dict[str, float] = setting({}, low=0, high=10, doc="")
    ...     def __post_init__(self) -> None:
    ...         check(self)
    >>> Rules(window_ms=1000.5)
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: rules.window_ms = 1000.5 must be a whole number
    >>> Rules(names=["a", " "])
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: rules.names = ['a', ' ']: ' ' must not be empty
    >>> Rules(weights={"a": 11})
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: rules.weights.a = 11 is out of range: allowed 0 to 10
    >>> Rules().names is not Rules().names
    True
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
        name = f"{section}.{f.name}" if section else f.name
        _check_value(name, getattr(obj, f.name), f.metadata, whole=_is_int(f))


def check_field(cls: Any, key: str, value: Any) -> None:
    """Check one value against ``cls``'s declaration of ``key``: for a part that is built
    from one of the settings and must refuse what the whole would refuse.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Burst:
    ...     section = "burst"
    ...     window_ms: int = setting(1000, low=1, doc="")
    >>> check_field(Burst, "window_ms", 0)
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: burst.window_ms = 0 is out of range: allowed >= 1
    """
    (f,) = (f for f in declared(cls) if f.name == key)
    _check_value(f"{_section(cls)}.{key}", value, f.metadata, whole=_is_int(f))


def _is_int(f: dataclasses.Field[Any]) -> bool:
    return f.type in (int, "int")


def _check_value(name: str, value: Any, meta: Mapping[str, Any], *, whole: bool = False) -> None:
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
        _check_number(name, value, meta["low"], meta["high"], whole=whole)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r} must be a string")
    elif isinstance(default, list | tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError(f"{name} = {value!r} must be a list of strings")
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{name} = {value!r}: {item!r} must be a string")
            if not item.strip():
                raise ConfigError(f"{name} = {value!r}: {item!r} must not be empty")
    elif isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} = {value!r} must be a table")
        if meta["low"] is not None or meta["high"] is not None:
            for key, item in value.items():
                _check_number(f"{name}.{key}", item, meta["low"], meta["high"])


def _check_number(name: str, value: Any, low: float | None, high: float | None,
                  *, whole: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{name} = {value!r} must be a {'whole number' if whole else 'number'}")
    if whole and not isinstance(value, int):
        raise ConfigError(f"{name} = {value!r} must be a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name} = {value!r} is out of range: allowed {_span(low, high)}")


def build(cls: Any, section: Mapping[str, Any] | None, name: str | None = None) -> Any:
    """``cls(**section)``, refusing keys ``cls`` does not declare: the one loader."""
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"[{name or _section(cls)}] must be a table, not {section!r}")
    section = dict(section or {})
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
        tables, keys = [], []
        for f in declared(cls):
            value = _plain(f.metadata["default"])
            if isinstance(value, dict) and value:
                tables.append(f)
            else:
                keys.append((f"{f.name} = {_toml_value(value)}", _comment(f.metadata)))
        # Comments in one column, past the short lines (long lists push theirs out).
        width = max([len(k) for k, _ in keys if len(k) <= _ALIGN_MAX], default=0)
        lines.extend(f"{k:<{width}}{c}" if c else k for k, c in keys)
        for f in tables:
            lines.append("")
            lines.append(f"[{_section(cls)}.{f.name}]{_comment(f.metadata)}")
            for key, value in f.metadata["default"].items():
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


#: Lines up to this long have their comments aligned.
_ALIGN_MAX = 40


def _comment(meta: Mapping[str, Any]) -> str:
    low, high, doc, choices = meta["low"], meta["high"], meta["doc"], meta["choices"]
    span = " or ".join(_toml_value(c) for c in choices) if choices else _span(low, high)
    text = ": ".join(p for p in (span, doc) if p)
    return f"  # {text}" if text else ""


def _span(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_num(low)} to {_num(high)}"
    if low is not None:
        return f">= {_num(low)}"
    if high is not None:
        return f"<= {_num(high)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
