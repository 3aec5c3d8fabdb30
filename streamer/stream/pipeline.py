"""One Kafka record in, the records to publish out: the body of the agent, minus Faust.

The agent hands each record to :meth:`Pipeline.process`; so do ``replay`` (with a
plain dict as the state store) and the unit tests. Decoding errors become dead
letters here, never exceptions: the stream must not stop on bad input. Anything else
that goes wrong on one record (a bug) dead-letters that record as ``internal_error``,
is logged and counted, and the batch goes on.

**Time.** Two clocks, never mixed (README "Time"):

- the *fleet's* clock orders everything across sessions: idle expiry, the incident
  detector and its learning period. An event's server time is its ``received_at``
  (stamped by the collector), else its Kafka record's timestamp, else (a replayed file
  with neither) its own ``ts``. In the stream a server time is never later than the
  worker's wall clock plus :data:`FUTURE_SLACK_MS`, and the clock of a partition is
  the largest server time seen on it: it never moves backwards.
- the *client's* ``ts`` orders and spaces the events of one session only (what the
  detectors and the policy read). An event whose ``ts`` is far from its server time
  (:data:`CLOCK_SKEW_MS`) is still processed, and counted as clock skew.

**Effectively once** (README "Effectively once"). Kafka delivers a record again when
a worker stops before committing its offset. Each session's state remembers the
position of the latest record applied to it (``SessionState.applied``, written in the
same table write as the rest of the state, so it survives exactly as the state does),
and a record at or below that position is skipped for that session: nothing in the
state, no outputs, counted in ``frictionwatch_redelivered_total``. A session that ends
(``session_end`` or idle expiry) leaves a tombstone (its id, ``seq``, ``ended_at`` and
``applied``) rather than nothing, so its re-delivered records are skipped too; the
sweep frees a tombstone once its records cannot be delivered again (see
:meth:`Pipeline.sweep`). A later record for an ended session id, past the tombstone,
starts a new session, as it always did. Records without a Kafka position (replay, the
unit tests: partition or offset -1) keep the event-id de-duplication only, and an
ended session without one leaves nothing.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final

from detectors.errors import InvalidEvent
from detectors.events import Event, decode_record
from detectors.session import STATE_MAX_BYTES, Engine, Outcome, SessionState, clip
from streamer.metrics import Metrics

Headers = list[tuple[str, bytes]]

log = logging.getLogger(__name__)

#: A server time (``received_at`` or a record timestamp) later than the worker's wall
#: clock plus this is taken as that: no producer's clock moves the fleet's ahead.
FUTURE_SLACK_MS: Final = 10_000
#: An event whose ``ts`` is further than this from its server time is clock skew
#: (counted; still processed): at a session's first event the browser's clock is off
#: (``offset``), later its ``ts`` left the session's own clock (``drift``).
CLOCK_SKEW_MS: Final = 300_000
#: The dead-letter reason of a record that raised something other than InvalidEvent.
INTERNAL_ERROR: Final = "internal_error"
#: ``fw-detail`` headers are cut to this many bytes (a detail may quote the input).
MAX_DETAIL_BYTES: Final = 512
#: A dead letter holds at most this much of the original value (its first bytes, with
#: ``fw-truncated`` = the original length): Kafka's default limit is 1 MB per record,
#: and a refused input may have been that big.
MAX_DEAD_LETTER_BYTES: Final = 512 * 1024
#: How long (server time, ms, by the partition's clock) an ended session's tombstone is
#: kept when the committed offset of its partition cannot be read (setting
#: ``tombstone_ms``): a record is committed within seconds of being processed, so
#: nothing this much older than the end is delivered again.
TOMBSTONE_MS: Final = 3_600_000
#: How many sessions' decoded states are kept between batches (:meth:`Pipeline._load`):
#: decoding a storm session's stored JSON (~4 KB) cost more than any detector. A
#: decoded storm state holds ~15 KB of Python objects, so this bounds the cache to
#: ~30 MB whatever the number of sessions; the least recently written goes first.
DECODED_STATES: Final = 2048
_INT_MAX: Final = 2**63 - 1

#: What the sweep knows of a stored state without decoding it: the partition it was
#: last written from (None: recovered from the changelog, not stepped here), its
#: ``seen_at``, and for a tombstone its ``ended_at`` and ``applied``.
_Known = tuple[int | None, int | None, int | None, dict[str, int] | None]


@dataclass(slots=True)
class DeadLetter:
    """A refused input: the original bytes, where they came from and why."""

    key: bytes | None
    value: bytes
    headers: Headers


#: A table write the caller applies (:meth:`Pipeline.apply`): key, the stored bytes
#: (None deletes the key) and the partition of the record that caused it.
Write = tuple[bytes, bytes | None, int]


@dataclass(slots=True)
class Produced:
    """What one record produced, to be sent by the caller."""

    outcomes: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: The batch's state writes, when the pipeline defers them (``defer_writes``): the
    #: agent applies them only once the outputs are acknowledged (README "Faults").
    writes: list[Write] = field(default_factory=list)

    def observations(self) -> list[dict[str, Any]]:
        """The signals as the incident feed takes them: with ``ts`` the *server* time of
        the event that raised them (``route`` and ``session_id`` as in signal records)."""
        return [
            {"kind": "signal", "session_id": o.session_id, "detector": s.detector,
             "route": o.route, "ts": s.ts if o.server_ts is None else o.server_ts}
            for o in self.outcomes for s in o.signals
        ]


def dead_letter(
    error: InvalidEvent, key: bytes | None, value: bytes, topic: str, partition: int, offset: int
) -> DeadLetter:
    headers: Headers = [
        ("fw-reason", error.reason.encode()),
        ("fw-detail", clip(error.detail, MAX_DETAIL_BYTES).encode("utf-8", "replace")),
        ("fw-topic", topic.encode()),
        ("fw-partition", str(partition).encode()),
        ("fw-offset", str(offset).encode()),
    ]
    if error.index is not None:
        headers.append(("fw-index", str(error.index).encode()))
    if len(value) > MAX_DEAD_LETTER_BYTES:
        headers.append(("fw-truncated", str(len(value)).encode()))
        value = value[:MAX_DEAD_LETTER_BYTES]
    return DeadLetter(key, value, headers)


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def element_bytes(raw: bytes, last: int) -> list[bytes] | None:
    """The original bytes of elements ``0..last`` of the JSON array ``raw``, cut out of it.

    Never re-serialized: a dead letter must hold what the producer sent, and orjson
    cannot even encode what it decodes beyond 254 levels of nesting. ``raw`` has been
    decoded by orjson already (it is valid JSON and valid UTF-8), so the standard
    library's scanner finds each element's end; None if anything is unexpected, and
    the caller keeps the whole record.

    >>> element_bytes(b' [ {"a": [1, "]"]} ,\\n 2 ,"x"] ', 2)
    [b'{"a": [1, "]"]}', b'2', b'"x"']
    """
    try:
        text = raw.decode("utf-8")
        scan = json.JSONDecoder().raw_decode
        i = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
        if text[i] != "[":
            return None
        i = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
        out: list[bytes] = []
        while len(out) <= last and text[i] != "]":
            _, end = scan(text, i)
            out.append(text[i:end].encode("utf-8"))
            i = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
            if text[i] == ",":
                i = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
        return out if len(out) > last else None
    except (ValueError, IndexError, RecursionError, MemoryError):
        return None


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the pipeline needs it."""

    key: bytes | None
    value: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_s: float | None = None


def received_at(event: Event) -> int | None:
    """The event's ``received_at`` when it is a usable time (ms, 0..2**63-1), else None.

    >>> received_at({"received_at": 5}), received_at({"received_at": True}), received_at({})
    (5, None, None)
    """
    value = event.get("received_at")
    if type(value) is int and 0 <= value <= _INT_MAX:
        return value
    return None


class Pipeline:
    """Decode, step every event through the engine, keep the state.

    A batch of records is processed together: each session's state is read once and
    written once per batch, however many of its records the batch holds. That is
    what keeps a worker catching up on a backlog from writing the table per record.

    ``wall_clock`` (seconds, like :func:`time.time`) caps server times, so a producer's
    clock cannot move the fleet's ahead; None (replay) trusts the file's times.
    ``state_max_bytes`` is each session's stored-state budget (:meth:`SessionState.encode`).

    Effectively once (module docstring): ``committed(partition)`` is the committed
    offset of the events topic's partition, or None when unknown (without it,
    tombstones are freed after ``tombstone_ms`` of server time); ``write_scope(key)``
    is the context the sweep writes a key's tombstone in (a Faust store outside a
    batch needs one: :mod:`streamer.stream.positions`).

    ``defer_writes``: :meth:`process_batch` leaves the batch's state writes in
    ``Produced.writes`` for the caller to :meth:`apply` (the agent does, after the
    outputs are acknowledged); otherwise (replay, tests) they are applied at once.
    """

    def __init__(
        self,
        engine: Engine,
        states: MutableMapping[bytes, bytes],
        metrics: Metrics,
        *,
        max_record_bytes: int,
        state_max_bytes: int = STATE_MAX_BYTES,
        wall_clock: Callable[[], float] | None = time.time,
        tombstone_ms: int = TOMBSTONE_MS,
        committed: Callable[[int], int | None] | None = None,
        write_scope: Callable[[bytes], AbstractContextManager[object]] | None = None,
        decoded_states: int = DECODED_STATES,
        defer_writes: bool = False,
    ) -> None:
        self.engine = engine
        self.defer_writes = defer_writes
        self.states = states
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.state_max_bytes = state_max_bytes
        self.wall_clock = wall_clock
        self.tombstone_ms = tombstone_ms
        self.committed = committed
        self.write_scope: Callable[[bytes], AbstractContextManager[object]] = (
            write_scope or _no_scope)
        #: Per partition, the largest server time seen on it (ms): the fleet's clock
        #: there, which idle expiry reads. Never moves backwards.
        self.clocks: dict[int, int] = {}
        #: What the sweep needs of each stored state (:data:`_Known`), so it need not
        #: decode every one; a cache of the table (rebuilt from it for keys it has not seen).
        self._known: dict[bytes, _Known] = {}
        #: The keys of the tombstones this worker knows of (not active sessions).
        self._ended: set[bytes] = set()
        #: Session key -> (the bytes this pipeline wrote to the table, the state they
        #: encode), oldest written first, at most ``decoded_states``. An entry is good
        #: only while the table still holds that very bytes object (``is``): anything
        #: else that wrote the key (the sweep, a rebalance's recovery, another writer)
        #: put a different object there. A state handed out leaves the cache, and goes
        #: back only when written, so a state changed but not written is never reused.
        self._decoded: dict[bytes, tuple[bytes, SessionState]] = {}
        self.decoded_states = decoded_states
        self._count_scrub = metrics.count_scrub  # bound once, not per record
        #: Events counted by type in the current batch, added to the metric at its end:
        #: a labelled counter's inc takes a lock, once per batch and type is enough.
        self._by_type: dict[str, int] = {}
        #: Labelled children resolved once (``.labels()`` takes a lock and a dict):
        #: (id of the metric, *labels) -> child.
        self._children: dict[tuple[object, ...], Any] = {}

    @property
    def watermark(self) -> int:
        """The latest clock of any partition (0 before the first event)."""
        return max(self.clocks.values(), default=0)

    def active_sessions(self) -> int:
        """Sessions with state in the table, tombstones of ended ones not counted (a
        tombstone recovered from the changelog counts until the next sweep reads it)."""
        return max(0, len(self.states) - len(self._ended))

    def process(self, key: bytes | None, value: bytes | None, **meta: Any) -> Produced:
        """One record (see :meth:`process_batch`)."""
        return self.process_batch([Record(key, value, **meta)])

    def process_batch(self, records: Sequence[Record]) -> Produced:
        """Every record's outcomes and dead letters; never raises on any input."""
        m = self.metrics
        out = Produced()
        loaded: dict[bytes, SessionState] = {}
        #: The sessions a record was applied to, each with the partition it came from.
        written: dict[bytes, int] = {}
        cap = None
        if self.wall_clock is not None:
            cap = int(self.wall_clock() * 1000) + FUTURE_SLACK_MS
        timed = []
        m.records.inc(len(records))
        try:
            for record in records:
                try:
                    if self._process_record(out, record, loaded, written, cap):
                        timed.append(record)
                except Exception as exc:  # the last line of defense: a bug, not bad input
                    log.exception("internal error on %s[%d]@%d: record dead-lettered",
                                  record.topic, record.partition, record.offset)
                    detail = f"{type(exc).__name__} while processing the record"
                    self._refuse(out, InvalidEvent(INTERNAL_ERROR, detail), record,
                                 record.value or b"")
        finally:
            by_type, self._by_type = self._by_type, {}
            for kind, n in by_type.items():
                (m.events_by_type.get(kind) or m.events_by_type["other"]).inc(n)
        for session_key, partition in written.items():
            try:
                self._save(session_key, loaded[session_key], partition, out.writes)
            except Exception:
                self._dropped(session_key, write=False)
                out.writes.append((session_key, None, partition))
        if not self.defer_writes:
            self.apply(out.writes)
            out.writes = []
        now = time.time()
        for record in timed:  # a re-delivered record skipped whole decides nothing
            if record.timestamp_s is not None:
                m.latency.observe(max(0.0, now - record.timestamp_s))
        return out

    def apply(self, writes: Sequence[Write]) -> None:
        """Write ``writes`` (``Produced.writes``) to the state table, in order."""
        for session_key, raw, _partition in writes:
            try:
                if raw is None:
                    self.states.pop(session_key, None)
                else:
                    self.states[session_key] = raw
            except Exception:
                self._dropped(session_key)

    def _dropped(self, session_key: bytes, *, write: bool = True) -> None:
        # A state that cannot be written must not stop every later batch: the session
        # starts afresh.
        log.exception("internal error writing a session's state: state dropped")
        self.metrics.invalid_by_reason[INTERNAL_ERROR].inc()
        self._forget(session_key, write=write)

    def _load(self, session_key: bytes) -> SessionState | None:
        stored = self.states.get(session_key)
        cached = self._decoded.pop(session_key, None)
        if cached is not None and cached[0] is stored:
            return cached[1]
        return SessionState.from_json(stored) if stored else None

    def _keep_decoded(self, session_key: bytes, raw: bytes, state: SessionState) -> None:
        """Keep the state just written as ``raw`` for the key's next batch."""
        decoded = self._decoded
        decoded.pop(session_key, None)  # the most recently written goes last
        decoded[session_key] = (raw, state)
        while len(decoded) > self.decoded_states:
            del decoded[next(iter(decoded))]

    def _process_record(
        self, out: Produced, record: Record, loaded: dict[bytes, SessionState],
        written: dict[bytes, int], cap: int | None,
    ) -> bool:
        """Apply one record; False when it was a re-delivery, skipped whole."""
        key = record.key
        positioned = record.partition >= 0 and record.offset >= 0
        if key is not None and positioned:
            # A keyed record holds one session's events (the key is its id): one look at
            # that state tells a re-delivery, before any decoding or dead letter.
            state = loaded.get(key)
            if state is None and (state := self._load(key)) is not None:
                loaded[key] = state
            if state is not None and state.holds(record.partition, record.offset):
                self.metrics.redelivered.inc()
                return False
        raw = record.value or b""
        try:
            events, errors = decode_record(raw, key, max_bytes=self.max_record_bytes,
                                           on_scrub=self._count_scrub)
        except InvalidEvent as exc:
            self._refuse(out, exc, record, raw)
            return True
        if errors:
            # Each bad element's own bytes, cut out of the record; never re-serialized.
            pieces = element_bytes(raw, max(e.index or 0 for e in errors))
            for error in errors:
                index = error.index or 0
                self._refuse(out, error, record, raw if pieces is None else pieces[index])
        record_ms = None if record.timestamp_s is None else _record_ms(record.timestamp_s)
        # The record's own session was looked at above (no state there: a new one holds
        # nothing), so its events need no second look.
        checked: set[bytes] = {key} if key is not None and positioned else set()
        skipped: set[bytes] | None = None
        for event in events:
            # A keyless record may mix sessions: each event goes to its own state.
            session_key = event["session_id"].encode()
            state = loaded.get(session_key)
            if state is None:
                state = loaded[session_key] = (
                    self._load(session_key) or SessionState(event["session_id"]))
            if session_key not in checked:
                if state.holds(record.partition, record.offset):
                    if skipped is None:
                        skipped = set()
                    if session_key not in skipped:  # this session has the record already
                        skipped.add(session_key)
                        self.metrics.redelivered.inc()
                    continue
                checked.add(session_key)
            if state.ended_at is not None:
                # The session ended before this event (a tombstone, or earlier in this
                # batch): the id starts a new session, as when the end left nothing.
                state = loaded[session_key] = SessionState(event["session_id"])
            state.mark_applied(record.partition, record.offset)
            written[session_key] = record.partition
            server_ts = self._server_time(event, record_ms, cap)
            self._step(out, state, event, server_ts, record.partition)
            if event["type"] == "session_end":
                state.ended_at = state.seen_at if state.seen_at is not None else server_ts
        return True

    def _server_time(self, event: Event, record_ms: int | None, cap: int | None) -> int:
        """``received_at``, else the record's timestamp, else ``ts``; capped in the stream."""
        t = received_at(event)
        if t is None:
            t = record_ms if record_ms is not None else event["ts"]
        if cap is not None and t > cap:
            t = cap
        return int(t)

    def _save(
        self, session_key: bytes, state: SessionState, partition: int, writes: list[Write]
    ) -> None:
        # Assign, never mutate in place: only an assignment reaches the changelog.
        if state.ended_at is not None and not state.applied:
            # Ended, and without a Kafka position (replay): nothing can come again.
            self._forget(session_key, write=False)
            writes.append((session_key, None, partition))
            return
        raw, dropped = state.encode(self.state_max_bytes)  # an ended state: its tombstone
        for part, n in dropped.items():
            self.metrics.state_trimmed.labels(part).inc(n)
        writes.append((session_key, raw, partition))
        self._note(session_key, state, partition)
        if state.ended_at is None and self.decoded_states > 0:
            self._keep_decoded(session_key, raw, state)

    def _note(self, session_key: bytes, state: SessionState, partition: int | None) -> None:
        """Remember what the sweep needs of a stored state (:data:`_Known`)."""
        if state.ended_at is None:
            self._known[session_key] = (partition, state.seen_at, None, None)
            self._ended.discard(session_key)
        else:
            self._known[session_key] = (partition, None, state.ended_at, dict(state.applied))
            self._ended.add(session_key)

    def _forget(self, session_key: bytes, *, write: bool = True) -> None:
        if write:
            self.states.pop(session_key, None)
        self._decoded.pop(session_key, None)
        self._known.pop(session_key, None)
        self._ended.discard(session_key)

    def _step(
        self, out: Produced, state: SessionState, event: Event, server_ts: int, partition: int
    ) -> None:
        m = self.metrics
        clock = self.clocks.get(partition, 0)
        if server_ts > clock:
            self.clocks[partition] = clock = server_ts
        first = state.clock_offset is None
        drift = state.note_time(event["ts"], server_ts, clock)
        if first and abs(server_ts - event["ts"]) > CLOCK_SKEW_MS:
            m.clock_skew.labels("offset").inc()
        elif abs(drift) > CLOCK_SKEW_MS:
            m.clock_skew.labels("drift").inc()
        started = time.perf_counter()
        outcome = self.engine.step(state, event, server_ts)
        if outcome.duplicate:
            m.duplicates.inc()
            return
        by_type = self._by_type
        kind = event["type"]
        by_type[kind] = by_type.get(kind, 0) + 1
        if outcome.risk is not None or outcome.anomaly is not None:
            m.model_step.observe(time.perf_counter() - started)
            if outcome.anomaly is not None:
                m.anomaly_score.observe(outcome.anomaly)
        # Without a signal there is no decision: only a result can be left to count.
        if outcome.signals or outcome.result is not None:
            self._count(outcome)
        if outcome.signals:
            out.outcomes.append(outcome)

    def _count(self, outcome: Outcome) -> None:
        m, child = self.metrics, self._child
        for signal in outcome.signals:
            child(m.signals, signal.detector).inc()
            child(m.friction_by_route, outcome.route or "other", signal.detector).inc()
        if outcome.decision is not None:
            d = outcome.decision
            child(m.interventions, d.kind, "true" if d.delivered else "false").inc()
        if outcome.result is not None:
            child(m.outcomes, outcome.result, outcome.group or "none").inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, resolved once per label values."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def _refuse(self, out: Produced, exc: InvalidEvent, record: Record, value: bytes) -> None:
        self.metrics.invalid_by_reason[exc.reason].inc()
        out.dead_letters.append(
            dead_letter(exc, record.key, value, record.topic, record.partition, record.offset)
        )

    def sweep(
        self, idle_ms: int, owns: Callable[[bytes], bool] = lambda key: True
    ) -> list[Outcome]:
        """Expire sessions idle for ``idle_ms`` of the fleet's clock; free tombstones.

        A session is idle when its ``seen_at`` (the server time of its latest event;
        ``last_ts`` for states written before there was one) is more than ``idle_ms``
        behind the clock of its partition (of all partitions for a state recovered from
        the changelog that this worker has not stepped yet). Each gets its outcome
        (abandoned, unless it converted), and its state becomes a tombstone (or is freed,
        without a Kafka position). A tombstone is never expired (no second outcome) and
        is freed once no record it holds can be delivered again: when the committed
        offset has passed it on each partition, or, where that cannot be read, when the
        partition's clock is ``tombstone_ms`` past its end. ``owns`` says whether this
        worker is the active owner of a key (a standby copy must not be expired or freed
        by a worker that does not own it). A state that cannot be expired (a bug) is
        logged, counted as ``internal_error`` and freed.
        """
        expired = []
        watermark = self.watermark
        known, self._known, self._ended = self._known, {}, set()
        for session_key in list(self.states.keys()):
            try:
                entry = known.get(session_key)
                if entry is None:  # recovered from the changelog: decode once
                    stored = SessionState.from_json(self.states[session_key])
                    entry = _entry(stored, None)
                partition, seen, ended_at, applied = entry
                if ended_at is not None:  # a tombstone
                    if owns(session_key) and self._releasable(ended_at, applied or {}):
                        self.states.pop(session_key, None)
                    else:
                        self._known[session_key] = entry
                        self._ended.add(session_key)
                    continue
                clock = watermark if partition is None else self.clocks.get(partition, 0)
                if seen is None or seen >= clock - idle_ms or not owns(session_key):
                    self._known[session_key] = entry
                    continue
                state = SessionState.from_json(self.states[session_key])
                outcome = self.engine.expire(state)
                self._count(outcome)
                expired.append(outcome)
                if state.applied:
                    tombstone = state.tombstone(clock)
                    with self.write_scope(session_key):
                        self.states[session_key] = tombstone.encode()[0]
                    self._note(session_key, tombstone, partition)
                    continue
            except Exception:
                if not _owned(owns, session_key):
                    continue  # another worker's state: never ours to drop
                log.exception("internal error expiring a session: state dropped")
                self.metrics.invalid_by_reason[INTERNAL_ERROR].inc()
            self.states.pop(session_key, None)
        self.metrics.tombstones.set(len(self._ended))
        return expired

    def _releasable(self, ended_at: int, applied: Mapping[str, int]) -> bool:
        """True when no record a tombstone holds can be delivered again."""
        for name, offset in applied.items():
            partition = int(name)
            committed = self._committed(partition)
            if committed is not None:
                if committed <= offset:  # Kafka's committed offset: the next one to read
                    return False
            elif self.clocks.get(partition, ended_at) - ended_at < self.tombstone_ms:
                return False
        return True

    def _committed(self, partition: int) -> int | None:
        if self.committed is None:
            return None
        try:
            offset = self.committed(partition)
        except Exception:  # read from a consumer's internals: never fatal here
            log.debug("committed offset of partition %d unreadable", partition, exc_info=True)
            return None
        return offset if type(offset) is int and offset >= 0 else None


def _entry(state: SessionState, partition: int | None) -> _Known:
    if state.ended_at is None:
        return (partition, _seen_at(state), None, None)
    return (partition, None, state.ended_at, dict(state.applied))


def _no_scope(key: bytes) -> AbstractContextManager[object]:
    return nullcontext()


def _owned(owns: Callable[[bytes], bool], key: bytes) -> bool:
    try:
        return owns(key)
    except Exception:
        return False


def _seen_at(state: SessionState) -> int | None:
    return state.seen_at if state.seen_at is not None else state.last_ts


def _record_ms(timestamp_s: float | None) -> int | None:
    """A Kafka record's timestamp in ms, or None when it has none (Kafka says -1)."""
    if timestamp_s is None or not math.isfinite(timestamp_s) or timestamp_s <= 0:
        return None
    return min(int(timestamp_s * 1000), _INT_MAX)
