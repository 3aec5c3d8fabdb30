"""Per-session state and the engine that steps it, one event at a time.

``Engine.step(state, event)`` is the whole of the domain: update what the session
remembers, run every detector on the event, let the policy decide. The stream
processor and ``frictionwatch replay`` both call it, so they cannot disagree.

>>> engine = Engine.from_config()
>>> state = SessionState("s1")
>>> fail = {"session_id": "s1", "type": "checkout_failed", "ts": 0, "reason": "declined",
...         "code": "card_declined"}
>>> [getattr(engine.step(state, dict(fail, ts=t)).decision, "kind", None) for t in (1, 2, 3)]
[None, 'nudge', 'handoff']
>>> state.checkout["failures"], SessionState.from_json(state.to_json()) == state
(3, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors import registry
from detectors.base import Detector, Signal
from detectors.events import KNOWN_TYPES, Event
from detectors.policy import Decision, Policy

# Bounds on what a session remembers, so state size does not grow with its length.
MAX_PAGES = 12
MAX_ERRORS = 8
MAX_SIGNALS = 12
MAX_SEEN_IDS = 64
MAX_TEXT = 200


def _path(url: str) -> str:
    """A page or URL reduced to its path: query strings and fragments carry PII."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path[:MAX_TEXT] or "/"


def _push(items: list[Any], item: Any, bound: int) -> None:
    items.append(item)
    del items[:-bound]


@dataclass(slots=True)
class SessionState:
    """What one session remembers; JSON all the way down, bounded in size."""

    session_id: str
    seq: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    pages: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    checkout: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> SessionState:
        return cls(**orjson.loads(raw))

    def remember(self, event: Event) -> None:
        """Fold one event into the session summary a human agent will read."""
        kind, ts = event["type"], event["ts"]
        self.seq += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        # Unknown type names are free strings: one shared key keeps the state bounded.
        counted = kind if kind in KNOWN_TYPES else "other"
        self.counts[counted] = self.counts.get(counted, 0) + 1
        if kind == "page_view":
            _push(self.pages, _path(event["page"]), MAX_PAGES)
        elif kind == "checkout_attempt":
            self.checkout["attempts"] = self.checkout.get("attempts", 0) + 1
            if event.get("step") is not None:
                self.checkout["step"] = event["step"]
        elif kind == "checkout_failed":
            self.checkout["failures"] = self.checkout.get("failures", 0) + 1
            for key in ("reason", "code"):
                if event.get(key) is not None:
                    seen = self.checkout.setdefault(key + "s", [])
                    if event[key] not in seen:
                        _push(seen, event[key], MAX_ERRORS)
        elif kind == "purchase":
            self.checkout["purchased"] = True
        elif kind in ("js_error", "http_error", "form_error"):
            error = {"type": kind, "ts": ts, "page": _path(event.get("page") or "")}
            if kind == "http_error":
                error.update(url=_path(event["url"]), status=event["status"])
            elif kind == "form_error":
                error["field"] = event["field"]
            else:
                error["message"] = event["message"][:MAX_TEXT]
            _push(self.errors, error, MAX_ERRORS)

    def context(self) -> dict[str, Any]:
        """The handoff summary: enough for a person to help without asking again.

        Paths only (no query strings), no user id, no typed values, no click text.
        """
        failures = self.checkout.get("failures", 0)
        parts = []
        if failures:
            codes = ", ".join(str(c) for c in self.checkout.get("codes", []))
            parts.append(f"{failures} failed payment(s)" + (f" ({codes})" if codes else ""))
        detectors = sorted({s["detector"] for s in self.signals} - {"checkout_failure"})
        if detectors:
            parts.append("signals: " + ", ".join(detectors))
        if self.errors:
            parts.append(f"{len(self.errors)} recent error(s)")
        return {
            "summary": "; ".join(parts) or "customer asked for help",
            "current_page": self.pages[-1] if self.pages else None,
            "pages": list(self.pages),
            "checkout": dict(self.checkout),
            "errors": list(self.errors),
            "signals": list(self.signals),
            "events_seen": self.seq,
            "duration_s": ((self.last_ts or 0) - (self.first_ts or 0)) / 1000,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event produced; ``records()`` are the output lines, in order."""

    session_id: str
    signals: tuple[Signal, ...] = ()
    decision: Decision | None = None
    context: dict[str, Any] | None = None
    duplicate: bool = False

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"kind": "signal", "session_id": self.session_id, "ts": s.ts, **s.as_dict()}
            for s in self.signals
        ]
        if self.decision is not None:
            out.append(self.intervention())
        return out

    def intervention(self) -> dict[str, Any]:
        """The record published on ``frictionwatch.interventions``."""
        d = self.decision
        assert d is not None
        record: dict[str, Any] = {
            "intervention_id": d.intervention_id,
            "session_id": self.session_id,
            "kind": d.kind,
            "ts": d.ts,
            "reasons": [s.as_dict() for s in d.reasons],
            "message": d.message,
            "risk": d.risk,
            "delivered": d.delivered,
        }
        if self.context is not None:
            record["context"] = self.context
        return record


class Engine:
    """Detectors and policy, applied to a session's events in order."""

    def __init__(self, detectors: Sequence[Detector], policy: Policy) -> None:
        self.detectors = tuple(detectors)
        self.policy = policy

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> Engine:
        """Build from a config mapping: detector sections plus an optional ``policy``."""
        config = dict(config or {})
        policy = Policy.from_config(config.pop("policy", {}))
        return cls(registry.build(config), policy)

    def step(self, state: SessionState, event: Event) -> Outcome:
        event_id = event.get("event_id")
        if event_id is not None:
            # Beacons are retried; the same event must not count twice.
            if event_id in state.seen_ids:
                return Outcome(state.session_id, duplicate=True)
            _push(state.seen_ids, event_id, MAX_SEEN_IDS)
        state.remember(event)
        signals = []
        for detector in self.detectors:
            signal = detector.step(state.detectors.setdefault(detector.name, {}), event)
            if signal is not None:
                signals.append(signal)
                _push(state.signals, {"ts": signal.ts, **signal.as_dict()}, MAX_SIGNALS)
        if not signals:
            return Outcome(state.session_id)
        decision = self.policy.decide(state.policy, state.session_id, state.seq, signals)
        context = state.context() if decision and decision.kind == "handoff" else None
        return Outcome(state.session_id, tuple(signals), decision, context)
