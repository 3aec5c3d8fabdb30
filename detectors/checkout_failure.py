"""Checkout failure: the customer keeps trying to pay and keeps failing.

Counts ``checkout_failed`` events in the session (a ``purchase`` resets the count): at
``nudge_after`` failures it asks for a nudge, from ``handoff_after`` on for a human.
Every failure past the first threshold signals again; the policy's cooldown and
escalation decide what reaches the customer.

>>> detector = CheckoutFailure()
>>> state = {}
>>> fail = {"session_id": "s", "type": "checkout_failed", "ts": 0, "reason": "declined"}
>>> [getattr(detector.step(state, dict(fail, ts=t)), "action", None) for t in (1, 2, 3)]
[None, 'nudge', 'handoff']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.config import setting
from detectors.errors import ConfigError
from detectors.events import Event


@dataclass
class CheckoutFailure(DetectorSettings):
    name: ClassVar[str] = "checkout_failure"
    types: ClassVar[frozenset[str]] = frozenset({"purchase", "checkout_failed"})
    section_doc: ClassVar[str] = "The customer keeps trying to pay and keeps failing."

    nudge_after: int = setting(2, low=1, high=100, doc="failed payments before a nudge")
    handoff_after: int = setting(
        3, low=1, high=100, doc="...and before a human takes over (>= nudge_after)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.handoff_after < self.nudge_after:
            raise ConfigError(
                f"checkout_failure.handoff_after = {self.handoff_after} must be >= "
                f"checkout_failure.nudge_after = {self.nudge_after}"
            )

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        kind = event["type"]
        if kind == "purchase":
            state["failures"] = 0
            return None
        if kind != "checkout_failed":
            return None
        failures = state["failures"] = state.get("failures", 0) + 1
        if failures < self.nudge_after:
            return None
        handoff = failures >= self.handoff_after
        return Signal(
            self.name,
            strength=1.0 if handoff else round(failures / self.handoff_after, 4),
            ts=event["ts"],
            action="handoff" if handoff else "nudge",
            evidence={"failures": failures, "reason": event.get("reason"), "code": event.get("code")},
        )
