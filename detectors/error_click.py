"""Error click: a click whose action raised a JavaScript error.

Same idea as Datadog RUM's and FullStory's error clicks: a ``js_error`` within
``max_delay_ms`` (default 1000 ms) after a click is taken to be that click's error.
Errors long after any click (a third-party script failing on load, a timer) are not:
the customer did nothing that failed. One click fires at most once however many
errors it throws; the strength grows when the same target fails again (0.6, 0.8,
1.0), as dead_click's does, because a button that keeps breaking is sure friction.

>>> detector = ErrorClick()
>>> state = {}
>>> click = {"session_id": "s", "type": "click", "ts": 0, "x": 1, "y": 1, "target": "#pay"}
>>> error = {"session_id": "s", "type": "js_error", "ts": 300, "message": "TypeError: x"}
>>> [detector.step(state, e) for e in (click, error, dict(error, ts=400))][1].evidence
{'target': '#pay', 'delay_ms': 300, 'message': 'TypeError: x', 'repeats': 1}
>>> detector.step(state, dict(error, ts=5000)) is None  # no click just before
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.config import setting
from detectors.events import Event

MAX_TEXT = 200


@dataclass
class ErrorClick(DetectorSettings):
    name: ClassVar[str] = "error_click"
    types: ClassVar[frozenset[str]] = frozenset({"click", "js_error"})
    section_doc: ClassVar[str] = "A click whose action raised a JavaScript error."

    max_delay_ms: int = setting(1000, low=1, high=60_000,
                                doc="a js_error this soon after a click is that click's")
    strength: float = setting(0.6, low=0.01, high=1,
                              doc="of the first error on a target; +0.2 each time it fails again")

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        kind = event["type"]
        if kind == "click":
            state.update(click_ts=event["ts"], target=event["target"][:MAX_TEXT], open=True)
            return None
        if kind != "js_error" or not state.get("open"):
            return None
        delay = event["ts"] - state["click_ts"]
        if not 0 <= delay <= self.max_delay_ms:
            return None
        target = state["target"]
        repeats = state["repeats"] + 1 if state.get("failed") == target else 1
        state.update(open=False, failed=target, repeats=repeats)
        return Signal(
            self.name,
            strength=min(1.0, round(self.strength + 0.2 * (repeats - 1), 4)),
            ts=event["ts"],
            evidence={
                "target": target,
                "delay_ms": delay,
                "message": event["message"][:MAX_TEXT],
                "repeats": repeats,
            },
        )
