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

import hashlib
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
#: Every string the state stores (pages, error details, checkout step, codes, reasons),
#: in UTF-8 bytes: bytes, not characters, are what fill a changelog record.
MAX_TEXT = 200
#: A signal's evidence goes into the state, the signal record, the intervention's
#: reasons and the handoff context: every string in it is cut to MAX_EVIDENCE_BYTES of
#: UTF-8 (keys to MAX_EVIDENCE_KEY_BYTES), each dict or list to MAX_EVIDENCE_ITEMS
#: entries, MAX_EVIDENCE_DEPTH levels, and the whole to MAX_EVIDENCE_TOTAL serialized.
MAX_EVIDENCE_BYTES = 200
MAX_EVIDENCE_KEY_BYTES = 40
MAX_EVIDENCE_ITEMS = 16
MAX_EVIDENCE_DEPTH = 3
MAX_EVIDENCE_TOTAL = 2048
#: The handoff summary, in UTF-8 bytes: it is shown to people.
MAX_SUMMARY_BYTES = 300
#: The whole handoff context, serialized (oldest signals, errors, pages dropped first).
MAX_CONTEXT_BYTES = 8 * 1024
#: A session's stored state, serialized: the default budget of :meth:`SessionState.encode`
#: (setting ``state_max_bytes``). Far below Kafka's 1 MB record limit: the state is the
#: value of a changelog record.
STATE_MAX_BYTES = 16 * 1024
#: What the budget drops, in this order, oldest item first (metric label ``part``).
#: Seen event ids go last: as tags they are small, and without them a retried beacon
#: would count twice.
TRIM_PARTS: Final = ("errors", "pages", "signals", "checkout", "detectors", "seen_ids")
#: Partitions whose latest applied record a session remembers (``SessionState.applied``).
#: A keyed session's records all come from one partition; keyless records may spread a
#: session over several, and past this many the least recently used one is forgotten.
MAX_APPLIED_PARTITIONS: Final = 8
#: What an ended session keeps (its tombstone, :meth:`SessionState.tombstone`).
TOMBSTONE_FIELDS: Final = ("session_id", "seq", "ended_at", "applied")

#: The names of the nudge variant a session was shown (``state.model["variant"]``).
VARIANT_KEYS: Final = ("message_key", "arm", "intervention_id", "rewarded")


def _push(items: list[Any], item: Any, bound: int) -> None:
    items.append(item)
    del items[:-bound]


def clip(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, at a character boundary.

    >>> clip("abc", 2), clip("\\N{GRINNING FACE}" * 3, 9) == "\\N{GRINNING FACE}" * 2
    ('ab', True)
    """
    if len(text) * 4 <= max_bytes:  # a character is at most 4 bytes
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def _stored(value: Any) -> Any:
    """A string for the state, clipped to :data:`MAX_TEXT` bytes; other values as they are."""
    return clip(value, MAX_TEXT) if isinstance(value, str) else value


def id_tag(event_id: str) -> int:
    """A fixed-size tag of an event id (64-bit BLAKE2b, as a non-negative int < 2**63).

    A session remembers tags, not ids: an id may be kilobytes, a tag is at most 19
    digits. Two different ids of one session share a tag with probability ~2**-63 per pair.

    >>> id_tag("e-1") == id_tag("e-1") != id_tag("e-2"), 0 <= id_tag("x" * 4096) < 2**63
    (True, True)
    """
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def bounded_evidence(value: Any, depth: int = MAX_EVIDENCE_DEPTH) -> Any:
    """Evidence made safe to store and send: strings clipped to :data:`MAX_EVIDENCE_BYTES`
    (keys to :data:`MAX_EVIDENCE_KEY_BYTES`), containers to :data:`MAX_EVIDENCE_ITEMS`
    entries and :data:`MAX_EVIDENCE_DEPTH` levels, integers to 64 bits (orjson's limit);
    anything else becomes its ``str``, clipped.

    >>> evidence = bounded_evidence({"code": "9" * 1000, "n": 3, "deep": [[[1]]], 7: 2**70})
    >>> len(evidence["code"]), evidence["n"], evidence["deep"], evidence["7"]
    (200, 3, [None], None)
    """
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, str):
        return clip(value, MAX_EVIDENCE_BYTES)
    if depth <= 1:
        return None
    if isinstance(value, dict):
        return {clip(str(k), MAX_EVIDENCE_KEY_BYTES): bounded_evidence(v, depth - 1)
                for k, v in list(value.items())[:MAX_EVIDENCE_ITEMS]}
    if isinstance(value, (list, tuple)):
        return [bounded_evidence(v, depth - 1) for v in value[:MAX_EVIDENCE_ITEMS]]
    return clip(str(value), MAX_EVIDENCE_BYTES)


def _small(evidence: dict[str, Any]) -> bool:
    """True when the evidence is flat and short, as detectors make it: nothing to clip.

    Counts 6 bytes a character (JSON's longest escape) and 24 a number.
    """
    if len(evidence) > MAX_EVIDENCE_ITEMS:
        return False
    size = 0
    for key, value in evidence.items():
        if not isinstance(key, str) or len(key) * 6 > MAX_EVIDENCE_KEY_BYTES * 4:
            return False
        size += 6 * len(key) + 4
        if isinstance(value, str):
            size += 6 * len(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                return False
            size += 24
        elif value is None or isinstance(value, (bool, float)):
            size += 24
        else:
            return False
    return size <= MAX_EVIDENCE_TOTAL


def bounded_signal(signal: Signal) -> Signal:
    """The signal with :func:`bounded_evidence`, at most :data:`MAX_EVIDENCE_TOTAL` bytes
    serialized (else its numbers only, with ``"clipped": true``); the same object when
    nothing needs it.

    >>> big = Signal("rage_click", 1.0, 5, evidence={f"k{i}": "x" * 200 for i in range(15)} | {"n": 3})
    >>> bounded_signal(big).evidence
    {'n': 3, 'clipped': True}
    """
    if _small(signal.evidence):
        return signal
    evidence = bounded_evidence(signal.evidence)
    if not isinstance(evidence, dict):
        evidence = {"clipped": True}
    elif len(orjson.dumps(evidence)) > MAX_EVIDENCE_TOTAL:
        evidence = {k: v for k, v in evidence.items()
                    if v is None or isinstance(v, (bool, int, float))} | {"clipped": True}
        if len(orjson.dumps(evidence)) > MAX_EVIDENCE_TOTAL:
            evidence = {"clipped": True}
    return replace(signal, evidence=evidence)


def _exact(raw: bytes) -> bytes:
    """``raw`` in a bytes object of its own size. orjson's results keep the buffer they
    were written into (4 KB or more each, whatever their length), and a stored state
    lives as long as its session: it was most of a worker's memory per open session.

    >>> _exact(orjson.dumps({"seq": 1}))
    b'{"seq":1}'
    """
    return memoryview(raw).tobytes()


def _drop_oldest(items: list[Any], excess: int) -> int:
    """Drop items from the front until about ``excess`` bytes are gone; how many went."""
    freed = dropped = 0
    while dropped < len(items) and freed < excess:
        freed += len(orjson.dumps(items[dropped])) + 1
        dropped += 1
    del items[:dropped]
    return dropped


@dataclass(slots=True)
class SessionState:
    """What one session remembers; JSON all the way down, bounded in size.

    Bounded twice: in counts (at most :data:`MAX_PAGES` pages, ...), and in bytes:
    every stored string is clipped (:data:`MAX_TEXT`, :data:`MAX_EVIDENCE_BYTES`), event
    ids are kept as fixed-size tags (:func:`id_tag`), and :meth:`encode` holds the
    serialized state to a byte budget, dropping the oldest detail first.

    Two clocks: ``first_ts``/``last_ts`` are the client's (the events' ``ts``: order
    and gaps within this session); ``seen_at`` is the fleet's (the server time when the
    session's latest event was processed, :meth:`note_time`), which idle expiry reads.
    ``clock_offset`` is server time minus ``ts`` at the session's first event.
    """

    session_id: str
    seq: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    pages: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    checkout: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    #: :func:`id_tag` of the latest event ids (retried beacons are skipped on them).
    seen_ids: list[int] = field(default_factory=list)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    signal_counts: dict[str, int] = field(default_factory=dict)
    #: The models' slice: ``snap`` (the last risk :func:`~detectors.model.snapshot`),
    #: ``result``, ``holdout``, ``flagged``, ``variant`` (the nudge variant shown, a
    #: dict of :data:`VARIANT_KEYS`) and ``uplift`` (the decision the uplift model
    #: learns from: ``keys``, ``action``, ``shown``, ``estimate``).
    model: dict[str, Any] = field(default_factory=dict)
    #: The fleet's clock (server time, ms) when this session's latest event was processed.
    seen_at: int | None = None
    #: Server time minus the client's ``ts`` at the session's first event.
    clock_offset: int | None = None
    #: Where the state stands in Kafka: per partition of the events topic (its number
    #: as a string, JSON's way), the offset of the latest record applied to it. A record
    #: at or below it is a re-delivery (after a restart or a rebalance) and is not
    #: applied again (:meth:`holds`). Written with the state, so it survives exactly as
    #: the state does; never trimmed by :meth:`encode`. Empty for events without a Kafka
    #: position (replay, tests).
    applied: dict[str, int] = field(default_factory=dict)
    #: The fleet's clock (server time, ms) when the session ended (``session_end`` or
    #: idle expiry). An ended state is stored as its :meth:`tombstone`.
    ended_at: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    def holds(self, partition: int, offset: int) -> bool:
        """True when the record at ``partition``/``offset`` was applied to this state
        already: a re-delivery. Never for a record without a Kafka position (-1).

        >>> state = SessionState("s")
        >>> state.mark_applied(3, 120)
        >>> state.holds(3, 120), state.holds(3, 119), state.holds(3, 121), state.holds(2, 5)
        (True, True, False, False)
        >>> state.mark_applied(-1, -1)
        >>> state.holds(-1, -1), state.applied
        (False, {'3': 120})
        """
        if partition < 0 or offset < 0:
            return False
        return self.applied.get(str(partition), -1) >= offset

    def mark_applied(self, partition: int, offset: int) -> None:
        """Note that the record at ``partition``/``offset`` is being applied (no-op for a
        record without a Kafka position)."""
        if partition < 0 or offset < 0:
            return
        name = str(partition)
        if self.applied.get(name) == offset:
            return
        self.applied.pop(name, None)  # the most recently used partition goes last
        self.applied[name] = offset
        while len(self.applied) > MAX_APPLIED_PARTITIONS:
            del self.applied[next(iter(self.applied))]

    def tombstone(self, ended_at: int) -> SessionState:
        """What is kept of the session once it ended: its id, how many events it had,
        when it ended (server time) and where it stands in Kafka, so that its records,
        delivered again, are recognised and skipped. :meth:`encode` writes only these
        fields (:data:`TOMBSTONE_FIELDS`): under 100 bytes besides the id.

        >>> tomb = SessionState("s", seq=40, pages=["/a"], applied={"0": 7}).tombstone(1_767_225_600_000)
        >>> tomb.encode()[0]
        b'{"session_id":"s","seq":40,"ended_at":1767225600000,"applied":{"0":7}}'
        >>> SessionState.from_json(tomb.encode()[0]) == tomb
        True
        """
        return SessionState(self.session_id, seq=self.seq, applied=dict(self.applied),
                            ended_at=ended_at)

    def encode(self, max_bytes: int = STATE_MAX_BYTES) -> tuple[bytes, dict[str, int]]:
        """The state as JSON of at most ``max_bytes``, and what was dropped to fit.

        Over budget, the oldest detail goes first, part by part in :data:`TRIM_PARTS`
        order: errors, pages, signals, checkout reasons and codes, then whole detector
        slices, largest first (that detector starts afresh for this session), and the
        seen event ids last. Counters, the policy's and the models' slices are small by
        construction and always kept, and so is where the state stands in Kafka
        (``applied``). An ended state is written as its :meth:`tombstone`. The returned
        dict counts dropped items by part.

        >>> state = SessionState("s", pages=[f"/p/{i}" for i in range(100)], seen_ids=[1, 2])
        >>> raw, dropped = state.encode(512)
        >>> len(raw) <= 512, dropped, state.pages[-1], state.seen_ids
        (True, {'pages': 68}, '/p/99', [1, 2])
        """
        if self.ended_at is not None:
            raw = orjson.dumps({name: getattr(self, name) for name in TOMBSTONE_FIELDS})
            return _exact(raw), {}
        raw = orjson.dumps(self)
        dropped: dict[str, int] = {}
        while len(raw) > max_bytes:
            part = self._trim(len(raw) - max_bytes)
            if part is None:
                break  # nothing left to drop: what remains is small by construction
            dropped[part[0]] = dropped.get(part[0], 0) + part[1]
            raw = orjson.dumps(self)
        return _exact(raw), dropped

    def _trim(self, excess: int) -> tuple[str, int] | None:
        """Drop about ``excess`` bytes of the first part that has any: (part, items)."""
        for part, items in (("errors", self.errors), ("pages", self.pages),
                            ("signals", self.signals), ("checkout", self.checkout.get("reasons")),
                            ("checkout", self.checkout.get("codes"))):
            n = _drop_oldest(items, excess) if isinstance(items, list) else 0
            if n:
                return part, n
        if self.detectors:
            largest = max(self.detectors, key=lambda name: len(orjson.dumps(self.detectors[name])))
            del self.detectors[largest]
            return "detectors", 1
        n = _drop_oldest(self.seen_ids, excess)
        return ("seen_ids", n) if n else None

    @classmethod
    def from_json(cls, raw: bytes) -> SessionState:
        """Decode a stored state, including one written by an older version (changelogs
        keep those): the model slice's old key names (see :func:`_named_model_keys`)
        and raw event ids instead of their tags; keys a newer version added are ignored."""
        data = orjson.loads(raw)
        if data.get("model"):
            _named_model_keys(data["model"])
        seen = data.get("seen_ids")
        if seen and not all(type(i) is int for i in seen):
            data["seen_ids"] = [i if type(i) is int else id_tag(str(i)) for i in seen]
        try:
            return cls(**data)
        except TypeError:  # written by a newer version: keep what this one knows
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def note_time(self, ts: int, server_ts: int, clock: int) -> int:
        """Note an event's times: its client ``ts``, its ``server_ts`` (receive time),
        and the fleet's ``clock`` (monotone, at least every server time seen so far).

        Returns the event's drift: how far its ``ts``, corrected by the session's own
        clock offset, is from its server time (0 for the session's first event, which
        sets the offset). Nothing here trusts ``ts`` as a clock; the caller counts a
        large drift.

        >>> state = SessionState("s")
        >>> state.note_time(1_000, 61_000, 61_000), state.clock_offset  # clock 1 min behind
        (0, 60000)
        >>> state.note_time(2_000, 62_000, 62_000), state.note_time(10**12, 63_000, 63_000)
        (0, -999999997000)
        >>> state.seen_at
        63000
        """
        if self.clock_offset is None:
            self.clock_offset = server_ts - ts
            drift = 0
        else:
            drift = server_ts - (ts + self.clock_offset)
        if self.seen_at is None or clock > self.seen_at:
            self.seen_at = clock
        return drift

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
            _push(self.pages, clip(url_path(event["page"]), MAX_TEXT), MAX_PAGES)
        elif kind == "checkout_attempt":
            self.checkout["attempts"] = self.checkout.get("attempts", 0) + 1
            if event.get("step") is not None:
                self.checkout["step"] = _stored(event["step"])
        elif kind == "checkout_failed":
            self.checkout["failures"] = self.checkout.get("failures", 0) + 1
            for key in ("reason", "code"):
                if event.get(key) is not None:
                    seen = self.checkout.setdefault(key + "s", [])
                    value = _stored(event[key])
                    if value not in seen:
                        _push(seen, value, MAX_ERRORS)
        elif kind == "purchase":
            self.checkout["purchased"] = True
        elif kind in ("js_error", "http_error", "form_error"):
            error = {"type": kind, "ts": ts, "page": clip(url_path(event.get("page") or ""), MAX_TEXT)}
            if kind == "http_error":
                error.update(url=clip(url_path(event["url"]), MAX_TEXT), status=event["status"])
            elif kind == "form_error":
                error["field"] = _stored(event["field"])
            else:
                error["message"] = _stored(event["message"])
            _push(self.errors, error, MAX_ERRORS)

    def context(self) -> dict[str, Any]:
        """The handoff summary: enough for a person to help without asking again.

        Paths only (no query strings), no user id, no typed values, no click text.
        Bounded: the summary to :data:`MAX_SUMMARY_BYTES` (each code in it to 40), the
        whole context to :data:`MAX_CONTEXT_BYTES` serialized (the oldest signals, errors,
        pages, then checkout codes and reasons are left out first).
        """
        failures = self.checkout.get("failures", 0)
        parts = []
        if failures:
            codes = ", ".join(clip(str(c), 40) for c in self.checkout.get("codes", []))
            parts.append(f"{failures} failed payment(s)" + (f" ({codes})" if codes else ""))
        detectors = sorted({s["detector"] for s in self.signals} - {"checkout_failure"})
        if detectors:
            parts.append("signals: " + ", ".join(detectors))
        if self.errors:
            parts.append(f"{len(self.errors)} recent error(s)")
        checkout = {k: list(v) if isinstance(v, list) else v for k, v in self.checkout.items()}
        context = {
            "summary": clip("; ".join(parts) or "customer asked for help", MAX_SUMMARY_BYTES),
            "current_page": self.pages[-1] if self.pages else None,
            "pages": list(self.pages),
            "checkout": checkout,
            "errors": list(self.errors),
            "signals": list(self.signals),
            "events_seen": self.seq,
            "duration_s": ((self.last_ts or 0) - (self.first_ts or 0)) / 1000,
        }
        size = len(orjson.dumps(context))
        for items in (context["signals"], context["errors"], context["pages"],
                      checkout.get("reasons"), checkout.get("codes")):
            if size <= MAX_CONTEXT_BYTES:
                break
            if isinstance(items, list):
                _drop_oldest(items, size - MAX_CONTEXT_BYTES)
                size = len(orjson.dumps(context))
        return context


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
    #: The fleet's time of the event (its server receive time), set by the caller that
    #: knows it (the pipeline); fleet-wide incidents run on it, never on ``ts``.
    server_ts: int | None = None
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


#: How many sessions' quiet outcomes an engine keeps (:meth:`Engine._quiet`).
QUIET_OUTCOMES: Final = 4096

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
    #: Event type -> the detectors that read it (their ``types``), in ``detectors``
    #: order; :meth:`for_type` reads it. Most detectors read one to three types, and
    #: calling each on every event was a tenth of the engine's time.
    by_type: Mapping[str, tuple[Detector, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict)
    #: The detectors without ``types``: they see every event.
    everywhere: tuple[Detector, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        everywhere = tuple(d for d in self.detectors if getattr(d, "types", None) is None)
        named = {t for d in self.detectors for t in getattr(d, "types", None) or ()}
        by_type = {t: tuple(d for d in self.detectors
                            if getattr(d, "types", None) is None or t in d.types)  # type: ignore[attr-defined]
                   for t in named}
        object.__setattr__(self, "everywhere", everywhere)
        object.__setattr__(self, "by_type", by_type)

    def for_type(self, kind: str) -> tuple[Detector, ...]:
        """The detectors to call on an event of type ``kind``, in order.

        >>> [d.name for d in Rules().for_type("scroll")], Rules().for_type("made_up")
        (['excessive_scroll'], ())
        """
        return self.by_type.get(kind, self.everywhere)

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
        self, choose: Callable[[tuple[Action, ...], Action], tuple[str | None, float | None]]
    ) -> Callable[[tuple[Action, ...], Action], Action | None]:
        def target(allowed: tuple[Action, ...], kind: Action) -> Action | None:
            self.kind = kind
            chosen, self.estimate = choose(allowed, kind)
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
        #: session id -> ``Outcome(session_id)``, what most events produce. An outcome is
        #: immutable, so one per session serves all its quiet events; making one costs
        #: more (15 frozen fields) than most detectors. Bounded: cleared when full.
        self._quiet_outcomes: dict[str, Outcome] = {}

    def _quiet(self, session_id: str) -> Outcome:
        """``Outcome(session_id)``: nothing raised, decided or learned."""
        quiet = self._quiet_outcomes.get(session_id)
        if quiet is None:
            if len(self._quiet_outcomes) >= QUIET_OUTCOMES:
                self._quiet_outcomes.clear()
            quiet = self._quiet_outcomes[session_id] = Outcome(session_id)
        return quiet

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

    def step(self, state: SessionState, event: Event, server_ts: int | None = None) -> Outcome:
        """Remember the event, run the detectors, maybe the models, let the policy decide.

        The risk model scores only when this event raised a signal and the session can
        still get an intervention: elsewhere its score could not change a decision.
        The anomaly model looks at milestone events of sessions that can still get
        one. Where the rules would intervene, in the targeted arm (``[policy]
        uplift_share``), the uplift model chooses once it is warm (guard rails
        excepted). All learn from outcomes (purchase, session_end, or :meth:`expire`).

        ``server_ts``, the event's server time when the caller knows it (the pipeline),
        goes into the outcomes that carry signals (``Outcome.server_ts``).
        """
        outcome = self._step(state, event, server_ts)
        if self.on_outcome is not None:
            self.on_outcome(state, event, outcome)
        return outcome

    def _step(self, state: SessionState, event: Event, server_ts: int | None) -> Outcome:
        event_id = event.get("event_id")
        if event_id is not None:
            # Beacons are retried; the same event must not count twice.
            tag = id_tag(str(event_id))
            if tag in state.seen_ids:
                return Outcome(state.session_id, duplicate=True)
            _push(state.seen_ids, tag, MAX_SEEN_IDS)
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
        slices = state.detectors
        for detector in rules.by_type.get(kind, rules.everywhere):
            # get, not setdefault(name, {}): that made an empty dict on every call.
            mine = slices.get(detector.name)
            if mine is None:
                mine = slices[detector.name] = {}
            signal = detector.step(mine, event)
            if signal is not None:
                signals.append(bounded_signal(signal))
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
            if anomaly is None and result is None and group is None and estimate is None:
                return self._quiet(state.session_id)
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
            target = asked.target(lambda allowed, kind: uplift.choose(
                keys, allowed, handoff_cost=cost, session=state.session_id, default=kind))
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
                       anomaly=anomaly, result=result, group=group, route=route,
                       server_ts=server_ts, arm=arm, rules_kind=rules_kind, estimate=estimate)

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
                models.uplift.learn(decided["keys"], action, not abandoned,
                                    decided=decided["action"])
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
