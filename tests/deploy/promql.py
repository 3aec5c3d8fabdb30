"""The PromQL in the deploy files, and the small parsing the tests need to check it.

Where it lives: the Grafana dashboard's panel targets and the Prometheus rule files.
What the tests do with it: find every metric name it refers to (all of ours start with
``frictionwatch_`` or, when recorded, ``frictionwatch:``), and cut an alert condition
into the operands of its comparisons and set operators, so each operand can be
evaluated on its own: ``a > 2 * b and a > 0.1`` must have series for ``a`` and
``2 * b`` even when nothing is wrong and the alert is silent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"

#: Grafana's built-in variables, as the live test's Prometheus (1 s scrapes) gets them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}

_METRIC = re.compile(r"(?<![\w:.])frictionwatch[_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_COMPARISON = ("==", "!=", ">=", "<=", ">", "<")
_SET = ("and", "or", "unless")
_MODIFIERS = re.compile(
    r"\s*(bool\b)?\s*((on|ignoring)\s*\([^)]*\))?\s*((group_left|group_right)\b\s*(\([^)]*\))?)?"
)


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_dashboard(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh))


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those inside (collapsed) rows included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every target of every panel."""
    return [
        (f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", t.get("expr", ""))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]


def rules(paths: list[Path] = RULE_FILES) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of the rule files, with its group's name."""
    return [
        {**rule, "group": group["name"], "file": path.name}
        for path in paths
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str) -> str:
    """Replace Grafana's variables; any other ``$variable`` is an error.

    >>> substitute("rate(x[$__rate_interval])")
    'rate(x[1m])'
    >>> substitute("rate(x{route=~'$route'}[1m])")
    Traceback (most recent call last):
    ...
    ValueError: unknown Grafana variable(s) ['$route'] in rate(x{route=~'$route'}[1m])
    """
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    unknown = re.findall(r"\$\{?\w+", expr)
    if unknown:
        raise ValueError(f"unknown Grafana variable(s) {unknown} in {expr}")
    return expr


def metric_names(expr: str) -> set[str]:
    """Our metric and recorded-series names in ``expr`` (not label values such as topics).

    >>> sorted(metric_names('sum by (topic) (frictionwatch_consumer_lag{topic="frictionwatch.events"})'
    ...                     ' / frictionwatch:events:rate1m'))
    ['frictionwatch:events:rate1m', 'frictionwatch_consumer_lag']
    """
    return set(_METRIC.findall(expr))


def operands(expr: str) -> list[str]:
    """The operands of the top-level comparisons and set operators; number literals dropped.

    >>> operands("a > 2 * b and a > 0.1")
    ['a', '2 * b', 'a']
    >>> operands("sum(rate(x[15m])) == 0")
    ['sum(rate(x[15m]))']
    >>> operands('x{a!="b", c=~"<d|e>"} > on(route) group_left y')
    ['x{a!="b", c=~"<d|e>"}', 'y']
    >>> operands("count(x > 0) or vector(0)")
    ['count(x > 0)', 'vector(0)']
    >>> operands("frictionwatch:a_and_b unless orders")
    ['frictionwatch:a_and_b', 'orders']
    """
    parts: list[str] = []
    depth, start, i, quote = 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (length := _operator_at(expr, i)):
            parts.append(expr[start:i])
            i += length
            i = _MODIFIERS.match(expr, i).end()  # type: ignore[union-attr]
            start = i
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip() and not _NUMBER.fullmatch(p.strip())]


def _operator_at(expr: str, i: int) -> int:
    for op in _COMPARISON:
        if expr.startswith(op, i):
            return len(op)
    for op in _SET:
        end = i + len(op)
        if (expr.startswith(op, i) and (i == 0 or not _ident(expr[i - 1]))
                and (end == len(expr) or not _ident(expr[end]))):
            return len(op)
    return 0


def _ident(c: str) -> bool:
    return c.isalnum() or c in "_:"
