"""Live delivery of interventions to browsers: every worker's web side sees them all.

The pipeline agent of a session may run on any worker, and the browser's stream may
be connected to any other (a load balancer decides). So each worker reads *every*
partition of ``frictionwatch.interventions`` with a plain aiokafka consumer: manual
assignment, starting at the end, no consumer group (nothing to join, nothing to
commit, no rebalance stall), and fans the records out in memory to the sessions
connected to it.

- Only ``delivered: true`` records go out: a holdout session never sees anything.
- Per session, the last few interventions of the last ``replay_s`` seconds are kept,
  so a stream that (re)connects right after an intervention still gets it; with a
  ``Last-Event-ID`` only what came after that id. The SDK drops ids it has shown.
- Each stream has a bounded backlog; a client that cannot keep up is disconnected
  (its EventSource reconnects and catches up from the replay buffer), never waited
  for. Streams per session, per client address and in total are capped too.
- A browser gets a bounded view of a record (:func:`browser_view`): ids that must be
  machine words, a capped message and summary, detector names; never evidence, risk
  or the agent's context. A record that does not fit is not sent (``invalid``).

>>> import asyncio, orjson
>>> from streamer.metrics import Metrics
>>> fanout = Fanout(Metrics(), clock=lambda: 0.0)
>>> record = {"intervention_id": "i1", "session_id": "s1", "kind": "nudge", "ts": 1,
...           "message": "Can we help?", "reasons": [], "risk": 0.5, "delivered": True}
>>> fanout.publish(orjson.dumps(record))
'fanned_out'
>>> fanout.publish(orjson.dumps(record)), fanout.publish(orjson.dumps(dict(record,
...     intervention_id="i2", delivered=False)))
('duplicate', 'holdout')
>>> sub, backlog = fanout.subscribe("s1", last_event_id=None)
>>> print(backlog[0].decode().strip())  # doctest: +NORMALIZE_WHITESPACE
id: i1
event: intervention
data: {"intervention_id":"i1","session_id":"s1","kind":"nudge","ts":1,"message":"Can we help?","reasons":[]}
>>> fanout.subscribe("s1", last_event_id="i1")[1]
[]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from detectors.scrub import CODE_RE, clean_text
from streamer.metrics import Metrics

log = logging.getLogger(__name__)

#: What the browser gets of a record: no risk score, no evidence, no agent context.
BROWSER_FIELDS = ("intervention_id", "session_id", "kind", "ts", "message")
KINDS = ("nudge", "handoff")
#: Bounds of what goes to a browser, in UTF-8 bytes: a frame stays well under 2 KB
#: whatever a record holds (interventions are read from a topic anyone with Kafka
#: access can write to).
MAX_MESSAGE_BYTES = 512
MAX_SUMMARY_BYTES = 256
MAX_REASONS = 12


def browser_view(record: dict[str, Any]) -> dict[str, Any] | None:
    """The part of an intervention record a customer's browser may see, bounded; None
    if the record is not fit to send (ids that are not machine words, an unknown kind).

    Reasons become detector names only (evidence holds selectors and error texts); a
    handoff carries the id a human agent looks the case up by (``context_id``: the
    intervention id, the key of the full context on the interventions topic) and the
    one-line summary, not the context itself.

    >>> view = browser_view({"intervention_id": "i1", "session_id": "s1", "kind": "handoff",
    ...     "ts": 1, "message": "Help? " * 1000, "reasons": [{"detector": "checkout_failure"}],
    ...     "context": {"summary": "3 failed payment(s) (" + "x" * 4000 + ")"}})
    >>> len(view["message"]), view["summary"], view["reasons"]
    (512, '3 failed payment(s)', ['checkout_failure'])
    >>> browser_view({"intervention_id": "i1\\nevent: x", "session_id": "s1", "kind": "nudge"})
    """
    iid, kind = record.get("intervention_id"), record.get("kind")
    if not isinstance(iid, str) or not CODE_RE.fullmatch(iid) or kind not in KINDS:
        return None
    view: dict[str, Any] = {"intervention_id": iid, "session_id": record.get("session_id"),
                            "kind": kind}
    ts = record.get("ts")
    if isinstance(ts, int) and not isinstance(ts, bool):
        view["ts"] = ts
    message = record.get("message")
    if isinstance(message, str):
        view["message"] = clean_text(message, MAX_MESSAGE_BYTES)
    reasons = record.get("reasons")
    view["reasons"] = [
        r["detector"] for r in (reasons if isinstance(reasons, list) else [])[:MAX_REASONS]
        if isinstance(r, dict) and isinstance(r.get("detector"), str)
        and CODE_RE.fullmatch(r["detector"])
    ]
    if kind == "handoff":
        view["context_id"] = iid
        context = record.get("context")
        if isinstance(context, dict) and isinstance(context.get("summary"), str):
            view["summary"] = clean_text(context["summary"], MAX_SUMMARY_BYTES)
    return view


def sse_frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


class Subscriber:
    """One connected stream: a bounded backlog of frames and a wake-up flag."""

    __slots__ = ("session_id", "client", "limit", "frames", "wakeup", "closed")

    def __init__(self, session_id: str, limit: int, client: str = "") -> None:
        self.session_id = session_id
        self.client = client
        self.limit = limit
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        #: Why the stream must end (a DISCONNECT_REASONS label), or None.
        self.closed: str | None = None

    def push(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if len(self.frames) >= self.limit:
            self.close("slow")
            return False
        self.frames.append(frame)
        self.wakeup.set()
        return True

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        self.frames.clear()
        self.wakeup.set()

    async def next(self, timeout: float) -> list[bytes]:
        """The frames waiting (maybe none, after ``timeout`` s); empty once closed."""
        if not self.frames and self.closed is None:
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout)
        frames = list(self.frames)
        self.frames.clear()
        return frames


class Fanout:
    """Intervention records in, frames out to the streams of their session."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        replay_s: float = 120.0,
        replay_per_session: int = 8,
        max_sessions: int = 20_000,
        backlog: int = 32,
        max_streams: int = 10_000,
        max_streams_per_session: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.replay_s = replay_s
        self.replay_per_session = replay_per_session
        self.max_sessions = max_sessions
        self.backlog = backlog
        self.max_streams = max_streams
        self.max_streams_per_session = max_streams_per_session
        self.clock = clock
        self.streams = 0
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._per_client: dict[str, int] = {}
        #: Called with every decoded record before any filtering (the operator console
        #: reads the same feed, holdout included); a tap must not block or raise.
        self.taps: list[Callable[[dict[str, Any], float | None], None]] = []
        # session id -> recent (intervention id, monotonic time, frame); LRU-bounded.
        self._recent: OrderedDict[str, deque[tuple[str, float, bytes]]] = OrderedDict()

    def publish(self, value: bytes | None, kafka_ts_s: float | None = None) -> str:
        """Fan one record out; returns its outcome (a ``FEED_OUTCOMES`` label)."""
        outcome = self._publish(value, kafka_ts_s)
        self.metrics.sse_feed.labels(outcome).inc()
        return outcome

    def _publish(self, value: bytes | None, kafka_ts_s: float | None) -> str:
        try:
            record = orjson.loads(value or b"")
            session_id, intervention_id = record["session_id"], record["intervention_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return "invalid"
        if not isinstance(session_id, str) or not isinstance(intervention_id, str):
            return "invalid"
        for tap in self.taps:
            try:
                tap(record, kafka_ts_s)
            except Exception as exc:  # noqa: BLE001 - a reader's bug must not stop delivery
                # By type only: an exception's message may quote the record.
                log.error("an intervention tap failed with %s", type(exc).__name__)
        if record.get("delivered") is not True:
            return "holdout"
        view = browser_view(record)
        if view is None:
            return "invalid"
        recent = self._recent.get(session_id)
        if recent is not None and any(i == intervention_id for i, _, _ in recent):
            return "duplicate"  # at-least-once upstream, or two workers' copies
        frame = sse_frame("intervention", orjson.dumps(view), intervention_id)
        if recent is None:
            recent = self._recent[session_id] = deque(maxlen=self.replay_per_session)
        recent.append((intervention_id, self.clock(), frame))
        self._recent.move_to_end(session_id)
        while len(self._recent) > self.max_sessions:
            self._recent.popitem(last=False)
        for subscriber in self._subscribers.get(session_id, ()):
            if subscriber.push(frame):
                self.metrics.sse_sent.inc()
                if kafka_ts_s is not None:
                    self.metrics.sse_delivery_latency.observe(max(0.0, time.time() - kafka_ts_s))
        return "fanned_out"

    def full(self) -> bool:
        return self.streams >= self.max_streams

    def client_streams(self, client: str) -> int:
        """Streams open for one client address (the per-client cap is the caller's)."""
        return self._per_client.get(client, 0)

    def subscribe(self, session_id: str, last_event_id: str | None,
                  client: str = "") -> tuple[Subscriber, list[bytes]]:
        """A new stream and the recent frames it has not seen (oldest first).

        Runs without awaiting, so no record can fall between the backlog and the stream.
        """
        subscriber = Subscriber(session_id, self.backlog, client)
        streams = self._subscribers.setdefault(session_id, [])
        streams.append(subscriber)
        self.streams += 1
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self.metrics.sse_clients.inc()
        while len(streams) > self.max_streams_per_session:
            streams[0].close("replaced")  # a reload's old stream, probably already gone
            self.unsubscribe(streams[0])
        horizon = self.clock() - self.replay_s
        recent = [(i, frame) for i, at, frame in self._recent.get(session_id, ()) if at >= horizon]
        ids = [i for i, _ in recent]
        if last_event_id in ids:
            recent = recent[ids.index(last_event_id) + 1:]
        return subscriber, [frame for _, frame in recent]

    def unsubscribe(self, subscriber: Subscriber) -> None:
        streams = self._subscribers.get(subscriber.session_id)
        if not streams or subscriber not in streams:
            return
        streams.remove(subscriber)
        if not streams:
            del self._subscribers[subscriber.session_id]
        self.streams -= 1
        left = self._per_client.get(subscriber.client, 0) - 1
        if left > 0:
            self._per_client[subscriber.client] = left
        else:
            self._per_client.pop(subscriber.client, None)
        self.metrics.sse_clients.dec()
        if subscriber.closed is not None:
            self.metrics.sse_disconnects.labels(subscriber.closed).inc()

    def close_all(self, reason: str = "shutdown") -> None:
        for streams in list(self._subscribers.values()):
            for subscriber in list(streams):
                subscriber.close(reason)


#: What a feed does with each record of a topic: ``publish(value, kafka_ts_s)``.
Publish = Callable[[bytes | None, float], object]


class InterventionFeed:
    """Reads all partitions of the interventions topic from the end, into a Fanout.

    ``also`` names more topics for the same consumer, each with its own ``publish``,
    read from the *beginning* (the console folds ``frictionwatch.incidents`` into the
    incidents open now, so it needs their opens): one consumer per worker, not one per
    reader.
    """

    def __init__(self, bootstrap_servers: str, topic: str, fanout: Fanout, *,
                 client_id: str = "frictionwatch-feed", refresh_s: float = 30.0,
                 also: dict[str, Publish] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.fanout = fanout
        self.client_id = client_id
        self.refresh_s = refresh_s
        self.ready = asyncio.Event()
        self._readers: dict[str, Publish] = {topic: fanout.publish, **(also or {})}
        self._positions: dict[TopicPartition, int] = {}

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Take every partition not yet taken: where we left off after a reconnect; at
        the first start the end of the interventions topic and the beginning of the
        others; the beginning for a partition added while running."""
        have = consumer.assignment()
        new = [TopicPartition(topic, p) for topic in self._readers
               for p in sorted(consumer.partitions_for_topic(topic) or ())
               if TopicPartition(topic, p) not in have]
        if not new:
            return
        consumer.assign([*have, *new])
        for tp in new:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
            elif not self.ready.is_set() and tp.topic == self.topic:
                await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_beginning(tp)
            # Resolve the position now, not at the first fetch: "ready" means reading.
            self._positions[tp] = await consumer.position(tp)
        log.info("intervention feed reads %s", sorted((tp.topic, tp.partition) for tp in self._positions))

    async def run(self) -> None:
        """Until cancelled (the worker stopping); reconnects while the broker is away."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, client_id=self.client_id,
                group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50,
            )
            try:
                await consumer.start()
                while not consumer.partitions_for_topic(self.topic):
                    await consumer._client.force_metadata_update()  # noqa: SLF001
                    if not consumer.partitions_for_topic(self.topic):
                        await asyncio.sleep(0.5)
                await self._assign(consumer)
                self.ready.set()
                refreshed = time.monotonic()
                while True:
                    batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
                    for tp, messages in batch.items():
                        publish = self._readers[tp.topic]
                        for msg in messages:
                            publish(msg.value, msg.timestamp / 1000)
                        self._positions[tp] = messages[-1].offset + 1
                    if time.monotonic() - refreshed > self.refresh_s:
                        refreshed = time.monotonic()
                        await consumer._client.force_metadata_update()  # noqa: SLF001
                        await self._assign(consumer)
            except KafkaError as exc:
                log.warning("intervention feed: %r; reconnecting in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
