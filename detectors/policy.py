"""From signals to what the customer sees: nothing, a nudge, or a human.

Rules, in order:

1. A ``help_request`` is always honoured with a handoff: no cooldown, no cap.
2. After a handoff nothing else is sent: escalation only goes up.
3. A signal asking for a handoff gets one; otherwise the strongest signal must reach
   ``nudge_threshold`` to nudge.
4. Nudges keep ``cooldown_ms`` of event time from the previous intervention, and a
   session gets at most ``max_interventions``.
5. A ``holdout_share`` of sessions (by a hash of the session id, so the same session
   is always in or out) is decided for but never shown: ``delivered`` is false.

>>> from detectors.base import Signal
>>> policy = Policy()
>>> state = {}
>>> nudge = policy.decide(state, "s1", 7, [Signal("rage_click", 0.7, ts=1000)])
>>> nudge.kind, nudge.delivered
('nudge', True)
>>> policy.decide(state, "s1", 8, [Signal("rage_click", 0.7, ts=2000)]) is None  # cooldown
True
>>> policy.decide(state, "s1", 9, [Signal("help_request", 1.0, ts=3000, action="handoff")]).kind
'handoff'
>>> policy.decide(state, "s1", 10, [Signal("rage_click", 0.9, ts=99000)]) is None  # escalated
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Action, Signal, require
from detectors.errors import ConfigError

DEFAULT_MESSAGES: Mapping[str, str] = {
    "rage_click": "That doesn't seem to be working. Can we help you another way?",
    "dead_click": "Nothing happening? Here is another way to get there, or talk to a person.",
    "checkout_failure": "Your payment didn't go through. Try another payment method, "
    "or talk to a person who can finish it with you.",
    "handoff": "We're connecting you with a person who can already see what went wrong: "
    "no need to explain it again.",
    "default": "Having trouble? We can help.",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one event; ``reasons`` are the signals behind it."""

    kind: Action
    intervention_id: str
    ts: int
    reasons: tuple[Signal, ...]
    message: str
    risk: float
    delivered: bool


def in_holdout(session_id: str, share: float) -> bool:
    """Deterministic assignment: the same session is always in or always out.

    >>> in_holdout("abc", 0.0), in_holdout("abc", 1.0)
    (False, True)
    """
    digest = hashlib.blake2b(session_id.encode(), digest_size=8, person=b"fw-holdout").digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def intervention_id(session_id: str, seq: int, kind: str) -> str:
    """Same session, same event position, same kind -> same id, on every replay."""
    raw = f"{session_id}\x1f{seq}\x1f{kind}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@dataclass(frozen=True)
class Policy:
    cooldown_ms: int = 60_000
    max_interventions: int = 3
    nudge_threshold: float = 0.5
    holdout_share: float = 0.0
    messages: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MESSAGES))

    def __post_init__(self) -> None:
        require("policy.cooldown_ms", self.cooldown_ms, 0, 86_400_000)
        require("policy.max_interventions", self.max_interventions, 1, 1000)
        require("policy.nudge_threshold", self.nudge_threshold, 0, 1)
        require("policy.holdout_share", self.holdout_share, 0, 1)
        for key, text in self.messages.items():
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"policy.messages.{key} must be a non-empty string")
        object.__setattr__(self, "messages", {**DEFAULT_MESSAGES, **self.messages})

    def decide(
        self, state: dict[str, Any], session_id: str, seq: int, signals: Sequence[Signal]
    ) -> Decision | None:
        """Decide for the event at position ``seq``; ``state`` is the policy's own slice."""
        if not signals:
            return None
        ts = max(s.ts for s in signals)
        asked = any(s.detector == "help_request" for s in signals)
        if state.get("handed_off") and not asked:
            return None
        given = state.get("interventions", 0)
        if given >= self.max_interventions and not asked:
            return None
        strongest = max(signals, key=lambda s: s.strength)
        if asked or any(s.action == "handoff" for s in signals):
            kind: Action = "handoff"
        elif strongest.strength < self.nudge_threshold:
            return None
        elif ts - state.get("last_ts", -self.cooldown_ms - 1) < self.cooldown_ms:
            return None
        else:
            kind = "nudge"
        state.update(interventions=given + 1, last_ts=ts, last_kind=kind)
        if kind == "handoff":
            state["handed_off"] = True
        message_key = "handoff" if kind == "handoff" else strongest.detector
        return Decision(
            kind=kind,
            intervention_id=intervention_id(session_id, seq, kind),
            ts=ts,
            reasons=tuple(sorted(signals, key=lambda s: -s.strength)),
            message=self.messages.get(message_key, self.messages["default"]),
            risk=strongest.strength,
            delivered=not in_holdout(session_id, self.holdout_share),
        )
