"""Tiny inline-SVG charts in a self-contained HTML page (``tune --plot``, ``compare --plot``).

No JavaScript, no stylesheet or font from elsewhere: the file opens offline, in any
browser, and diffs as text. Two chart kinds are all the tools need: lines of rates
against a swept setting, and grouped bars per detector. Values are rates in [0, 1]
(the y axis); ``None`` (an undefined ratio) draws nothing: a gap in a line, no bar.
Each point or bar carries a ``<title>``, which browsers show as a tooltip.

Every chart is one ``<svg class="chart">``; each series is a ``<g class="series"
data-series="NAME">`` holding its marks (``<circle>`` per point, ``<rect>`` per bar),
so a test can count what was drawn.

>>> svg = line_chart([1, 2, 3], [Series("recall", [0.5, None, 1.0])], x_label="k")
>>> svg.count("<circle"), 'data-series="recall"' in svg
(2, True)
>>> ticks(0, 1)
[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
>>> ticks(3, 17)
[4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies);
#: lines also differ by dash pattern, so the chart reads in grey too.
COLOURS: Final = ("#0072B2", "#E69F00", "#CC79A7", "#009E73", "#D55E00", "#56B4E9", "#000000")
DASHES: Final = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")

WIDTH: Final = 640
HEIGHT: Final = 320
MARGIN: Final = {"left": 56, "right": 16, "top": 50, "bottom": 48}
#: Room under a bar chart for its slanted category names.
BAR_BOTTOM: Final = 100

STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
svg.chart { display: block; margin: 1em 0; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg .grid { stroke: #ddd; } svg .axis { stroke: #444; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class Series:
    """A named row of values, one per x (or per category); ``None`` draws nothing."""

    name: str
    values: Sequence[float | None]


def ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values within [low, high], as near ``count`` of them as steps of 1, 2
    or 5 times a power of ten allow."""
    if high <= low:
        return [float(low)]
    power = 10.0 ** math.floor(math.log10((high - low) / max(1, count - 1)))

    def how_many(step: float) -> int:
        return math.floor(high / step + 1e-9) - math.ceil(low / step - 1e-9) + 1

    step = min((m * power for m in (10, 5, 2, 1)), key=lambda st: abs(how_many(st) - count))
    first = math.ceil(low / step - 1e-9)
    out = []
    k = first
    while k * step <= high + step * 1e-9:
        out.append(round(k * step, 12))
        k += 1
    return out


def number(value: float) -> str:
    """A short label for an axis value or a table cell: ``3``, ``0.25``, ``1e+04``.

    >>> number(3.0), number(0.25), number(2500), number(0.1 + 0.2)
    ('3', '0.25', '2500', '0.3')
    """
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _frame(
    title: str, x_label: str, y_label: str, *, bottom: int = MARGIN["bottom"]
) -> tuple[list[str], float, float, float, float]:
    """The <svg> opening, the title, axis labels and the y axis (rates, 0 to 1);
    and the plot area (x0, y0, x1, y1)."""
    height = HEIGHT - MARGIN["bottom"] + bottom
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = MARGIN["top"], height - bottom
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{x0}" y="18" font-weight="bold">{escape(title)}</text>',
        f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(14 {(y0 + y1) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for tick in ticks(0.0, 1.0):  # the y axis: rates
        y = y1 - tick * (y1 - y0)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{number(tick)}</text>')
    parts.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
    parts.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}"/>')
    return parts, x0, y0, x1, y1


def _legend(names: Sequence[str], *, lines: bool) -> list[str]:
    """Legend entries in a row under the title, each a swatch and its name."""
    parts = ['<g class="legend">']
    x, y = float(MARGIN["left"]), 38
    for i, name in enumerate(names):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        if lines:
            parts.append(f'<line x1="{x:.1f}" x2="{x + 22:.1f}" y1="{y}" y2="{y}" stroke="{colour}" '
                         f'stroke-width="2" stroke-dasharray="{dash}"/>')
        else:
            parts.append(f'<rect x="{x + 6:.1f}" y="{y - 6}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 26:.1f}" y="{y + 4}">{escape(name)}</text>')
        x += 34 + 7 * len(name)
    parts.append("</g>")
    return parts


def line_chart(
    xs: Sequence[float],
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "rate",
) -> str:
    """Each series as a line with a marker per defined point, against ``xs``."""
    parts, x0, y0, x1, y1 = _frame(title, x_label, y_label)
    low, high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = high - low

    def px(x: float) -> float:
        return (x0 + x1) / 2 if span == 0 else x0 + 12 + (x - low) / span * (x1 - x0 - 24)

    def py(v: float) -> float:
        return y1 - v * (y1 - y0)

    # x ticks: the swept values themselves when few, else round numbers.
    x_ticks = list(xs) if len(xs) <= 12 else [t for t in ticks(low, high) if low <= t <= high]
    for tick in x_ticks:
        parts.append(f'<line class="axis" x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{y1}" y2="{y1 + 5}"/>')
        parts.append(f'<text x="{px(tick):.1f}" y="{y1 + 18}" text-anchor="middle">{number(tick)}</text>')
    for i, s in enumerate(series):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        parts.append(f'<g class="series" data-series="{escape(s.name)}">')
        run: list[str] = []
        for x, v in [*zip(xs, s.values, strict=True), (None, None)]:
            if x is None or v is None:  # a gap (or the end): draw what was collected
                if len(run) > 1:
                    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                                 f'stroke-dasharray="{dash}" points="{" ".join(run)}"/>')
                run = []
                continue
            run.append(f"{px(x):.1f},{py(v):.1f}")
        for x, v in zip(xs, s.values, strict=True):
            if v is not None:
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}">'
                             f"<title>{escape(s.name)} at {number(x)}: {v:.3f}</title></circle>")
        parts.append("</g>")
    parts += _legend([s.name for s in series], lines=True)
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str = "",
    y_label: str = "rate",
) -> str:
    """Per category a group of bars, one per series; an undefined value is marked "-"."""
    parts, x0, y0, x1, y1 = _frame(title, "", y_label, bottom=BAR_BOTTOM)
    slot = (x1 - x0) / max(1, len(categories))
    bar = slot * 0.8 / max(1, len(series))
    for c, category in enumerate(categories):
        middle = x0 + (c + 0.5) * slot
        parts.append(f'<text transform="translate({middle + 4:.1f} {y1 + 14}) rotate(-35)" '
                     f'text-anchor="end">{escape(category)}</text>')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<g class="series" data-series="{escape(s.name)}">')
        for c, (category, v) in enumerate(zip(categories, s.values, strict=True)):
            x = x0 + c * slot + slot * 0.1 + i * bar
            if v is None:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{y1 - 3}" text-anchor="middle">-</text>')
                continue
            h = v * (y1 - y0)
            parts.append(f'<rect x="{x:.1f}" y="{y1 - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(category)}, {escape(s.name)}: {v:.3f}</title>'
                         "</rect>")
        parts.append("</g>")
    parts += _legend([s.name for s in series], lines=False)
    parts.append("</svg>")
    return "\n".join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of already formatted cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def page(title: str, parts: Sequence[str]) -> str:
    """A whole HTML document: ``title`` as its heading, then ``parts`` (markup) in order."""
    body = "\n".join(parts)
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
