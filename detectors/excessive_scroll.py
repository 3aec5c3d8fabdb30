"""Excessive scroll: up and down the same page, again and again.

Microsoft Clarity's "excessive scrolling" compares with the page's average, which
needs history we do not keep; here it is ``min_reversals`` (default 6) changes of
scroll direction on one page within ``window_ms`` (default 30 s). Reading scrolls
down with a reversal or two (back up to re-read a line, then on); six in half a
minute is hunting for something the page does not show. A reversal counts only after
at least ``min_travel_px`` (default 100) in the previous direction, so trackpad
jitter and rubber-band bounce at the ends of a page are not reversals.

The direction comes from ``y`` (the scroll position), which every scroll event
carries; the optional ``direction`` field is not needed. A page view, or a scroll
event whose ``page`` differs from the last one seen, starts the count afresh.
Once per episode: it fires when the count reaches ``min_reversals`` and stays quiet
while the reversals keep coming; when they thin out below it, it is armed again.

>>> detector = ExcessiveScroll()
>>> state = {}
>>> ys = [0, 800, 300, 900, 200, 1000, 100, 700, 150]
>>> scrolls = [{"session_id": "s", "type": "scroll", "ts": i * 1000, "y": y, "page": "/c/bags"}
...            for i, y in enumerate(ys)]
>>> [i for i, e in enumerate(scrolls) if detector.step(state, e)]
[7]
>>> [detector.step({}, dict(e, y=e["y"] % 40)) for e in scrolls]  # jitter: < 100 px
[None, None, None, None, None, None, None, None, None]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal, rising_edge
from detectors.config import setting
from detectors.events import Event, url_path

MAX_PATH = 200


@dataclass
class ExcessiveScroll(DetectorSettings):
    name: ClassVar[str] = "excessive_scroll"
    types: ClassVar[frozenset[str]] = frozenset({"page_view", "scroll"})
    section_doc: ClassVar[str] = "Up and down the same page, again and again."

    min_reversals: int = setting(6, low=2, high=100,
                                 doc="changes of scroll direction on one page...")
    window_ms: int = setting(30_000, low=1000, high=3_600_000, doc="...within this window")
    min_travel_px: float = setting(100, low=0, high=100_000,
                                   doc="smaller moves are jitter, not reversals")

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        kind = event["type"]
        if kind == "page_view":
            state.clear()
            state["page"] = url_path(str(event["page"]), MAX_PATH)
            return None
        if kind != "scroll":
            return None
        page = event.get("page")
        if isinstance(page, str) and url_path(page, MAX_PATH) != state.get("page"):
            state.clear()
            state["page"] = url_path(page, MAX_PATH)
        ts, y = event["ts"], event["y"]
        turns = [t for t in state.get("turns", []) if 0 <= ts - t <= self.window_ms]
        direction = state.get("dir", 0)  # of the current run: 1 down, -1 up, 0 not yet
        extreme = state.get("ext", y)  # furthest point of the current run (start if none)
        if direction:
            extreme = max(extreme, y) if direction > 0 else min(extreme, y)
        travel = y - extreme  # away from the run's furthest point (or from the start)
        if travel and abs(travel) >= self.min_travel_px:
            if direction:  # the run turned, and went far enough to mean it
                turns.append(ts)
            direction, extreme = (1 if travel > 0 else -1), y
        state.update(dir=direction, ext=extreme, turns=turns[-self.min_reversals :])
        if not rising_edge(state, len(state["turns"]) >= self.min_reversals):
            return None
        return Signal(
            self.name,
            strength=0.5,
            ts=ts,
            evidence={
                "reversals": len(state["turns"]),
                "span_ms": ts - state["turns"][0],
                "page": state.get("page") or "/",
            },
        )
