"""All of the worker's Prometheus metrics, in one bundle made against a registry.

Labels are bounded sets only (event type, reason, detector, kind): never a session
id, a URL or anything else a client controls.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detectors.events import KNOWN_TYPES, REASONS

#: Event->decision latency buckets, in seconds (the goal is well under a second).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
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
        self.active_sessions = Gauge(
            "frictionwatch_active_sessions", "Sessions with state on this worker.", registry=r
        )
        self.collect_requests = Counter(
            "frictionwatch_collect_requests", "POST /v1/collect requests, by HTTP status.",
            ["code"], registry=r,
        )
        # Label children resolved once: .labels() on the hot path costs a lock and a dict.
        self.events_by_type = {t: self.events.labels(t) for t in (*KNOWN_TYPES, "other")}
        self.invalid_by_reason = {r_: self.invalid.labels(r_) for r_ in REASONS}
        for kind in ("nudge", "handoff"):
            for delivered in ("true", "false"):
                self.interventions.labels(kind, delivered)

    def count_event(self, kind: str) -> None:
        (self.events_by_type.get(kind) or self.events_by_type["other"]).inc()
