"""The HTML pages of ``tune --plot`` and ``compare --plot``: charts and tables of the
``replay --labels`` reports, drawn with :mod:`streamer.tools.plot` (self-contained).

>>> from streamer.tools.evaluate import evaluate
>>> a = evaluate([], [{"session_id": "s", "type": "rage_click", "onset_ts": 1}], {"s": [1]})
>>> html = comparison_page(a, a, ("A", "B"), title="same twice")
>>> html.count('<svg class="chart"'), html.count('data-series="A"')
(2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from streamer.tools import plot
from streamer.tools.tune import Report, columns, fmt

CLEAN_NUDGED = "clean sessions nudged (share)"


def tune_page(result: Report, *, title: str, notes: Sequence[str] = ()) -> str:
    """Precision and recall of each swept detector (the rule detectors pooled when only
    policy or model settings are swept) and the clean sessions nudged, against the
    first swept setting; one chart per combination of the other sweeps' values. Then
    the whole grid as a table."""
    keys = [s["key"] for s in result["sweeps"]]
    x_key, others = keys[0], keys[1:]
    names = result["detectors"] or ["all"]
    parts = [f"<p>{escape(note)}</p>" for note in notes]
    groups: dict[tuple[Any, ...], list[Report]] = {}
    for row in result["grid"]:
        groups.setdefault(tuple(row["values"][k] for k in others), []).append(row)
    for fixed, group_rows in groups.items():
        xs = [r["values"][x_key] for r in group_rows]
        series = []
        for name in names:
            def rate(r: Report, metric: str, name: str = name) -> float | None:
                s = r["summary"]
                value = (s["all"] if name == "all" else s["detectors"][name])[metric]
                return None if value is None else float(value)

            label = "all rule detectors" if name == "all" else name
            series.append(plot.Series(f"{label} precision", [rate(r, "precision") for r in group_rows]))
            series.append(plot.Series(f"{label} recall", [rate(r, "recall") for r in group_rows]))
        series.append(plot.Series(CLEAN_NUDGED, [r["summary"]["clean_nudged_share"] for r in group_rows]))
        where = ", ".join(f"{k} = {v}" for k, v in zip(others, fixed, strict=True))
        chart_title = f"the trade-off against {x_key}" + (f", at {where}" if where else "")
        parts.append(plot.line_chart(xs, series, title=chart_title, x_label=x_key, y_label="share"))
    header, cells = columns(result)
    parts.append("<h2>The grid</h2>")
    parts.append("<p>precision, recall and median time to detect (ms of event time) per swept "
                 "detector, as <code>replay --labels</code> reports them; <em>all</em>: the rule "
                 "detectors' signals pooled; <em>clean nudged</em>: share of the sessions without "
                 "friction that got a nudge or a handoff.</p>")
    parts.append(plot.table(header, cells))
    return plot.page(title, parts)


def comparison_page(
    a: Report, b: Report, names: Sequence[str], *, title: str, notes: Sequence[str] = ()
) -> str:
    """Per detector, precision and recall of two configs as bars side by side; then
    the numbers, and the summary lines (clean sessions nudged, interventions)."""
    x, y = names
    detectors = list(dict.fromkeys([*a["detectors"], *b["detectors"]]))

    def values(report: Report, metric: str) -> list[float | None]:
        return [report["detectors"].get(d, {}).get(metric) for d in detectors]

    parts = [f"<p>{escape(note)}</p>" for note in notes]
    for metric in ("precision", "recall"):
        parts.append(plot.bar_chart(
            detectors, [plot.Series(x, values(a, metric)), plot.Series(y, values(b, metric))],
            title=f"{metric} by detector", y_label=metric))
    header = ["detector", "episodes", f"precision {x}", f"precision {y}", f"recall {x}",
              f"recall {y}", f"median ms {x}", f"median ms {y}"]
    rows = []
    for d in detectors:
        da, db = a["detectors"].get(d, {}), b["detectors"].get(d, {})
        row = [d, str(da.get("episodes", db.get("episodes", 0)))]
        for key, digits in (("precision", 3), ("recall", 3), ("median_detect_ms", 0)):
            row += [fmt(da.get(key), digits), fmt(db.get(key), digits)]
        rows.append(row)
    parts.append(plot.table(header, rows))
    summary = ((CLEAN_NUDGED, "clean_nudged_share"),
               ("clean sessions signalled (share)", "clean_signalled_share"),
               ("interventions per session", "interventions_per_session"),
               ("sessions", "sessions"), ("clean sessions", "clean_sessions"))
    parts.append(plot.table(["summary", x, y], [
        [label, fmt(a.get(key), 4), fmt(b.get(key), 4)] for label, key in summary]))
    return plot.page(title, parts)
