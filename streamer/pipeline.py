"""One Kafka record in, the records to publish out: the body of the agent, minus Faust.

The agent hands each record to :meth:`Pipeline.process`; so do ``replay`` (with a
plain dict as the state store) and the unit tests. Decoding errors become dead
letters here, never exceptions: the stream must not stop on bad input.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import orjson

from detectors.errors import InvalidEvent
from detectors.events import decode_record
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


class Pipeline:
    """Decode, step every event of the record through the engine, keep the state."""

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

    def process(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
        timestamp_s: float | None = None,
    ) -> Produced:
        m = self.metrics
        m.records.inc()
        out = Produced()
        raw = value or b""
        try:
            events, errors = decode_record(raw, key, max_bytes=self.max_record_bytes)
        except InvalidEvent as exc:
            m.invalid_by_reason[exc.reason].inc()
            out.dead_letters.append(dead_letter(exc, key, raw, topic, partition, offset))
            return out
        if errors:
            items = orjson.loads(raw)
            for exc in errors:
                m.invalid_by_reason[exc.reason].inc()
                element = orjson.dumps(items[exc.index])
                out.dead_letters.append(dead_letter(exc, key, element, topic, partition, offset))
        if not events:
            return out

        session_key = key if key is not None else events[0]["session_id"].encode()
        stored = self.states.get(session_key)
        state = (
            SessionState.from_json(stored) if stored else SessionState(events[0]["session_id"])
        )
        ended = False
        for event in events:
            if event["session_id"] != state.session_id:
                # A keyless record mixing sessions: each event to its own state.
                self._save(session_key, state, ended)
                session_key = event["session_id"].encode()
                stored = self.states.get(session_key)
                state = SessionState.from_json(stored) if stored else SessionState(event["session_id"])
                ended = False
            outcome = self.engine.step(state, event)
            if outcome.duplicate:
                m.duplicates.inc()
                continue
            m.count_event(event["type"])
            ended = event["type"] == "session_end"
            if outcome.signals:
                for signal in outcome.signals:
                    m.signals.labels(signal.detector).inc()
                out.outcomes.append(outcome)
                if outcome.decision is not None:
                    d = outcome.decision
                    m.interventions.labels(d.kind, "true" if d.delivered else "false").inc()
        self._save(session_key, state, ended)
        if timestamp_s is not None:
            m.latency.observe(max(0.0, time.time() - timestamp_s))
        return out

    def _save(self, key: bytes, state: SessionState, ended: bool) -> None:
        # Assign, never mutate in place: only an assignment reaches the changelog.
        if ended:
            self.states.pop(key, None)
        else:
            self.states[key] = state.to_json()
