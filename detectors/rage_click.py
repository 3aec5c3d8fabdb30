"""Rage click: a burst of quick clicks on one spot.

Same rule as PostHog's autocapture: a click extends the run when it is within
``max_distance_px`` (Manhattan) of the previous click and within ``max_interval_ms``
after it; the detector fires once, when the run reaches ``min_clicks``, and stays
quiet until the run breaks. A double-click never fires; a triple-click does only
when ``min_clicks`` is 3, which is why text inputs are ignored (triple-click selects
a line there).

>>> detector = RageClick()
>>> state = {}
>>> clicks = [{"session_id": "s", "type": "click", "ts": t, "x": 100 + t // 100, "y": 50,
...            "target": "#pay"} for t in (0, 300, 600, 900)]
>>> [detector.step(state, c) is not None for c in clicks]
[False, False, True, False]
>>> detector.step({}, clicks[0]) is None  # a fresh session starts a new run
True
"""

from __future__ import annotations

from typing import Any, ClassVar

from detectors.base import Signal, require
from detectors.events import Event

#: Targets that select text on repeated clicks; a triple click there is not rage.
TEXT_INPUT_PREFIXES = ("input", "textarea", "[contenteditable")


class RageClick:
    name: ClassVar[str] = "rage_click"

    def __init__(
        self, min_clicks: int = 3, max_interval_ms: int = 1000, max_distance_px: float = 30
    ) -> None:
        require("rage_click.min_clicks", min_clicks, 2, 100)
        require("rage_click.max_interval_ms", max_interval_ms, 1, 60_000)
        require("rage_click.max_distance_px", max_distance_px, 0, 10_000)
        self.min_clicks = min_clicks
        self.max_interval_ms = max_interval_ms
        self.max_distance_px = max_distance_px

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "click":
            return None
        ts, x, y = event["ts"], event["x"], event["y"]
        run = state.get("n", 0)
        if (
            run
            and 0 <= ts - state["ts"] <= self.max_interval_ms
            and abs(x - state["x"]) + abs(y - state["y"]) <= self.max_distance_px
        ):
            run += 1
        else:
            run, state["start"] = 1, ts
        state.update(n=run, ts=ts, x=x, y=y)
        if run != self.min_clicks:
            return None
        target = event["target"]
        if target.lower().startswith(TEXT_INPUT_PREFIXES):
            return None
        return Signal(
            self.name,
            strength=0.7,
            ts=ts,
            evidence={"target": target, "clicks": run, "span_ms": ts - state["start"]},
        )
