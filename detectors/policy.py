"""From signals to what the customer sees: nothing, a nudge, or a human.

Each session carries a friction score: the sum of its signals' strengths (times a
per-detector weight), each decaying with event time (half-life ``half_life_ms``), so
three small problems in a minute count more than three spread over an hour. Rules:

1. A ``help_request`` is always honoured with a handoff: no cooldown, no cap, and
   never held out (rule 6) nor second-guessed (rule 7).
2. After a handoff nothing else is sent: escalation only goes up.
3. A signal asking for a handoff (e.g. the third failed payment) gets one.
4. A nudge that did not help escalates: once a session was nudged, a score reaching
   ``handoff_threshold`` hands it to a human.
5. Otherwise a score reaching ``nudge_threshold`` nudges, at most once per
   ``cooldown_ms`` of event time, and a session gets at most ``max_interventions``.
6. A ``holdout_share`` of sessions (by a hash of the session id, so the same session
   is always in or out) is decided for but never shown: ``delivered`` is false. Their
   policy state moves exactly as if shown, so treated and holdout stay comparable.
7. An ``uplift_share`` of sessions (by another hash of the session id: the
   "targeted" arm; the others are the "rules" arm) let an uplift model choose what to
   do wherever the rules would intervene: nothing, a nudge or a handoff (the
   ``target`` callback of :meth:`Policy.decide`, which the engine passes once its
   model has learned enough). Guard rails never move: a help request, or a signal
   asking for a handoff (repeated failed payments), gets the handoff whatever the
   model says, and the caps (cooldown, ``max_interventions``, nothing after a
   handoff) hold for whatever it chooses. ``handoff_cost`` is what a person's time
   costs, in conversion probability: a handoff must gain that much more.

>>> from detectors.base import Signal
>>> policy = Policy()
>>> state = {}
>>> nudge = policy.decide(state, "s1", 7, [Signal("rage_click", 0.7, ts=1000)])
>>> nudge.kind, nudge.delivered
('nudge', True)
>>> policy.decide(state, "s1", 8, [Signal("dead_click", 0.35, ts=2000)]) is None  # cooldown
True
>>> policy.decide(state, "s1", 9, [Signal("rage_click", 0.7, ts=3000)]).kind  # escalation
'handoff'
>>> policy.decide(state, "s1", 10, [Signal("rage_click", 0.9, ts=99000)]) is None  # handed off
True

In the targeted arm the rules propose and the target disposes (here: never a nudge):

>>> targeted = Policy(uplift_share=1.0)
>>> targeted.arm("s2"), Policy().arm("s2")
('targeted', 'rules')
>>> asked = []
>>> def target(allowed, kind):
...     asked.append((allowed, kind))
...     return None
>>> state = {}
>>> targeted.decide(state, "s2", 1, [Signal("rage_click", 0.7, ts=1000)], target=target) is None
True
>>> asked, state.get("interventions", 0)
([(('nudge', 'handoff'), 'nudge')], 0)
>>> targeted.decide(state, "s2", 2, [Signal("help_request", 1.0, ts=2000, action="handoff")],
...                 target=target).kind  # a guard rail: the target is not asked
'handoff'
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import Action, Signal
from detectors.config import build, check, setting
from detectors.errors import ConfigError

DEFAULT_MESSAGES: Mapping[str, str] = {
    "rage_click": "That doesn't seem to be working. Can we help you another way?",
    "dead_click": "Nothing happening? Here is another way to get there, or talk to a person.",
    "checkout_failure": "Your payment didn't go through. Try another payment method, "
    "or talk to a person who can finish it with you.",
    "error_click": "Something went wrong on our side. Try again, or talk to a person.",
    "form_struggle": "Having trouble with this form? Here is what each field needs, "
    "or a person can fill it in with you.",
    "navigation_loop": "Can't find what you're looking for? Search, or ask a person.",
    "search_struggle": "No luck with search? Browse our categories, or ask a person.",
    "http_error_burst": "We're having a technical problem. Your cart is saved; "
    "a person can help you finish.",
    "excessive_scroll": "Looking for something on this page? Ask us.",
    "handoff": "We're connecting you with a person who can already see what went wrong: "
    "no need to explain it again.",
    "default": "Having trouble? We can help.",
}


def decayed(score: float, from_ts: int | None, to_ts: int | None, half_life_ms: float) -> float:
    """``score`` as it was at ``from_ts``, seen at ``to_ts``: halved every ``half_life_ms``.

    Event time only moves forward here: a ``to_ts`` at or before ``from_ts`` (or either
    unknown) leaves the score as it is, so a late event never makes friction grow back.

    >>> decayed(1.0, 0, 120_000, 120_000), decayed(1.0, 5_000, 1_000, 120_000)
    (0.5, 1.0)
    """
    if from_ts is None or to_ts is None or to_ts <= from_ts:
        return score
    return score * float(0.5 ** ((to_ts - from_ts) / half_life_ms))


#: How much a high-risk session lowers the nudge and handoff thresholds.
HIGH_RISK_NUDGE = 0.5
HIGH_RISK_HANDOFF = 0.75


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one event; ``reasons`` are the signals behind it.

    ``risk`` is the friction score scaled to 0..1 (score / handoff_threshold).
    """

    kind: Action
    intervention_id: str
    ts: int
    reasons: tuple[Signal, ...]
    message: str
    risk: float
    delivered: bool
    score: float
    #: The message's key in ``Policy.messages`` and which of its variants was chosen.
    message_key: str = "default"
    variant: int = 0


def in_holdout(session_id: str, share: float) -> bool:
    """Deterministic assignment: the same session is always in or always out.

    >>> in_holdout("abc", 0.0), in_holdout("abc", 1.0)
    (False, True)
    """
    digest = hashlib.blake2b(session_id.encode(), digest_size=8, person=b"fw-holdout").digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def in_targeted(session_id: str, share: float) -> bool:
    """Is the session in the uplift-targeted arm? A hash independent of the holdout's,
    so each arm has its own holdout.

    >>> in_targeted("abc", 0.0), in_targeted("abc", 1.0)
    (False, True)
    """
    digest = hashlib.blake2b(session_id.encode(), digest_size=8, person=b"fw-uplift").digest()
    return int.from_bytes(digest, "big") / 2**64 < share


#: Asked where the rules would intervene in the targeted arm: ``target(allowed, kind)``
#: with the actions the caps allow now and the rules' own choice; returns the action
#: to take, or None for nothing.
Target = Callable[[tuple[Action, ...], Action], Action | None]


def intervention_id(session_id: str, seq: int, kind: str) -> str:
    """Same session, same event position, same kind -> same id, on every replay."""
    raw = f"{session_id}\x1f{seq}\x1f{kind}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@dataclass(frozen=True)
class Policy:
    section: ClassVar[str] = "policy"
    section_doc: ClassVar[str] = (
        "What a session's friction earns: nothing, a nudge, or a human. Signals add to a\n"
        "friction score that decays with event time."
    )

    cooldown_ms: int = setting(60_000, low=0, high=86_400_000, doc="between nudges, per session")
    max_interventions: int = setting(
        3, low=1, high=1000, doc="per session (a help request is honoured past it)")
    nudge_threshold: float = setting(0.5, low=0, high=100,
                                     doc="friction score that earns a nudge")
    handoff_threshold: float = setting(
        1.5, low=0, high=100,
        doc="score that escalates a nudged session to a human (>= nudge_threshold)")
    half_life_ms: int = setting(120_000, low=1, high=86_400_000,
                                doc="signals' weight halves every this often")
    holdout_share: float = setting(0.0, low=0, high=1,
                                   doc="sessions decided for but never shown")
    #: detector (or "handoff"/"default") -> message, or a list of variants to choose from.
    messages: Mapping[str, str | Sequence[str]] = setting(
        dict(DEFAULT_MESSAGES),
        doc='detector (or "handoff" / "default") = "text", or a list of variants for the bandit')
    weights: Mapping[str, float] = setting(
        {}, low=0, high=10,
        doc="detector = weight, 1.0 when not named; e.g. { anomalous_session = 0.5 }")
    #: With a risk model, a session at or above this risk gets lower thresholds.
    high_risk: float = setting(
        0.7, low=0, high=1,
        doc=f"risk at which thresholds drop (nudge x{HIGH_RISK_NUDGE}, handoff x{HIGH_RISK_HANDOFF})")
    uplift_share: float = setting(
        0.0, low=0, high=1,
        doc="sessions (by a hash of the id) where the uplift model chooses, once it has learned "
            "[model] uplift_warmup outcomes; the rest keep the rules (the comparison arm)")
    handoff_cost: float = setting(
        0.02, low=0, high=1,
        doc="conversion probability a handoff must gain beyond a nudge or nothing to be chosen "
            "by the uplift model (a person's time)")

    def __post_init__(self) -> None:
        check(self)
        if self.handoff_threshold < self.nudge_threshold:
            raise ConfigError(
                f"policy.handoff_threshold = {self.handoff_threshold} must be >= "
                f"policy.nudge_threshold = {self.nudge_threshold}"
            )
        for key, text in self.messages.items():
            texts = [text] if isinstance(text, str) else text
            if (
                not isinstance(texts, Sequence)
                or not texts
                or not all(isinstance(t, str) and t.strip() for t in texts)
            ):
                raise ConfigError(
                    f"policy.messages.{key} must be a non-empty string or list of them"
                )
        merged = {**DEFAULT_MESSAGES, **self.messages}
        object.__setattr__(
            self, "messages", {k: [v] if isinstance(v, str) else list(v) for k, v in merged.items()}
        )
        object.__setattr__(self, "weights", dict(self.weights))

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> Policy:
        """Build from the ``[policy]`` table; unknown keys are errors, not ignored."""
        policy: Policy = build(cls, section)
        return policy

    def _score(self, state: dict[str, Any], signals: Sequence[Signal]) -> float:
        score, at = state.get("score", 0.0), state.get("score_ts")
        for s in sorted(signals, key=lambda s: s.ts):
            score = decayed(score, at, s.ts, self.half_life_ms)
            at = s.ts if at is None else max(at, s.ts)
            score += self.weights.get(s.detector, 1.0) * s.strength
        state.update(score=round(score, 6), score_ts=at)
        return float(score)

    def arm(self, session_id: str) -> str:
        """"targeted" (the uplift model may choose) or "rules"."""
        return "targeted" if in_targeted(session_id, self.uplift_share) else "rules"

    def is_open(self, state: dict[str, Any]) -> bool:
        """Could anything but a help request still reach this session?"""
        return not state.get("handed_off") and state.get("interventions", 0) < self.max_interventions

    def could_tip(self, state: dict[str, Any], ts: int, extra: float) -> bool:
        """Could ``extra`` score at ``ts`` reach the lowest nudge threshold there is?"""
        score = decayed(state.get("score", 0.0), state.get("score_ts"), ts, self.half_life_ms)
        return bool(score + extra >= self.nudge_threshold * HIGH_RISK_NUDGE)

    def variants(self, key: str) -> list[str]:
        return list(self.messages.get(key) or self.messages["default"])

    def decide(
        self,
        state: dict[str, Any],
        session_id: str,
        seq: int,
        signals: Sequence[Signal],
        risk: float | None = None,
        *,
        target: Target | None = None,
    ) -> Decision | None:
        """Decide for the event at position ``seq``; ``state`` is the policy's own slice.

        ``risk`` (P(abandon) from a model, if one runs) lowers the thresholds for a
        session at or above ``high_risk``: the same friction escalates sooner there.
        ``target`` (see :data:`Target`) chooses instead of the rules for a session in
        the targeted arm, except at a guard rail.
        """
        if not signals:
            return None
        ts = max(s.ts for s in signals)
        score = self._score(state, signals)
        asked = any(s.detector == "help_request" for s in signals)
        if state.get("handed_off") and not asked:
            return None
        given = state.get("interventions", 0)
        if given >= self.max_interventions and not asked:
            return None
        urgent = risk is not None and risk >= self.high_risk
        nudge_at = self.nudge_threshold * (HIGH_RISK_NUDGE if urgent else 1.0)
        handoff_at = self.handoff_threshold * (HIGH_RISK_HANDOFF if urgent else 1.0)
        guarded = asked or any(s.action == "handoff" for s in signals)
        cooling = ts - state.get("last_ts", -self.cooldown_ms - 1) < self.cooldown_ms
        if guarded or (state.get("nudged") and score >= handoff_at):
            kind: Action = "handoff"
        elif score < nudge_at or cooling:
            return None
        else:
            kind = "nudge"
        if target is not None and not guarded and in_targeted(session_id, self.uplift_share):
            chosen = target(("handoff",) if cooling else ("nudge", "handoff"), kind)
            if chosen is None:
                return None
            kind = chosen
        state.update(interventions=given + 1, last_ts=ts, last_kind=kind)
        state["handed_off" if kind == "handoff" else "nudged"] = True
        strongest = max(signals, key=lambda s: s.strength)
        message_key = "handoff" if kind == "handoff" else strongest.detector
        return Decision(
            kind=kind,
            intervention_id=intervention_id(session_id, seq, kind),
            ts=ts,
            reasons=tuple(sorted(signals, key=lambda s: -s.strength)),
            message=self.variants(message_key)[0],
            risk=round(min(1.0, score / self.handoff_threshold) if risk is None else risk, 4),
            delivered=asked or not in_holdout(session_id, self.holdout_share),
            score=round(score, 4),
            message_key=message_key if message_key in self.messages else "default",
        )
