"""One Kafka record in, the records to publish out: the body of the agent, minus Faust.

The agent hands each record to :meth:`Pipeline.process`; so do ``replay`` (with a
plain dict as the state store) and the unit tests. Decoding errors become dead
letters here, never exceptions: the stream must not stop on bad input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.errors import InvalidEvent
from detectors.events import Event, decode_record
from detectors.session import Engine, Outcome, SessionState
from streamer.metrics import Metrics

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class DeadLetter:
    """A refused input: the original bytes, where they came from and why."""

    key: bytes | None
    value: bytes
    headers: Headers


@dataclass(slots=True)
class Produced:
    """What one record produced, to be sent by the caller."""

    outcomes: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def dead_letter(
    error: InvalidEvent, key: bytes | None, value: bytes, topic: str, partition: int, offset: int
) -> DeadLetter:
    headers: Headers = [
        ("fw-reason", error.reason.encode()),
        ("fw-detail", error.detail.encode()),
        ("fw-topic", topic.encode()),
        ("fw-partition", str(partition).encode()),
        ("fw-offset", str(offset).encode()),
    ]
    if error.index is not None:
        headers.append(("fw-index", str(error.index).encode()))
    return DeadLetter(key, value, headers)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the pipeline needs it."""

    key: bytes | None
    value: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_s: float | None = None


class Pipeline:
    """Decode, step every event through the engine, keep the state.

    A batch of records is processed together: each session's state is read once and
    written once per batch, however many of its records the batch holds. That is
    what keeps a worker catching up on a backlog from writing the table per record.
    """

    def __init__(
        self,
        engine: Engine,
        states: MutableMapping[bytes, bytes],
        metrics: Metrics,
        *,
        max_record_bytes: int,
    ) -> None:
        self.engine = engine
        self.states = states
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        #: The largest event ts seen: the event-time clock of idle-session expiry.
        self.watermark = 0
        #: Each stored session's last event ts, so the sweep need not decode every
        #: state; a cache of the table (rebuilt from it for keys it has not seen).
        self._last_ts: dict[bytes, int | None] = {}

    def process(self, key: bytes | None, value: bytes | None, **meta: Any) -> Produced:
        """One record (see :meth:`process_batch`)."""
        return self.process_batch([Record(key, value, **meta)])

    def process_batch(self, records: Sequence[Record]) -> Produced:
        m = self.metrics
        out = Produced()
        loaded: dict[bytes, SessionState] = {}
        ended: set[bytes] = set()
        for record in records:
            m.records.inc()
            raw = record.value or b""
            try:
                events, errors = decode_record(raw, record.key, max_bytes=self.max_record_bytes)
            except InvalidEvent as exc:
                self._refuse(out, exc, record, raw)
                continue
            if errors:
                items = orjson.loads(raw)
                for error in errors:
                    self._refuse(out, error, record, orjson.dumps(items[error.index]))
            for event in events:
                # A keyless record may mix sessions: each event goes to its own state.
                session_key = event["session_id"].encode()
                state = loaded.get(session_key)
                if state is None:
                    stored = self.states.get(session_key)
                    state = loaded[session_key] = (
                        SessionState.from_json(stored) if stored
                        else SessionState(event["session_id"])
                    )
                self._step(out, state, event)
                if event["type"] == "session_end":
                    ended.add(session_key)
                else:
                    ended.discard(session_key)
        for session_key, state in loaded.items():
            # Assign, never mutate in place: only an assignment reaches the changelog.
            if session_key in ended:
                self.states.pop(session_key, None)
                self._last_ts.pop(session_key, None)
            else:
                self.states[session_key] = state.to_json()
                self._last_ts[session_key] = state.last_ts
        now = time.time()
        for record in records:
            if record.timestamp_s is not None:
                m.latency.observe(max(0.0, now - record.timestamp_s))
        return out

    def _step(self, out: Produced, state: SessionState, event: Event) -> None:
        m = self.metrics
        started = time.perf_counter()
        outcome = self.engine.step(state, event)
        if outcome.duplicate:
            m.duplicates.inc()
            return
        if event["ts"] > self.watermark:
            self.watermark = event["ts"]
        m.count_event(event["type"])
        if outcome.risk is not None or outcome.anomaly is not None:
            m.model_step.observe(time.perf_counter() - started)
            if outcome.anomaly is not None:
                m.anomaly_score.observe(outcome.anomaly)
        self._count(outcome)
        if outcome.signals:
            out.outcomes.append(outcome)

    def _count(self, outcome: Outcome) -> None:
        m = self.metrics
        for signal in outcome.signals:
            m.signals.labels(signal.detector).inc()
            m.friction_by_route.labels(outcome.route or "other", signal.detector).inc()
        if outcome.decision is not None:
            d = outcome.decision
            m.interventions.labels(d.kind, "true" if d.delivered else "false").inc()
        if outcome.result is not None:
            m.outcomes.labels(outcome.result, outcome.group or "none").inc()

    def _refuse(self, out: Produced, exc: InvalidEvent, record: Record, value: bytes) -> None:
        self.metrics.invalid_by_reason[exc.reason].inc()
        out.dead_letters.append(
            dead_letter(exc, record.key, value, record.topic, record.partition, record.offset)
        )

    def sweep(
        self, idle_ms: int, owns: Callable[[bytes], bool] = lambda key: True
    ) -> list[Outcome]:
        """Expire sessions idle for ``idle_ms`` of event time before the watermark.

        Each gets its outcome (abandoned, unless it converted) and its state is freed.
        ``owns`` says whether this worker is the active owner of a key (a standby
        copy must not be expired by a worker that does not own it).
        """
        cutoff = self.watermark - idle_ms
        expired = []
        known, self._last_ts = self._last_ts, {}
        for session_key in list(self.states.keys()):
            if session_key in known:
                last = known[session_key]
            else:  # recovered from the changelog: decode once
                last = SessionState.from_json(self.states[session_key]).last_ts
            if last is None or last >= cutoff or not owns(session_key):
                self._last_ts[session_key] = last
                continue
            outcome = self.engine.expire(SessionState.from_json(self.states[session_key]))
            self._count(outcome)
            expired.append(outcome)
            self.states.pop(session_key, None)
        return expired
