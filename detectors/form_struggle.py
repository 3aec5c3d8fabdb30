"""Form struggle: the same field keeps failing validation.

Fires when one field has ``min_errors`` (default 3) ``form_error`` events within
``window_ms`` (default 120 s). Stricter than counting every validation error (as
Contentsquare's friction score does per pageview) because one or two typos, fixed at
once, are how everyone fills in forms; the third failure on the same field within two
minutes means the customer cannot work out what the form wants. Errors on different
fields do not add up.

Once per episode: it fires when the field reaches ``min_errors`` and stays quiet
while the errors keep coming; when the field's errors thin out below the threshold
within the window, it is armed again. The field name (not the message, which may
quote what was typed) goes into the evidence. Up to ``MAX_FIELDS`` fields are
remembered, the least recently failing forgotten first.

>>> detector = FormStruggle()
>>> state = {}
>>> error = {"session_id": "s", "type": "form_error", "ts": 0, "field": "postcode"}
>>> [detector.step(state, dict(error, ts=t)) is not None for t in (0, 20_000, 40_000, 50_000)]
[False, False, True, False]
>>> detector.step({}, dict(error, field="email")) is None  # a single typo
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.config import setting
from detectors.events import Event

MAX_FIELDS = 8
MAX_FIELD_CHARS = 100


@dataclass
class FormStruggle(DetectorSettings):
    name: ClassVar[str] = "form_struggle"
    types: ClassVar[frozenset[str]] = frozenset({"form_error"})
    section_doc: ClassVar[str] = "The same field keeps failing validation."

    min_errors: int = setting(3, low=2, high=100,
                              doc="one field failing validation this often...")
    window_ms: int = setting(120_000, low=1000, high=86_400_000, doc="...within this window")

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "form_error":
            return None
        ts = event["ts"]
        name = event["field"][:MAX_FIELD_CHARS]
        fields: dict[str, dict[str, Any]] = state.setdefault("fields", {})
        field = fields.pop(name, None) or {"ts": [], "fired": False}
        fields[name] = field  # most recently failing last
        while len(fields) > MAX_FIELDS:
            del fields[next(iter(fields))]
        recent = [t for t in field["ts"] if 0 <= ts - t <= self.window_ms]
        recent.append(ts)
        field["ts"] = recent[-self.min_errors :]
        if len(field["ts"]) < self.min_errors:
            field["fired"] = False
            return None
        if field["fired"]:
            return None
        field["fired"] = True
        return Signal(
            self.name,
            strength=round(min(1.0, 0.2 * self.min_errors), 4),
            ts=ts,
            evidence={
                "field": name,
                "errors": len(field["ts"]),
                "span_ms": ts - field["ts"][0],
            },
        )
