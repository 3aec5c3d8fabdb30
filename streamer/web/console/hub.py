"""The console's live state and its SSE frames: counters, interventions, incidents.

Three inputs, none of which ever waits for a console client:

- :meth:`ConsoleHub.sample`, once a second (a worker timer): this worker's own counters
  (:class:`~streamer.metrics.Metrics`: events, signals by detector), as the increase
  since the last sample, and the nudges and handoffs the feed saw in that second;
- :meth:`ConsoleHub.intervention`, a tap of the intervention feed
  (:attr:`streamer.web.delivery.Fanout.taps`): every record of
  ``frictionwatch.interventions``, the fleet's, holdout included;
- :meth:`ConsoleHub.incident`, records of ``frictionwatch.incidents`` read from the
  beginning by the same consumer, folded into the incidents open now.

Out go SSE frames, each bounded in bytes: ``snapshot`` (everything, on connect and after
a client fell behind), ``tick`` (one sample), ``intervention`` and ``incident``. Every
console client has a queue of at most ``queue`` frames: a client that cannot keep up
loses its oldest frames (counted in ``frictionwatch_console_dropped_frames_total``) and
gets a fresh snapshot instead, so its view is whole again; the worker never waits.

What the console shows is what the outputs already hold, read again through
:mod:`detectors.scrub` (interventions and incidents are read from topics anyone with
Kafka access may write to): ids that are machine words, free text scrubbed and capped in
bytes, no evidence (it holds selectors and error texts), a handoff's context only on
request (:meth:`ConsoleHub.handoff`), bounded in depth, length and bytes.

>>> from streamer.metrics import Metrics
>>> hub = ConsoleHub(Metrics(), clock=lambda: 1000.0)
>>> hub.intervention({"intervention_id": "i1", "session_id": "s1", "kind": "handoff",
...     "ts": 5, "reasons": [{"detector": "help_request", "strength": 1.0, "evidence": {}}],
...     "message": "A person will help", "risk": 0.8, "delivered": True,
...     "context": {"summary": "customer asked for help", "current_page": "/cart",
...                 "pages": ["/", "/cart"], "errors": []}}, 999.5)
>>> snapshot = orjson.loads(hub.snapshot().split(b"data: ", 1)[1])
>>> item = snapshot["interventions"][0]
>>> item["kind"], item["summary"], item["reasons"], "evidence" in str(item)
('handoff', 'customer asked for help', [{'detector': 'help_request', 'strength': 1.0}], False)
>>> hub.handoff("i1")["context"]["pages"]
['/', '/cart']
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson

from detectors.scrub import CODE_RE, clean_text
from streamer.metrics import Metrics
from streamer.web.delivery import KINDS, sse_frame

log = logging.getLogger(__name__)

#: Latest interventions kept (and sent in a snapshot); open incidents; recent closes.
MAX_INTERVENTIONS = 50
MAX_INCIDENTS = 50
MAX_CLOSED = 10
#: Intervention ids remembered to drop repeats (Kafka delivers at least once), beyond
#: the list itself.
MAX_SEEN_IDS = 4096
#: Seconds of per-second samples kept for the charts: "the last minutes".
WINDOW_S = 300
#: Detector series in a frame at most (the signal counter's labels are the registry's
#: detectors, so this is a guard, not a limit anyone meets).
MAX_DETECTORS = 24
MAX_REASONS = 12
#: Frames a client's queue holds before its oldest are dropped.
QUEUE_FRAMES = 64
#: Byte bounds: one intervention, incident or tick frame (its text fields are capped in
#: UTF-8 bytes; JSON escapes at most six-fold); a snapshot; a handoff's context.
MAX_FRAME_BYTES = 8 * 1024
MAX_SNAPSHOT_BYTES = 256 * 1024
MAX_CONTEXT_BYTES = 12 * 1024
#: Free text in what the console shows, in UTF-8 bytes.
MAX_MESSAGE_BYTES = 512
MAX_SUMMARY_BYTES = 300
MAX_PATH_BYTES = 200
MAX_ID_BYTES = 128
#: A handoff context as a tree: how deep, how many items per list or object.
MAX_DEPTH = 4
MAX_ITEMS = 32


def _text(value: Any, max_bytes: int) -> str | None:
    return clean_text(value, max_bytes) if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any, digits: int) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return round(float(value), digits)
    return None


def _code(value: Any) -> str | None:
    return value if isinstance(value, str) and CODE_RE.fullmatch(value) else None


def intervention_view(record: dict[str, Any], kafka_ts_s: float | None) -> dict[str, Any] | None:
    """One line of the console's intervention list, bounded (about 1.2 KiB of text); None for a
    record not fit to show (an id that is not a machine word, an unknown kind).

    >>> view = intervention_view({"intervention_id": "i9", "session_id": "jane@example.com",
    ...     "kind": "nudge", "ts": 7, "message": "Need help? " * 500, "risk": 0.123456,
    ...     "reasons": [{"detector": "rage_click", "strength": 0.5,
    ...                  "evidence": {"target": "#pay"}}] * 40, "delivered": False}, 1.5)
    >>> view["session_id"], len(view["message"]), len(view["reasons"]), view["risk"], view["at"]
    ('[email]', 512, 12, 0.123, 1500)
    >>> intervention_view({"intervention_id": "i 9", "kind": "nudge"}, None) is None
    True
    """
    iid, kind = _code(record.get("intervention_id")), record.get("kind")
    if iid is None or kind not in KINDS:
        return None
    reasons = record.get("reasons")
    view: dict[str, Any] = {
        "id": iid, "kind": kind,
        "session_id": _text(record.get("session_id"), MAX_ID_BYTES),
        "ts": _int(record.get("ts")),
        "at": round(kafka_ts_s * 1000) if kafka_ts_s is not None else None,
        "delivered": record.get("delivered") is True,
        "reasons": [
            {"detector": r["detector"], "strength": _number(r.get("strength"), 2)}
            for r in (reasons if isinstance(reasons, list) else [])[:MAX_REASONS]
            if isinstance(r, dict) and _code(r.get("detector"))
        ],
        "message": _text(record.get("message"), MAX_MESSAGE_BYTES),
        "risk": _number(record.get("risk"), 3),
    }
    context = record.get("context")
    if kind == "handoff" and isinstance(context, dict):
        view["summary"] = _text(context.get("summary"), MAX_SUMMARY_BYTES)
        view["page"] = _text(context.get("current_page"), MAX_PATH_BYTES)
    return view


def context_view(value: Any, depth: int = 0) -> Any:
    """A handoff's context as the console shows it: the same tree, every string scrubbed
    and capped, at most :data:`MAX_ITEMS` per list or object, :data:`MAX_DEPTH` deep.

    >>> view = context_view({"errors": [{"message": "card 4111 1111 1111 1111",
    ...     "deep": {"a": {"b": 1}}}], "pages": list(range(100)), "bad key!": 1})
    >>> view["errors"], len(view["pages"]), "bad key!" in view
    ([{'message': 'card [card]', 'deep': {'a': None}}], 32, False)
    """
    if isinstance(value, str):
        return clean_text(value, MAX_SUMMARY_BYTES)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, 3) if isinstance(value, float) else value
    if depth >= MAX_DEPTH and isinstance(value, dict | list):
        return None
    if isinstance(value, list):
        return [context_view(v, depth + 1) for v in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {k: context_view(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]
                if isinstance(k, str) and CODE_RE.fullmatch(k)}
    return None


def incident_view(record: dict[str, Any], kafka_ts_s: float | None) -> dict[str, Any] | None:
    """An incident change as the console shows it; None when it is not one.

    >>> incident_view({"kind": "incident_open", "ts": 5, "key": "/checkout|checkout_failure",
    ...     "route": "/checkout", "failure": "checkout_failure", "rule": "rate", "count": 9.44,
    ...     "baseline": 1.2345, "incident_id": "inc-1"}, None)["count"]
    9.4
    """
    kind, incident_id = record.get("kind"), _code(record.get("incident_id"))
    route, failure = _text(record.get("route"), MAX_PATH_BYTES), _code(record.get("failure"))
    if kind not in ("incident_open", "incident_close") or not incident_id or not route or not failure:
        return None
    view = {
        "change": kind.removeprefix("incident_"), "incident_id": incident_id,
        "key": f"{route}|{failure}", "route": route, "failure": failure,
        "rule": _code(record.get("rule")), "count": _number(record.get("count"), 1),
        "baseline": _number(record.get("baseline"), 2), "ts": _int(record.get("ts")),
        "at": round(kafka_ts_s * 1000) if kafka_ts_s is not None else None,
    }
    if kind == "incident_close":
        view["opened_ts"] = _int(record.get("opened_ts"))
    return view


def _frame(event: str, payload: Any) -> bytes:
    return sse_frame(event, orjson.dumps(payload))


class ConsoleClient:
    """One console stream: a bounded queue that drops its oldest frame, never waits."""

    __slots__ = ("limit", "frames", "wakeup", "dropped", "resync", "closed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        #: Frames this client lost; once it lost any, its next write is a snapshot.
        self.dropped = 0
        self.resync = False
        self.closed: str | None = None

    def push(self, frame: bytes) -> bool:
        """Queue a frame; False when the oldest had to go to make room."""
        if self.closed:
            return True
        kept = True
        while len(self.frames) >= self.limit:
            self.frames.popleft()
            self.dropped += 1
            self.resync = True
            kept = False
        self.frames.append(frame)
        self.wakeup.set()
        return kept

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        self.frames.clear()
        self.wakeup.set()

    async def next(self, timeout: float) -> tuple[list[bytes], bool]:
        """(the frames waiting, whether the client must be sent a snapshot instead); no
        frames after ``timeout`` s, or once closed."""
        if not self.frames and self.closed is None:
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout)
        frames, resync = list(self.frames), self.resync
        self.frames.clear()
        self.resync = False
        return frames, resync


class ConsoleHub:
    """The console's state, its inputs (sample, intervention, incident) and its clients."""

    def __init__(self, metrics: Metrics, *, max_streams: int = 8, queue: int = QUEUE_FRAMES,
                 window_s: int = WINDOW_S, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.max_streams = max_streams
        self.queue = queue
        self.clock = clock
        self.clients: list[ConsoleClient] = []
        #: (t, events, {detector: signals}, nudges, handoffs) per sample, oldest first.
        self.points: deque[tuple[float, int, dict[str, int], int, int]] = deque(maxlen=window_s)
        self.totals: dict[str, int] = {"events": 0, "signals": 0, "nudges": 0, "handoffs": 0}
        self._last: tuple[int, dict[str, int]] | None = None
        self._pending = {"nudge": 0, "handoff": 0}
        self.interventions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._contexts: dict[str, Any] = {}
        self.incidents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.closed_incidents: deque[dict[str, Any]] = deque(maxlen=MAX_CLOSED)

    # -- inputs ---------------------------------------------------------------------------
    def sample(self) -> None:
        """Once a second: this worker's counters since the last sample, and the
        interventions the feed saw meanwhile; one ``tick`` frame to every client."""
        events = int(_counter_total(self.metrics.events))
        signals = _by_label(self.metrics.signals, "detector")
        now = self.clock()
        nudges, handoffs = self._pending["nudge"], self._pending["handoff"]
        self._pending = {"nudge": 0, "handoff": 0}
        if self._last is None:
            d_events, d_signals = 0, {}
        else:
            last_events, last_signals = self._last
            d_events = max(0, events - last_events)
            d_signals = {d: n - last_signals.get(d, 0) for d, n in signals.items()
                         if n > last_signals.get(d, 0)}
        self._last = (events, signals)
        d_signals = dict(sorted(d_signals.items())[:MAX_DETECTORS])
        self.points.append((now, d_events, d_signals, nudges, handoffs))
        self.totals = {"events": events, "signals": sum(signals.values()),
                       "nudges": self.totals["nudges"], "handoffs": self.totals["handoffs"]}
        self._broadcast(_frame("tick", {
            "t": round(now, 3), "events": d_events, "signals": d_signals, "nudges": nudges,
            "handoffs": handoffs, **self._status()}))

    def intervention(self, record: dict[str, Any], kafka_ts_s: float | None) -> None:
        """A tap of the intervention feed: every record, once per intervention id."""
        view = intervention_view(record, kafka_ts_s)
        if view is None or view["id"] in self._seen:
            return
        self._seen[view["id"]] = None
        if len(self._seen) > MAX_SEEN_IDS:
            self._seen.popitem(last=False)
        self.interventions[view["id"]] = view
        while len(self.interventions) > MAX_INTERVENTIONS:
            gone, _ = self.interventions.popitem(last=False)
            self._contexts.pop(gone, None)
        context = record.get("context")
        if view["kind"] == "handoff" and isinstance(context, dict):
            self._contexts[view["id"]] = _bounded_context(context)
        self._pending[view["kind"]] += 1
        self.totals[view["kind"] + "s"] += 1
        self._broadcast(_frame("intervention", view))

    def incident(self, value: bytes | None, kafka_ts_s: float | None = None) -> str:
        """A record of ``frictionwatch.incidents`` (a feed's ``publish``); its outcome."""
        try:
            record = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return "invalid"
        view = incident_view(record, kafka_ts_s) if isinstance(record, dict) else None
        if view is None:
            return "invalid"
        key = view["key"]
        if view["change"] == "open":
            self.incidents[key] = view
            self.incidents.move_to_end(key)
            while len(self.incidents) > MAX_INCIDENTS:
                self.incidents.popitem(last=False)
        else:
            opened = self.incidents.get(key)
            if opened is not None and opened["incident_id"] == view["incident_id"]:
                del self.incidents[key]
            self.closed_incidents.append(view)
        self._broadcast(_frame("incident", {**view, "open": len(self.incidents)}))
        return str(view["change"])

    # -- outputs --------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The ``snapshot`` frame: everything a console draws, at most
        :data:`MAX_SNAPSHOT_BYTES` (the oldest interventions go first if it must shrink)."""
        detectors = sorted({d for p in self.points for d in p[2]})[:MAX_DETECTORS]
        series = {
            "t": [round(p[0], 3) for p in self.points],
            "events": [p[1] for p in self.points],
            "nudges": [p[3] for p in self.points],
            "handoffs": [p[4] for p in self.points],
            "signals": {d: [p[2].get(d, 0) for p in self.points] for d in detectors},
        }
        interventions = list(self.interventions.values())
        while True:
            frame = _frame("snapshot", {
                "series": series, "interventions": interventions[::-1],
                "incidents": list(self.incidents.values())[::-1],
                "closed_incidents": list(self.closed_incidents)[::-1], **self._status()})
            if len(frame) <= MAX_SNAPSHOT_BYTES or not interventions:
                return frame
            interventions = interventions[len(interventions) // 2 + 1:]

    def handoff(self, intervention_id: str) -> dict[str, Any] | None:
        """A handoff of the list with its context, as a person taking it over reads it."""
        view = self.interventions.get(intervention_id)
        if view is None or view["kind"] != "handoff":
            return None
        return {**view, "context": self._contexts.get(intervention_id)}

    def full(self) -> bool:
        return len(self.clients) >= self.max_streams

    def subscribe(self) -> ConsoleClient:
        client = ConsoleClient(self.queue)
        self.clients.append(client)
        self.metrics.console_streams.set(len(self.clients))
        return client

    def unsubscribe(self, client: ConsoleClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
            self.metrics.console_streams.set(len(self.clients))
            self.metrics.console_disconnects.labels(client.closed or "client_gone").inc()

    def close_all(self, reason: str = "shutdown") -> None:
        for client in list(self.clients):
            client.close(reason)

    def _status(self) -> dict[str, Any]:
        return {"totals": dict(self.totals), "open_incidents": len(self.incidents),
                "streams": len(self.clients)}

    def _broadcast(self, frame: bytes) -> None:
        if len(frame) > MAX_FRAME_BYTES:  # not by construction: a guard for what may change
            log.error("a console frame of %d bytes was not sent", len(frame))
            return
        for client in self.clients:
            if not client.push(frame):
                self.metrics.console_dropped.inc()


def _bounded_context(context: dict[str, Any]) -> Any:
    """:func:`context_view`, then at most :data:`MAX_CONTEXT_BYTES` serialized (the
    longest lists lose their oldest items first; the summary and counts stay)."""
    view = context_view(context)
    while len(orjson.dumps(view)) > MAX_CONTEXT_BYTES:
        lists = [v for v in view.values() if isinstance(v, list) and v]
        if not lists:
            return {k: v for k, v in view.items() if not isinstance(v, dict | list)}
        longest = max(lists, key=lambda v: len(orjson.dumps(v)))
        del longest[: max(1, len(longest) // 4)]
    return view


def _counter_total(counter: Any) -> float:
    return math.fsum(s.value for metric in counter.collect() for s in metric.samples
               if s.name.endswith("_total"))


def _by_label(counter: Any, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                out[s.labels[label]] = out.get(s.labels[label], 0) + int(s.value)
    return out
