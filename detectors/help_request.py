"""Help request: the customer asked for a human, so they get one.

No threshold and no cooldown can hold this back; the policy honours it even past the
intervention cap.

>>> HelpRequest().step({}, {"session_id": "s", "type": "help_request", "ts": 3,
...                         "channel": "chat"}).action
'handoff'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.events import Event


@dataclass
class HelpRequest(DetectorSettings):
    name: ClassVar[str] = "help_request"
    types: ClassVar[frozenset[str]] = frozenset({"help_request"})
    section_doc: ClassVar[str] = "No settings: a customer who asks for a human always gets one."

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "help_request":
            return None
        return Signal(
            self.name, strength=1.0, ts=event["ts"], action="handoff",
            evidence={"channel": event.get("channel")},
        )
