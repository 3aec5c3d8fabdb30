"""Dead click: a click the page did not visibly react to.

The SDK measures ``reaction_ms``, the time until the first visible change after the
click; absent or null means nothing happened before it gave up. Threshold 2500 ms as
PostHog's DOM-mutation window (configurable: ``threshold_ms``). One dead click is weak
evidence (people click on text); the strength grows with repeats on the same target,
so a button that is really broken stands out.

Never a candidate, because nothing on the page is *supposed* to change (the
complaints other tools get; Sentry and Datadog skip the same targets):

- links that open a new tab or start a download: ``[target=_blank]`` or a
  ``[download]`` attribute in the selector (on the element or an ancestor), or the
  optional click fields ``opens_new_tab: true`` / ``download: true``;
- form controls: file pickers (``input[type=file]``: the native dialog is outside the
  page), text inputs, checkboxes and other non-button inputs, ``select``, ``textarea``,
  contenteditable (see :func:`detectors.clicks.is_form_control`);
- any target matching one of ``ignore_selectors`` (case-insensitive substring of the
  selector, as in rage_click).

A skipped click leaves the repeat count as it was.

>>> detector = DeadClick()
>>> state = {}
>>> click = {"session_id": "s", "type": "click", "ts": 0, "x": 1, "y": 1, "target": "#pay"}
>>> detector.step(state, dict(click, reaction_ms=120)) is None
True
>>> detector.step(state, click).strength
0.35
>>> detector.step(state, dict(click, ts=4000, reaction_ms=3000)).evidence
{'target': '#pay', 'reaction_ms': 3000, 'repeats': 2}
>>> detector.step(state, dict(click, target="a.terms[target=_blank]")) is None
True
>>> DeadClick(ignore_selectors=["#pay"]).step({}, click) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.clicks import is_form_control, matches_any, opens_elsewhere
from detectors.config import setting
from detectors.events import Event


@dataclass
class DeadClick(DetectorSettings):
    name: ClassVar[str] = "dead_click"
    types: ClassVar[frozenset[str]] = frozenset({"click"})
    section_doc: ClassVar[str] = "A click the page did not visibly react to."

    threshold_ms: int = setting(
        2500, low=1, high=600_000,
        doc="no visible reaction within this long is dead (PostHog's DOM-mutation window)")
    strength_per_repeat: float = setting(0.35, low=0.01, high=1,
                                         doc="repeats on the same target add up")
    ignore_selectors: Sequence[str] = setting(
        (), doc="targets never counted: a case-insensitive substring of the click's selector")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ignore_selectors = tuple(self.ignore_selectors)

    def ignored(self, event: Event) -> bool:
        """A click that shows no reaction on purpose: new tab, download, form control."""
        target = event["target"]
        return (
            opens_elsewhere(event)
            or is_form_control(target)
            or matches_any(target, self.ignore_selectors)
        )

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "click":
            return None
        reaction = event.get("reaction_ms")
        if reaction is not None and reaction < self.threshold_ms:
            return None
        if self.ignored(event):
            return None
        target = event["target"]
        repeats = state["repeats"] + 1 if state.get("target") == target else 1
        state.update(target=target, repeats=repeats)
        return Signal(
            self.name,
            strength=min(1.0, round(self.strength_per_repeat * repeats, 4)),
            ts=event["ts"],
            evidence={"target": target, "reaction_ms": reaction, "repeats": repeats},
        )
