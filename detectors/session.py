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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from detectors import registry
from detectors.base import Action, Detector, Signal
from detectors.events import KNOWN_TYPES, Event, url_path
from detectors.incidents import IncidentDetector
from detectors.model import Features, Models, features, funnel_stage, learn_outcome, snapshot
from detectors.policy import Decision, Policy, decayed
from detectors.routes import Routes
from detectors.uplift_model import context as uplift_context
from detectors.uplift_model import payment_class

# Bounds on what a session remembers, so state size does not grow with its length.
MAX_PAGES = 12
MAX_ERRORS = 8
MAX_SIGNALS = 12
MAX_SEEN_IDS = 64
MAX_TEXT = 200

#: The names of the nudge variant a session was shown (``state.model["variant"]``).
VARIANT_KEYS: Final = ("message_key", "arm", "intervention_id", "rewarded")


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
    signal_counts: dict[str, int] = field(default_factory=dict)
    #: The models' slice: ``snap`` (the last risk :func:`~detectors.model.snapshot`),
    #: ``result``, ``holdout``, ``flagged``, ``variant`` (the nudge variant shown, a
    #: dict of :data:`VARIANT_KEYS`) and ``uplift`` (the decision the uplift model
    #: learns from: ``keys``, ``action``, ``shown``, ``estimate``).
    model: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> SessionState:
        """Decode a stored state, including one written before the model slice named
        its keys (changelogs keep those): see :func:`_named_model_keys`."""
        data = orjson.loads(raw)
        if data.get("model"):
            _named_model_keys(data["model"])
        return cls(**data)

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
            _push(self.pages, url_path(event["page"]), MAX_PAGES)
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
            error = {"type": kind, "ts": ts, "page": url_path(event.get("page") or "")}
            if kind == "http_error":
                error.update(url=url_path(event["url"]), status=event["status"])
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


def _named_model_keys(model: dict[str, Any]) -> None:
    """Rename, in place, the model slice's keys of states written by older versions.

    They kept the snapshot as ``{"x": ..., "p": ...}`` and the variant as a list
    ``[message_key, arm, intervention_id, rewarded]``; session states live on in the
    table's changelog, so a new worker still reads them.

    >>> old = {"snap": {"x": {"friction": 1.0}, "p": 0.5}, "variant": ["rage_click", 1, "i", False]}
    >>> _named_model_keys(old)
    >>> old["snap"], old["variant"]["arm"], old["variant"]["rewarded"]
    ({'features': {'friction': 1.0}, 'predicted': 0.5}, 1, False)
    """
    snap = model.get("snap")
    if isinstance(snap, dict) and "x" in snap:
        model["snap"] = {"features": snap["x"], "predicted": snap["p"]}
    variant = model.get("variant")
    if isinstance(variant, list):
        model["variant"] = dict(zip(VARIANT_KEYS, variant, strict=True))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event produced; ``records()`` are the output lines, in order.

    ``result`` is set when the session's fate became known on this event
    ("converted" or "abandoned"), with ``group`` saying whether the session was
    "treated" (shown an intervention), "holdout" (decided for, not shown) or "none".
    """

    session_id: str
    signals: tuple[Signal, ...] = ()
    decision: Decision | None = None
    context: dict[str, Any] | None = None
    duplicate: bool = False
    risk: float | None = None
    anomaly: float | None = None
    result: str | None = None
    group: str | None = None
    #: The normalized route (see detectors/routes.py) of the page the signals came from.
    route: str | None = None
    #: On a decision point (the rules would intervene) and on the outcome: the session's
    #: arm ("rules" or "targeted", see ``Policy.uplift_share``).
    arm: str | None = None
    #: On a decision point: what the rules alone decided ("nudge" or "handoff"); the
    #: decision (or its absence: an intervention avoided) is what was done instead.
    rules_kind: str | None = None
    #: On the outcome of a targeted session decided for: the uplift the model estimated
    #: for what it decided (shown or held out).
    estimate: float | None = None

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"kind": "signal", "session_id": self.session_id, "ts": s.ts, **s.as_dict(),
             "route": self.route}
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


#: Events after which a session's shape may have changed enough to look anomalous.
MILESTONES = frozenset(
    {"page_view", "js_error", "http_error", "form_error", "search", "checkout_failed"}
)


@dataclass(frozen=True, slots=True)
class Rules:
    """What the engine applies: detectors, policy, page routes and incident rules.

    Settings only, immutable, nothing learned: a worker swaps them on ``SIGHUP``
    without touching the models (:class:`~detectors.model.Models`, the engine's learned
    state) or any session's state. Config sections: one per detector, ``policy``,
    ``routes`` and ``incidents``; ``model`` belongs to the models (see
    :meth:`Engine.from_config`) and is not read here.

    >>> rules = Rules.from_config({"routes": {"patterns": ["/pay"]}, "dead_click": {"enabled": False}})
    >>> rules.routes.patterns, "dead_click" in [d.name for d in rules.detectors]
    (('/pay',), False)
    >>> Rules().policy == Policy()
    True
    """

    detectors: tuple[Detector, ...] = field(default_factory=lambda: tuple(registry.build()))
    policy: Policy = field(default_factory=Policy)
    routes: Routes = field(default_factory=Routes)
    #: The fleet-wide incident rules; the engine does not run them, its caller does.
    incidents: IncidentDetector = field(default_factory=IncidentDetector)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> Rules:
        """Build from a config mapping; unknown sections and keys are errors."""
        config = dict(config or {})
        config.pop("model", None)
        policy = Policy.from_config(config.pop("policy", {}))
        routes = Routes.from_config(config.pop("routes", {}))
        incidents = IncidentDetector.from_config(config.pop("incidents", {}))
        return cls(tuple(registry.build(config)), policy, routes, incidents)


@dataclass(frozen=True, slots=True)
class Learned:
    """One outcome the risk model learned from, as an ``on_learn`` callback sees it."""

    session_id: str
    #: The features and the P(abandon) the model gave them, before it knew the outcome.
    features: Features
    predicted: float
    abandoned: bool
    #: "signal": scored when a signal was raised (the score a decision could use);
    #: "outcome": the session was never scored before, so it was scored on its outcome.
    scored_at: str


#: Called after every :meth:`Engine.step` (with the event) and :meth:`Engine.expire`
#: (with ``None``): ``on_outcome(state, event, outcome)``.
OnOutcome = Callable[[SessionState, Event | None, Outcome], None]
#: Called each time the risk model has learned an outcome: ``on_learn(learned)``.
OnLearn = Callable[[Learned], None]


class _Asked:
    """What the policy asked the uplift model on one event, and what it answered."""

    __slots__ = ("estimate", "kind")

    def __init__(self) -> None:
        self.kind: Action | None = None
        self.estimate: float | None = None

    def target(
        self, choose: Callable[[tuple[Action, ...]], tuple[str | None, float | None]]
    ) -> Callable[[tuple[Action, ...], Action], Action | None]:
        def target(allowed: tuple[Action, ...], kind: Action) -> Action | None:
            self.kind = kind
            chosen, self.estimate = choose(allowed)
            return "nudge" if chosen == "nudge" else "handoff" if chosen == "handoff" else None

        return target


def _then(first: Callable[..., None] | None,
          second: Callable[..., None] | None) -> Callable[..., None] | None:
    if first is None or second is None:
        return first or second

    def both(*args: Any) -> None:
        first(*args)
        second(*args)

    return both


class Engine:
    """Rules and models, applied to a session's events in order.

    ``rules`` (:class:`Rules`) are settings and can be replaced while the engine runs;
    ``models`` are what it learned (shared by all sessions of a worker, learning as it
    runs, pickled for checkpoints), or None when disabled. They run only where they can
    change a decision (see :meth:`step`).

    To watch the engine, pass callbacks rather than subclassing it: ``on_outcome``
    (:data:`OnOutcome`) and ``on_learn`` (:data:`OnLearn`). They belong to this engine
    object, never to the models, so a checkpoint never pickles them.

    >>> seen = []
    >>> engine = Engine(Rules(), on_outcome=lambda state, event, outcome: seen.append(
    ...     (state.session_id, event and event["type"], len(outcome.signals))))
    >>> _ = engine.step(SessionState("s1"), {"session_id": "s1", "type": "help_request", "ts": 5})
    >>> _ = engine.expire(SessionState("s2"))
    >>> seen
    [('s1', 'help_request', 1), ('s2', None, 0)]
    """

    def __init__(
        self,
        rules: Rules,
        models: Models | None = None,
        *,
        on_outcome: OnOutcome | None = None,
        on_learn: OnLearn | None = None,
    ) -> None:
        self.rules = rules
        self.models = models
        self.on_outcome = on_outcome
        self.on_learn = on_learn

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> Engine:
        """Build from a config mapping: detector sections, ``policy``, ``routes``,
        ``incidents`` (the :class:`Rules`) and ``model`` (fresh models, or None when
        ``enabled = false``)."""
        config = config or {}
        rules = Rules.from_config(config)
        models = Models.from_config(config.get("model", {}))
        return cls(rules, models if models.enabled else None)

    def observed(
        self, *, on_outcome: OnOutcome | None = None, on_learn: OnLearn | None = None
    ) -> Engine:
        """An engine over the same rules and the same models (shared, not copied) that
        also calls these callbacks, after this engine's own."""
        return Engine(self.rules, self.models, on_outcome=_then(self.on_outcome, on_outcome),
                      on_learn=_then(self.on_learn, on_learn))

    # The rules' parts, read through the engine by its callers.
    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self.rules.detectors

    @property
    def policy(self) -> Policy:
        return self.rules.policy

    @property
    def routes(self) -> Routes:
        return self.rules.routes

    @property
    def incidents(self) -> IncidentDetector:
        return self.rules.incidents

    def features(self, state: SessionState, *, causes: bool = True) -> Features:
        """The models' view of the session now (see :func:`detectors.model.features`);
        ``causes=False`` leaves out the funnel stage, failed payments by class and time
        stuck (the anomaly model's view: what it learned before they existed)."""
        p = state.policy
        friction = decayed(p.get("score", 0.0), p.get("score_ts"), state.last_ts,
                           self.rules.policy.half_life_ms)
        if not causes:
            return features(
                state.counts, state.signal_counts, friction=friction,
                duration_ms=(state.last_ts or 0) - (state.first_ts or 0), pages=len(state.pages),
                interventions=p.get("interventions", 0), causes=False,
            )
        checkout = state.checkout
        payments = {payment_class(v) for v in (*checkout.get("codes", ()),
                                                *checkout.get("reasons", ()))}
        last = state.last_ts or 0
        return features(
            state.counts, state.signal_counts, friction=friction,
            duration_ms=last - (state.first_ts or 0), pages=len(state.pages),
            interventions=p.get("interventions", 0),
            stage=funnel_stage(state.pages, self.models.stages) if self.models else funnel_stage(
                state.pages),
            payments=[c for c in payments if c is not None],
            stuck_ms=last - state.signals[0]["ts"] if state.signals else 0,
        )

    def step(self, state: SessionState, event: Event) -> Outcome:
        """Remember the event, run the detectors, maybe the models, let the policy decide.

        The risk model scores only when this event raised a signal and the session can
        still get an intervention: elsewhere its score could not change a decision.
        The anomaly model looks at milestone events of sessions that can still get
        one. Where the rules would intervene, in the targeted arm (``[policy]
        uplift_share``), the uplift model chooses once it is warm (guard rails
        excepted). All learn from outcomes (purchase, session_end, or :meth:`expire`).
        """
        outcome = self._step(state, event)
        if self.on_outcome is not None:
            self.on_outcome(state, event, outcome)
        return outcome

    def _step(self, state: SessionState, event: Event) -> Outcome:
        event_id = event.get("event_id")
        if event_id is not None:
            # Beacons are retried; the same event must not count twice.
            if event_id in state.seen_ids:
                return Outcome(state.session_id, duplicate=True)
            _push(state.seen_ids, event_id, MAX_SEEN_IDS)
        rules = self.rules
        kind = event["type"]
        result = group = None
        estimate = None
        if kind in ("purchase", "session_end"):
            # Features from before the outcome: the event itself would give it away.
            result, group, estimate = self._learn_outcome(state, abandoned=kind == "session_end")
        elif kind in ("intervention_accepted", "intervention_dismissed"):
            self._reward_variant(state, event["intervention_id"], kind == "intervention_accepted")
        state.remember(event)
        signals = []
        for detector in rules.detectors:
            signal = detector.step(state.detectors.setdefault(detector.name, {}), event)
            if signal is not None:
                signals.append(signal)
        models, is_open = self.models, rules.policy.is_open(state.policy)
        anomaly = risk = None
        if models is not None and is_open and kind in MILESTONES:
            anomaly = self._look_for_anomaly(state, event, signals, models)
        for signal in signals:
            state.signal_counts[signal.detector] = state.signal_counts.get(signal.detector, 0) + 1
            _push(state.signals, {"ts": signal.ts, **signal.as_dict()}, MAX_SIGNALS)
        policy = rules.policy
        arm = policy.arm(state.session_id) if result is not None else None
        if not signals:
            return Outcome(state.session_id, anomaly=anomaly, result=result, group=group,
                           arm=arm, estimate=estimate)
        keys: list[str] | None = None
        if models is not None and is_open:
            # The features at the moment of decision: risk scores them now and learns
            # from them at the outcome; the uplift model's context comes from them.
            x = self.features(state)
            risk = models.risk.score(x)
            state.model["snap"] = snapshot(x, risk)
            keys = uplift_context(x, max(signals, key=lambda s: s.strength).detector)
        asked = _Asked()
        target = None
        if keys is not None and models is not None and models.uplift.warm:
            uplift, cost = models.uplift, policy.handoff_cost
            target = asked.target(lambda allowed: uplift.choose(keys, allowed, handoff_cost=cost))
        decision = policy.decide(state.policy, state.session_id, state.seq, signals, risk,
                                 target=target)
        rules_kind = asked.kind or (decision.kind if decision is not None else None)
        if rules_kind is not None:
            arm = policy.arm(state.session_id)
            if keys is not None:
                self._note_uplift(state, keys, decision, asked, arm == "targeted")
        if decision is not None:
            decision = self._choose_variant(state, decision)
            if not decision.delivered:
                state.model["holdout"] = True
        context = state.context() if decision and decision.kind == "handoff" else None
        route = rules.routes.route(event.get("page") or (state.pages[-1] if state.pages else None))
        return Outcome(state.session_id, tuple(signals), decision, context, risk=risk,
                       anomaly=anomaly, result=result, group=group, route=route, arm=arm,
                       rules_kind=rules_kind, estimate=estimate)

    def _note_uplift(self, state: SessionState, keys: list[str], decision: Decision | None,
                     asked: _Asked, targeted: bool) -> None:
        """Keep the decision the uplift model will learn from at the outcome: the first
        decision point, replaced by a stronger intervention decided later."""
        models = self.models
        assert models is not None
        previous = state.model.get("uplift")
        if decision is None:  # the model chose to do nothing
            if previous is None:
                state.model["uplift"] = {"keys": keys, "action": "none", "shown": False,
                                         "estimate": None}
            return
        if previous is not None and previous["action"] != "none" and not (
                decision.kind == "handoff" and previous["action"] == "nudge"):
            return
        estimate = asked.estimate
        if estimate is None and targeted and models.uplift.warm:
            estimate = models.uplift.estimate(keys, decision.kind)[0]  # at a guard rail
        state.model["uplift"] = {
            "keys": keys, "action": decision.kind, "shown": decision.delivered,
            "estimate": None if estimate is None else round(estimate, 6),
        }

    def _look_for_anomaly(
        self, state: SessionState, event: Event, signals: list[Signal], models: Models
    ) -> float | None:
        """Score only if a flag could tip a decision; learn from a sample of everyone.

        A flag adds a weak signal: on a session with no friction it can never reach a
        threshold, so scoring there would cost ~100 us for nothing.
        """
        x = None
        score = None
        policy = self.rules.policy
        weight = policy.weights.get("anomalous_session", 1.0)
        if not state.model.get("flagged") and policy.could_tip(
            state.policy, event["ts"], models.anomaly_strength * weight + sum(
                s.strength * policy.weights.get(s.detector, 1.0) for s in signals)
        ):
            x = self.features(state, causes=False)
            score, flagged = models.anomaly.score(x)
            if flagged:
                state.model["flagged"] = True
                signals.append(Signal("anomalous_session", models.anomaly_strength, event["ts"],
                                      evidence={"score": round(score, 4)}))
        if state.seq % models.anomaly_sample == 0:
            models.anomaly.learn(x if x is not None else self.features(state, causes=False))
        return score

    def expire(self, state: SessionState) -> Outcome:
        """The session went quiet past the timeout: abandoned, unless it converted."""
        result, group, estimate = self._learn_outcome(state, abandoned=True)
        outcome = Outcome(state.session_id, result=result, group=group, estimate=estimate,
                          arm=self.rules.policy.arm(state.session_id) if result else None)
        if self.on_outcome is not None:
            self.on_outcome(state, None, outcome)
        return outcome

    def _learn_outcome(
        self, state: SessionState, *, abandoned: bool
    ) -> tuple[str | None, str, float | None]:
        """(result, group, the uplift estimated for the session) on its first outcome."""
        m = state.model
        group = "holdout" if m.get("holdout") else (
            "treated" if state.policy.get("interventions") else "none")
        if m.get("result"):
            return None, group, None  # one outcome per session: the first one counts
        m["result"] = "abandoned" if abandoned else "converted"
        models = self.models
        estimate = None
        if models is not None:
            snap = m.pop("snap", None)
            scored_at = "signal"
            if snap is None:  # never scored: score now, still before learning
                scored_at = "outcome"
                x = self.features(state)
                snap = snapshot(x, models.risk.score(x, at_decision=False))
            learn_outcome(models, snap, abandoned, at_decision=scored_at == "signal")
            if self.on_learn is not None:
                self.on_learn(Learned(state.session_id, dict(snap["features"]),
                                      float(snap["predicted"]), abandoned, scored_at))
            variant = m.get("variant")
            if variant and not variant["rewarded"]:
                models.chooser.reward(variant["message_key"], variant["arm"], not abandoned)
                variant["rewarded"] = True
            decided = m.get("uplift")
            if decided is not None:
                # What reached the session: the control learns from the holdout (and
                # from sessions the model chose to leave alone).
                action = decided["action"] if decided["shown"] else "none"
                models.uplift.learn(decided["keys"], action, not abandoned)
                estimate = decided["estimate"]
        return m["result"], group, estimate

    def _choose_variant(self, state: SessionState, decision: Decision) -> Decision:
        if self.models is None or decision.kind != "nudge":
            return decision
        texts = self.rules.policy.variants(decision.message_key)
        if len(texts) < 2:
            return decision
        arm = self.models.chooser.choose(decision.message_key, len(texts))
        state.model["variant"] = {"message_key": decision.message_key, "arm": arm,
                                  "intervention_id": decision.intervention_id, "rewarded": False}
        return replace(decision, message=texts[arm], variant=arm)

    def _reward_variant(self, state: SessionState, intervention_id: str, accepted: bool) -> None:
        variant = state.model.get("variant")
        if (self.models is not None and variant and variant["intervention_id"] == intervention_id
                and not variant["rewarded"]):
            self.models.chooser.reward(variant["message_key"], variant["arm"], accepted)
            variant["rewarded"] = True
