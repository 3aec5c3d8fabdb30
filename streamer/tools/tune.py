"""``frictionwatch tune``: the ``replay --labels`` report over a grid of settings.

A sweep names one setting of the detector/policy TOML by its dotted path and the
values to try, ``rage_click.min_clicks=2:5:1`` (start, stop and step; the stop is
included). Values are integers when all three numbers are, else floats. Several
sweeps make a grid (their cartesian product, at most :data:`MAX_GRID` points). Each
point is the base configuration with the swept keys set, built by the one config
loader (:meth:`Engine.from_config`), so an unknown detector or key, or a value out
of range, is refused as a worker would refuse it, before anything runs. Each point
then gets exactly the report ``replay --labels --json`` prints for that config
(:func:`streamer.tools.evaluate.replay_report`).

>>> parse_sweep("rage_click.min_clicks=2:5:1")
Sweep(key='rage_click.min_clicks', values=(2, 3, 4, 5))
>>> parse_sweep("policy.nudge_threshold=0.3:0.5:0.1").values
(0.3, 0.4, 0.5)
>>> parse_sweep("rage_click.min_clicks=5:2:1")
Traceback (most recent call last):
...
streamer.tools.tune.SweepError: --sweep 'rage_click.min_clicks=5:2:1': STOP 2 is below START 5
>>> grid([parse_sweep("a.x=1:2:1"), parse_sweep("b.y=0.5:1:0.5")])
[{'a.x': 1, 'b.y': 0.5}, {'a.x': 1, 'b.y': 1.0}, {'a.x': 2, 'b.y': 0.5}, {'a.x': 2, 'b.y': 1.0}]
>>> configure({"rage_click": {"max_interval_ms": 800}}, {"rage_click.min_clicks": 4})
{'rage_click': {'max_interval_ms': 800, 'min_clicks': 4}}
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Final

from detectors.errors import ConfigError
from detectors.registry import REGISTRY
from detectors.session import Engine
from streamer.tools import evaluate
from streamer.tools.progress import progress

Number = int | float
Point = dict[str, Number]
Report = dict[str, Any]

#: The most grid points one run may have: each is a whole replay of the file.
MAX_GRID: Final = 100
EXAMPLE: Final = "rage_click.min_clicks=2:5:1"


class SweepError(ValueError):
    """A ``--sweep`` that cannot be read, or a grid too large; one line, naming it."""


@dataclass(frozen=True)
class Sweep:
    """One setting (``section.key``, or deeper: ``policy.weights.rage_click``) and
    the values to try, in order."""

    key: str
    values: tuple[Number, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))


def _number(text: str, spec: str) -> Number:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"--sweep {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SweepError(f"--sweep {spec!r}: {text!r} is not a finite number")
    return value


def parse_sweep(spec: str, *, limit: int = MAX_GRID) -> Sweep:
    """``section.key=START:STOP:STEP`` as a :class:`Sweep` (STOP included).

    The key is checked against the config loader later, with the whole grid point.
    """
    usage = f"--sweep {spec!r}: expected section.key=START:STOP:STEP (e.g. {EXAMPLE})"
    key, eq, span = spec.partition("=")
    key = key.strip()
    parts = span.split(":")
    if not eq or len(parts) != 3 or "." not in key or not all(key.split(".")):
        raise SweepError(usage)
    numbers = [_number(p.strip(), spec) for p in parts]
    start, stop, step = numbers
    if step <= 0:
        raise SweepError(f"--sweep {spec!r}: STEP must be > 0, got {step}")
    if stop < start:
        raise SweepError(f"--sweep {spec!r}: STOP {stop} is below START {start}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > limit:
        raise SweepError(f"--sweep {spec!r}: {count} values; at most {limit}: use a coarser STEP")
    if all(isinstance(n, int) for n in numbers):
        values: tuple[Number, ...] = tuple(int(start + i * step) for i in range(count))
    else:  # rounded, so 0.1:0.3:0.1 gives 0.3 and not 0.30000000000000004
        values = tuple(round(float(start) + i * float(step), 12) for i in range(count))
    return Sweep(key, values)


def grid(sweeps: Sequence[Sweep], *, limit: int = MAX_GRID) -> list[Point]:
    """Every combination of the sweeps' values, the last sweep varying fastest."""
    keys = [s.key for s in sweeps]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise SweepError(f"--sweep {twice} is given twice")
    size = math.prod(len(s.values) for s in sweeps)
    if size > limit:
        shape = " x ".join(f"{len(s.values)} ({s.key})" for s in sweeps)
        raise SweepError(f"the grid has {size} points ({shape}); at most {limit}: "
                         "use fewer sweeps or coarser steps")
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(s.values for s in sweeps))]


def configure(base: Mapping[str, Any], point: Mapping[str, Number]) -> dict[str, Any]:
    """A copy of the base config with each swept key set (sections made as needed)."""
    config = copy.deepcopy(dict(base))
    for key, value in point.items():
        *sections, name = key.split(".")
        node = config
        for depth, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(sections[:depth + 1])} must be a table to set {key}")
        node[name] = value
    return config


def describe(point: Mapping[str, Number]) -> str:
    """``rage_click.min_clicks=3, policy.nudge_threshold=0.5``"""
    return ", ".join(f"{k}={v}" for k, v in point.items())


def engines(base: Mapping[str, Any], points: Sequence[Point]) -> list[Engine]:
    """An engine per grid point; the first refused point raises :class:`ConfigError`
    naming it and the loader's reason."""
    built = []
    for point in points:
        try:
            built.append(Engine.from_config(configure(base, point)))
        except ConfigError as exc:
            raise ConfigError(f"at {describe(point)}: {exc}") from None
    return built


# -- what each point reports ---------------------------------------------------------
def swept_detectors(sweeps: Sequence[Sweep]) -> list[str]:
    """The detectors whose own settings are swept, in registry order."""
    sections = {s.path[0] for s in sweeps}
    return [name for name in REGISTRY if name in sections]


def summarize(report: Report, detectors: Sequence[str]) -> Report:
    """The numbers a grid row shows: per swept detector precision, recall and median
    time to detect; then the rule detectors pooled (``all``: micro-averaged precision
    and recall over :data:`REGISTRY`; the anomaly model's signals have no labels to be
    right about) and the clean sessions nudged (the cost of a looser setting)."""
    pooled = [d for name, d in report["detectors"].items() if name in REGISTRY]
    per = report["detectors"]
    fired = sum(d["fired"] for d in pooled)
    true_pos = sum(d["fired"] - d["false_positives"] for d in pooled)
    episodes = sum(d["episodes"] for d in pooled)
    detected = sum(d["detected"] for d in pooled)
    return {
        "detectors": {
            name: {key: per.get(name, {}).get(key) for key in
                   ("episodes", "fired", "precision", "recall", "median_detect_ms")}
            for name in detectors
        },
        "all": {"precision": true_pos / fired if fired else None,
                "recall": detected / episodes if episodes else None},
        "clean_nudged_share": report["clean_nudged_share"],
        "clean_signalled_share": report["clean_signalled_share"],
        "interventions_per_session": report["interventions_per_session"],
    }


def tune(
    open_lines: Callable[[], AbstractContextManager[Iterable[bytes]]],
    base: Mapping[str, Any],
    sweeps: Sequence[Sweep],
    labels: Sequence[Mapping[str, Any]],
    *,
    max_record_bytes: int,
    idle_ms: int,
    err: IO[str] | None = None,
) -> Report:
    """Replay the input once per grid point; ``open_lines()`` gives the input afresh.

    Every point is checked before the first replay. ``err`` gets a progress bar over
    the points (on a terminal) and, from the first point only, the input lines that
    do not decode: they are the same lines at every point.
    """
    points = grid(sweeps)
    built = engines(base, points)
    detectors = swept_detectors(sweeps)
    rows = []
    for i, point in enumerate(progress(points, err, "tune", total=len(points), unit="settings")):
        with open_lines() as lines:
            report = evaluate.replay_report(
                lines, built[i], labels, max_record_bytes=max_record_bytes, idle_ms=idle_ms,
                err=err if i == 0 else None, what=f"replay {describe(point)}",
            )
        rows.append({"values": point, "summary": summarize(report, detectors), "report": report})
    return {"sweeps": [{"key": s.key, "values": list(s.values)} for s in sweeps],
            "detectors": detectors, "grid": rows}


# -- the table -------------------------------------------------------------------------
def fmt(value: Any, digits: int) -> str:
    """A cell: ``-`` for an undefined value, floats to ``digits`` places."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def columns(result: Report) -> tuple[list[str], list[list[str]]]:
    """The grid as a header and formatted rows, for the text table and the HTML one."""
    keys = [s["key"] for s in result["sweeps"]]
    header = list(keys)
    for name in result["detectors"]:
        header += [f"{name} precision", f"{name} recall", f"{name} median ms"]
    header += ["all precision", "all recall", "clean nudged", "interventions/session"]
    rows = []
    for row in result["grid"]:
        s = row["summary"]
        cells = [str(row["values"][k]) for k in keys]
        for name in result["detectors"]:
            d = s["detectors"][name]
            cells += [fmt(d["precision"], 3), fmt(d["recall"], 3), fmt(d["median_detect_ms"], 0)]
        cells += [fmt(s["all"]["precision"], 3), fmt(s["all"]["recall"], 3),
                  fmt(s["clean_nudged_share"], 4), fmt(s["interventions_per_session"], 4)]
        rows.append(cells)
    return header, rows


def format_grid(result: Report) -> str:
    """The grid as an aligned text table, one row per point.

    >>> report = evaluate.evaluate([], [], {"s": [1]})
    >>> result = {"sweeps": [{"key": "rage_click.min_clicks", "values": [3]}],
    ...           "detectors": ["rage_click"],
    ...           "grid": [{"values": {"rage_click.min_clicks": 3},
    ...                     "summary": summarize(report, ["rage_click"])}]}
    >>> print(format_grid(result))  # doctest: +NORMALIZE_WHITESPACE
    rage_click.min_clicks  rage_click precision  rage_click recall  rage_click median ms
    all precision  all recall  clean nudged  interventions/session
    3  -  -  -  -  -  0.0000  0.0000
    """
    header, rows = columns(result)
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in (header, *rows))
