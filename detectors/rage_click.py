"""Rage click: a burst of quick clicks on one spot.

Same rule as PostHog's autocapture: a click extends the run when it is within
``max_distance_px`` (Manhattan) of the previous click and within ``max_interval_ms``
after it; the detector fires once, when the run reaches ``min_clicks``, and stays
quiet until the run breaks. A double-click never fires.

Suppressed, as PostHog and Datadog do, because users complain about them: a click
on one of these is ignored and ends any run (it neither counts nor bridges a gap):

- number steppers and pagination/carousel controls: the click ``text``, trimmed and
  case-insensitive, is one of ``ignore_texts`` (default ``+ - − – < > ‹ › next prev
  previous``, PostHog's list);
- triple-click text selection: the target is a text-like input, a textarea or
  contenteditable (see :func:`detectors.clicks.is_text_entry`);
- any target matching one of ``ignore_selectors``: a case-insensitive substring of
  the selector, so an exact selector, its prefix or a class such as ``.carousel``
  (which also covers ``div.carousel > button``) all work.

>>> detector = RageClick()
>>> state = {}
>>> clicks = [{"session_id": "s", "type": "click", "ts": t, "x": 100 + t // 100, "y": 50,
...            "target": "#pay"} for t in (0, 300, 600, 900)]
>>> [detector.step(state, c) is not None for c in clicks]
[False, False, True, False]
>>> detector.step({}, clicks[0]) is None  # a fresh session starts a new run
True
>>> stepper = [dict(c, target="button.qty", text=" + ") for c in clicks]
>>> [detector.step({}, c) for c in stepper]  # a quantity stepper is not rage
[None, None, None, None]
>>> RageClick(ignore_selectors=".qty")
Traceback (most recent call last):
...
detectors.errors.ConfigError: rage_click.ignore_selectors = '.qty' must be a list of strings
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.clicks import is_text_entry, matches_any
from detectors.config import setting
from detectors.events import Event

#: Click texts of steppers, pagination and carousels (PostHog's rage-click ignore list).
DEFAULT_IGNORE_TEXTS: tuple[str, ...] = (
    "+", "-", "−", "–", "<", ">", "‹", "›", "next", "prev", "previous",
)


@dataclass
class RageClick(DetectorSettings):
    name: ClassVar[str] = "rage_click"
    types: ClassVar[frozenset[str]] = frozenset({"click"})
    section_doc: ClassVar[str] = (
        "A run of quick clicks on one spot: PostHog's rule (min_clicks, each within\n"
        "max_interval_ms and max_distance_px of the previous)."
    )

    min_clicks: int = setting(3, low=2, high=100, doc="clicks in a run that make it rage")
    max_interval_ms: int = setting(1000, low=1, high=60_000,
                                   doc="most time between two clicks of a run")
    max_distance_px: float = setting(30, low=0, high=10_000,
                                     doc="most distance (Manhattan) between two clicks of a run")
    ignore_texts: Sequence[str] = setting(
        DEFAULT_IGNORE_TEXTS,
        doc="click text that marks steppers, pagination and carousels (case-insensitive, trimmed)")
    ignore_selectors: Sequence[str] = setting(
        (), doc="targets never counted: a case-insensitive substring of the click's selector")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ignore_texts = tuple(t.strip().casefold() for t in self.ignore_texts)
        self.ignore_selectors = tuple(self.ignore_selectors)

    def ignored(self, event: Event) -> bool:
        """A click that looks like rage but is not: stepper, pager, text selection, config."""
        text = event.get("text")
        if isinstance(text, str) and text.strip().casefold() in self.ignore_texts:
            return True
        target = event["target"]
        return is_text_entry(target) or matches_any(target, self.ignore_selectors)

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "click":
            return None
        if self.ignored(event):
            state.clear()
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
        return Signal(
            self.name,
            strength=0.7,
            ts=ts,
            evidence={"target": event["target"], "clicks": run, "span_ms": ts - state["start"]},
        )
