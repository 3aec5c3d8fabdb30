"""All of the worker's Prometheus metrics, in one bundle made against a registry.

Labels are bounded sets only (event type, reason, detector, kind, page route from the
configured patterns): never a session id, a URL or anything else a client controls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from detectors.events import KNOWN_TYPES, REASONS
from detectors.scrub import KINDS as SCRUB_KINDS  # what decode-time scrubbing did to a value
from detectors.session import TRIM_PARTS

#: Bounded label values of the browser-side metrics (see streamer/guard.py, delivery.py).
WEB_ENDPOINTS = ("collect", "sessions", "stream")
WEB_REASONS = (
    "origin_not_allowed", "missing_site_key", "bad_site_key", "rate_limited_client",
    "rate_limited_session", "too_large", "not_json", "not_object", "missing_token",
    "bad_token", "wrong_session", "expired_token", "too_many_streams",
    # the hostile browser (issue 10): budgets per client, and what should never happen
    "rate_limited_events", "rate_limited_new_sessions", "too_many_client_streams",
    "unavailable", "internal_error",
)
FEED_OUTCOMES = ("fanned_out", "holdout", "duplicate", "invalid")
DISCONNECT_REASONS = ("client_gone", "slow", "replaced", "shutdown")
WEBHOOK_OUTCOMES = ("delivered", "retried", "dead_lettered", "duplicate", "invalid")
#: The operator console (streamer/web/console): why a request was refused (endpoint
#: "console" of the web rejections) and why a stream ended.
CONSOLE_REASONS = ("local_only", "missing_token", "bad_token", "too_many_streams", "not_found")
CONSOLE_DISCONNECTS = ("client_gone", "slow", "shutdown")

#: The policy's arms (``[policy] uplift_share``), decision kinds and session groups.
ARMS = ("rules", "targeted")
ACTIONS = ("none", "nudge", "handoff")
GROUPS = ("treated", "holdout", "none")
#: Outcomes between two updates of the model gauges the engine observer sets.
MODEL_GAUGE_EVERY = 50

#: Event->decision latency buckets, in seconds (the goal is well under a second).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._declare_pipeline(self.registry)
        self._declare_models(self.registry)
        self._declare_arms(self.registry)
        self._declare_browser(self.registry)
        self._declare_webhooks(self.registry)
        self._declare_console(self.registry)
        self._declare_redelivery(self.registry)
        self._declare_outputs(self.registry)

    def _declare_pipeline(self, r: CollectorRegistry) -> None:
        """The pipeline: records, events, refusals, signals, decisions, state."""
        self.events = Counter(
            "frictionwatch_events", "Valid events processed, by type ('other' for unknown).",
            ["type"], registry=r,
        )
        self.records = Counter(
            "frictionwatch_records", "Kafka records consumed from the events topic.", registry=r
        )
        self.duplicates = Counter(
            "frictionwatch_duplicate_events", "Events skipped as repeats of a seen event_id.",
            registry=r,
        )
        self.invalid = Counter(
            "frictionwatch_invalid_events",
            "Inputs refused at decoding, by reason (dead-lettered or answered to the client).",
            ["reason"], registry=r,
        )
        self.signals = Counter(
            "frictionwatch_signals", "Detector signals, by detector.", ["detector"], registry=r
        )
        self.interventions = Counter(
            "frictionwatch_interventions",
            "Interventions decided, by kind and whether they were delivered (holdout: false).",
            ["kind", "delivered"], registry=r,
        )
        self.latency = Histogram(
            "frictionwatch_decision_latency_seconds",
            "From the event record's Kafka timestamp to the decision on it.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.friction_by_route = Counter(
            "frictionwatch_friction_by_route",
            "Detector signals by normalized page route ([routes] patterns, else 'other') and "
            "detector.", ["route", "detector"], registry=r,
        )
        self.incidents_open = Gauge(
            "frictionwatch_incidents_open",
            "1 while a fleet-wide incident is open on this route and failure, 0 for keys this "
            "worker watches with none open.", ["route", "failure"], registry=r,
        )
        self.incident_changes = Counter(
            "frictionwatch_incident_changes",
            "Incident records published on frictionwatch.incidents, by kind (open, close).",
            ["kind"], registry=r,
        )
        for kind in ("open", "close"):
            self.incident_changes.labels(kind)
        self.active_sessions = Gauge(
            "frictionwatch_active_sessions", "Sessions with state on this worker.", registry=r
        )
        self.collect_requests = Counter(
            "frictionwatch_collect_requests", "POST /v1/collect requests, by HTTP status.",
            ["code"], registry=r,
        )
        # Label children resolved once: .labels() on the hot path costs a lock and a dict.
        self.events_by_type = {t: self.events.labels(t) for t in (*KNOWN_TYPES, "other")}
        self.invalid_by_reason = {r_: self.invalid.labels(r_) for r_ in (*REASONS, "internal_error")}
        self.state_trimmed = Counter(
            "frictionwatch_state_trimmed",
            "Items dropped from session states to keep each within its byte budget, by part.",
            ["part"], registry=r,
        )
        for part in TRIM_PARTS:
            self.state_trimmed.labels(part)
        self.clock_skew = Counter(
            "frictionwatch_clock_skew",
            "Events whose ts is over 5 min from their server time (processed, never trusted as "
            "a clock), by kind (offset: a session's first event; drift: later, against the "
            "session's own offset).", ["kind"], registry=r,
        )
        for kind in ("offset", "drift"):
            self.clock_skew.labels(kind)
        for kind in ("nudge", "handoff"):
            for delivered in ("true", "false"):
                self.interventions.labels(kind, delivered)

    def _declare_models(self, r: CollectorRegistry) -> None:
        """Online models and the outcomes they learn from."""
        self.risk_auc = Gauge(
            "frictionwatch_model_risk_auc",
            "Rolling ROC AUC of the abandonment-risk model, each outcome scored before learned.",
            registry=r,
        )
        self.model_learned = Gauge(
            "frictionwatch_model_outcomes_learned",
            "Outcomes the risk model has learned from (restored checkpoints included).",
            registry=r,
        )
        self.anomaly_score = Histogram(
            "frictionwatch_model_anomaly_score", "HalfSpaceTrees anomaly scores of sessions.",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0), registry=r,
        )
        self.model_step = Histogram(
            "frictionwatch_model_step_seconds",
            "Time of an engine step on events where a model ran.",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=r,
        )
        self.outcomes = Counter(
            "frictionwatch_outcomes",
            "Session outcomes by result (converted/abandoned) and group "
            "(treated: shown an intervention, holdout: decided for but not shown, none).",
            ["result", "group"], registry=r,
        )
        self.checkpoints = Counter(
            "frictionwatch_model_checkpoints", "Model checkpoints written.", registry=r
        )
        for result in ("converted", "abandoned"):
            for group in ("treated", "holdout", "none"):
                self.outcomes.labels(result, group)

    def _declare_arms(self, r: CollectorRegistry) -> None:
        """The uplift-targeted arm: risk at decision, decisions, estimates."""
        self.risk_auc_at_decision = Gauge(
            "frictionwatch_model_risk_auc_at_decision",
            "Rolling ROC AUC of the risk model over the outcomes it scored at a decision "
            "(the scores the policy used).", registry=r,
        )
        self.arm_outcomes = Counter(
            "frictionwatch_arm_outcomes",
            "Session outcomes by policy arm (rules, targeted: [policy] uplift_share), group "
            "(treated, holdout, none) and result (converted, abandoned).",
            ["arm", "group", "result"], registry=r,
        )
        self.arm_decisions = Counter(
            "frictionwatch_arm_decisions",
            "Decision points (the rules would intervene) by arm, the rules' choice and what was "
            "decided (chosen=none: an intervention the uplift model avoided).",
            ["arm", "rules", "chosen"], registry=r,
        )
        self.arm_interventions = Counter(
            "frictionwatch_arm_interventions", "Interventions shown (delivered), by arm and kind.",
            ["arm", "kind"], registry=r,
        )
        self.uplift_estimated = Summary(
            "frictionwatch_uplift_estimated",
            "The uplift model's estimated uplift (P(convert) points) of what it decided, per "
            "targeted session decided for (shown or held out), at the session's outcome.",
            registry=r,
        )
        self.uplift_learned = Gauge(
            "frictionwatch_uplift_outcomes_learned",
            "Outcomes the uplift model learned, by what reached the session (none: control).",
            ["action"], registry=r,
        )
        self.uplift_warm = Gauge(
            "frictionwatch_uplift_warm",
            "1 once the uplift model has learned enough to decide ([model] uplift_warmup).",
            registry=r,
        )
        for arm in ARMS:
            for result in ("converted", "abandoned"):
                for group in GROUPS:
                    self.arm_outcomes.labels(arm, group, result)
            for kind in ("nudge", "handoff"):
                self.arm_interventions.labels(arm, kind)
                for chosen in ACTIONS:
                    self.arm_decisions.labels(arm, kind, chosen)
        for action in ACTIONS:
            self.uplift_learned.labels(action)

    def _declare_browser(self, r: CollectorRegistry) -> None:
        """Browser endpoints: tokens, refusals, live delivery over SSE."""
        self.web_rejections = Counter(
            "frictionwatch_web_rejections",
            "Browser requests refused, by endpoint and reason (each answered with a JSON error).",
            ["endpoint", "reason"], registry=r,
        )
        self.session_tokens = Counter(
            "frictionwatch_session_tokens", "Session tokens issued, new or renewed.",
            ["kind"], registry=r,
        )
        self.sse_clients = Gauge(
            "frictionwatch_sse_clients", "Browsers connected to the intervention stream.",
            registry=r,
        )
        self.sse_feed = Counter(
            "frictionwatch_sse_feed_records",
            "Intervention records read by this worker's web side, by what became of them.",
            ["outcome"], registry=r,
        )
        self.sse_sent = Counter(
            "frictionwatch_sse_sent", "Interventions written to connected browsers.", registry=r
        )
        self.sse_disconnects = Counter(
            "frictionwatch_sse_disconnects",
            "Intervention streams ended, by reason (slow: the client could not keep up).",
            ["reason"], registry=r,
        )
        self.sse_delivery_latency = Histogram(
            "frictionwatch_sse_delivery_latency_seconds",
            "From the intervention record's Kafka timestamp to its write to a browser.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.scrubbed = Counter(
            "frictionwatch_scrubbed",
            "Values cleaned at decoding, by kind: personal data replaced (email, card, phone, "
            "token), free text cut to its byte cap (truncated), codes dropped (code_dropped).",
            ["kind"], registry=r,
        )
        self.scrubbed_by_kind = {k: self.scrubbed.labels(k) for k in SCRUB_KINDS}
        for endpoint in WEB_ENDPOINTS:
            for reason in WEB_REASONS:
                self.web_rejections.labels(endpoint, reason)
        for outcome in FEED_OUTCOMES:
            self.sse_feed.labels(outcome)
        for reason in DISCONNECT_REASONS:
            self.sse_disconnects.labels(reason)
        for kind in ("new", "renewed"):
            self.session_tokens.labels(kind)

    def _declare_webhooks(self, r: CollectorRegistry) -> None:
        """The webhook sink: one count per record and URL."""
        self.webhook_deliveries = Counter(
            "frictionwatch_webhook_deliveries",
            "Webhook deliveries by outcome (delivered, retried: a failed try followed by "
            "another, dead_lettered, duplicate: already delivered to that URL, invalid: an "
            "unreadable record) and record type.",
            ["outcome", "type"], registry=r,
        )
        self.webhook_latency = Histogram(
            "frictionwatch_webhook_delivery_seconds",
            "From the record's Kafka timestamp to the receiver's 2xx, retries included.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.webhook_partitions = Gauge(
            "frictionwatch_webhook_partitions",
            "Partitions this worker's webhook sink is assigned (its own consumer group).",
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES:
            for kind in ("handoff", "incident"):
                self.webhook_deliveries.labels(outcome, kind)

    def _declare_console(self, r: CollectorRegistry) -> None:
        """The operator console at /: its streams and what a slow one lost."""
        self.console_streams = Gauge(
            "frictionwatch_console_streams", "Console streams (SSE) open on this worker.",
            registry=r,
        )
        self.console_dropped = Counter(
            "frictionwatch_console_dropped_frames",
            "Console frames dropped for a client that could not keep up (it is sent a fresh "
            "snapshot instead).", registry=r,
        )
        self.console_disconnects = Counter(
            "frictionwatch_console_disconnects",
            "Console streams ended, by reason (slow: a write took too long).", ["reason"],
            registry=r,
        )
        for reason in CONSOLE_DISCONNECTS:
            self.console_disconnects.labels(reason)
        for reason in CONSOLE_REASONS:
            self.web_rejections.labels("console", reason)

    def _declare_redelivery(self, r: CollectorRegistry) -> None:
        """Effectively-once state: re-delivered records, tombstones."""
        self.redelivered = Counter(
            "frictionwatch_redelivered",
            "Kafka records skipped because the session's state already holds them (delivered "
            "again after a restart or a rebalance); a keyless record counts once per session.",
            registry=r,
        )
        self.tombstones = Gauge(
            "frictionwatch_session_tombstones",
            "Ended sessions kept as small tombstones until their records can no longer be "
            "delivered again (not counted in frictionwatch_active_sessions).",
            registry=r,
        )

    def _declare_outputs(self, r: CollectorRegistry) -> None:
        """The agent's outputs (streamer/stream/outbox.py): failed sends and batches."""
        self.output_send_failures = Counter(
            "frictionwatch_output_send_failures",
            "Failed sends of output records, by topic and outcome (retried: the batch is "
            "held and the record sent again; dead_lettered: refused for good, sent to the "
            "dead letters instead; dropped: a dead letter refused for good).",
            ["topic", "outcome"], registry=r,
        )

    def count_event(self, kind: str) -> None:
        (self.events_by_type.get(kind) or self.events_by_type["other"]).inc()

    def count_scrub(self, kind: str) -> None:
        """An ``on_scrub`` callback for :func:`detectors.events.decode_record`."""
        self.scrubbed_by_kind[kind].inc()

    def watch_models(self, models: Any) -> Callable[[Any, Any, Any], None]:
        """An engine ``on_outcome`` callback counting the arms (decisions, interventions
        shown, outcomes, the model's estimates) and setting the models' gauges.

        ``models`` is the engine's :class:`detectors.model.Models` (None: models off).
        Pass it to ``Engine.observed(on_outcome=...)``; decision points and outcomes are
        a few per session, every other event returns at once.
        """
        outcomes_seen = 0

        def observe(state: Any, event: Any, outcome: Any) -> None:
            nonlocal outcomes_seen
            if outcome.rules_kind is None and outcome.result is None:
                return
            arm, decision = outcome.arm or "rules", outcome.decision
            if outcome.rules_kind is not None:
                self.arm_decisions.labels(arm, outcome.rules_kind,
                                          decision.kind if decision else "none").inc()
            if decision is not None and decision.delivered:
                self.arm_interventions.labels(arm, decision.kind).inc()
            if outcome.result is None:
                return
            self.arm_outcomes.labels(arm, outcome.group or "none", outcome.result).inc()
            if outcome.estimate is not None:
                self.uplift_estimated.observe(outcome.estimate)
            outcomes_seen += 1
            if models is not None and outcomes_seen % MODEL_GAUGE_EVERY == 1:
                self.set_model_gauges(models)

        return observe

    def set_model_gauges(self, models: Any) -> None:
        """The gauges read off the models: risk AUC at decision, the uplift model's learning."""
        self.risk_auc_at_decision.set(models.risk.auc_at_decision)
        for action, n in models.uplift.learned.items():
            self.uplift_learned.labels(action).set(n)
        self.uplift_warm.set(1 if models.uplift.warm else 0)
