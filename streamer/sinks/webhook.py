"""Handoffs into the tools agents already use: signed webhook POSTs, at least once.

When ``FW_WEBHOOK_URLS`` is set, every worker runs a sink that reads
``frictionwatch.interventions`` (and ``frictionwatch.incidents`` with
``FW_WEBHOOK_INCIDENTS=true``) in a consumer group of its own, ``<app id>-webhooks``:
Kafka gives each partition to one worker, so a record is posted once per fleet, not
once per worker. Each handoff goes to every URL as::

    POST /your/hook
    Content-Type: application/json
    X-FW-Event: handoff
    X-FW-Idempotency-Key: <intervention_id>
    X-FW-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

    {"type": "handoff", "id": "<intervention_id>", "data": <the intervention record>}

``data`` is the record's bytes as they are on the topic. Nudges and holdout decisions
(``delivered: false``) are not sent. Incident changes are ``{"type": "incident_open"
| "incident_close", "id": "<incident_id>:open" | ":close", "data": <the record>}``.

Per record and URL:

- a 2xx answer is a delivery. Connection errors, timeouts, 408, 429 and 5xx are tried
  again after ``backoff * 2**(n-1)`` seconds (capped; the upper half of that drawn at
  random, so a fleet does not retry in step; never sooner than a Retry-After up to the
  cap); any other status is final (a 3xx too: redirects are not followed);
- after ``max_tries`` tries, or a final status, the record goes to
  ``frictionwatch.deadletter`` as it was, with headers ``fw-reason: webhook_failed``,
  ``fw-detail`` (the URL without its query, the last error), ``fw-topic``,
  ``fw-partition`` and ``fw-offset``;
- its offset is committed once it is delivered or dead-lettered for every URL, and
  never past an earlier record still in flight: at least once. A receiver gets each id
  once even when the topic holds it twice, as long as this worker remembers
  delivering it (the last 20,000 ids); after a crash or a rebalance a record may come
  again, with the same ``X-FW-Idempotency-Key``.

Up to ``webhook_concurrency`` records are in flight at once, a key's (a session's, an
incident's) in order. When every slot is taken the sink pauses its partitions and
waits: a slow receiver backs up the sink, never the pipeline agent, which is another
consumer in another group.

Wiring, in :func:`streamer.stream.app.build`::

    webhook.register(app, settings, metrics)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from detectors.errors import ConfigError
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.stream.topics import DEADLETTER_TOPIC, INCIDENTS_TOPIC, INTERVENTIONS_TOPIC

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FW-Signature"
IDEMPOTENCY_HEADER = "X-FW-Idempotency-Key"
EVENT_HEADER = "X-FW-Event"
#: The dead-letter reason (``fw-reason`` header) of a record no URL would take.
DEADLETTER_REASON = "webhook_failed"
#: Ids (with the URLs they reached) a sink remembers, to skip duplicates on the topic.
REMEMBER_IDS = 20_000
USER_AGENT = "frictionwatch-webhook/1"

Headers = list[tuple[str, bytes]]


# -- the payload ------------------------------------------------------------------------
class InvalidRecord(ValueError):
    """A record on the topic that is not a JSON object with its id."""


@dataclass(frozen=True)
class Delivery:
    """One record to POST: its idempotency key, its type and the request body."""

    id: str
    type: str
    body: bytes

    @property
    def family(self) -> str:
        """The metric label: ``handoff`` or ``incident``."""
        return "handoff" if self.type == "handoff" else "incident"


def delivery_of(value: bytes | None, *, incidents: bool) -> Delivery | None:
    """The POST a record makes, or None for one not sent (nudge, holdout, incidents off).

    >>> record = b'{"intervention_id": "i1", "session_id": "s1", "kind": "handoff", "delivered": true}'
    >>> d = delivery_of(record, incidents=False)
    >>> d.id, d.type, d.body[:45]
    ('i1', 'handoff', b'{"type":"handoff","id":"i1","data":{"interven')
    >>> delivery_of(record.replace(b"true", b"false"), incidents=False) is None  # holdout
    True
    >>> change = b'{"kind": "incident_open", "incident_id": "inc-1", "key": "/checkout|x"}'
    >>> delivery_of(change, incidents=False), delivery_of(change, incidents=True).id
    (None, 'inc-1:open')
    >>> delivery_of(b"[1]", incidents=False)
    Traceback (most recent call last):
    ...
    streamer.sinks.webhook.InvalidRecord: not a JSON object
    """
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise InvalidRecord("not JSON") from None
    if not isinstance(record, dict):
        raise InvalidRecord("not a JSON object")
    kind = record.get("kind")
    if kind == "handoff":
        if record.get("delivered") is not True:
            return None
        ident = record.get("intervention_id")
        if not isinstance(ident, str) or not ident:
            raise InvalidRecord("a handoff without intervention_id")
    elif kind in ("incident_open", "incident_close"):
        if not incidents:
            return None
        incident = record.get("incident_id")
        if not isinstance(incident, str) or not incident:
            raise InvalidRecord(f"an {kind} without incident_id")
        ident = f"{incident}:{kind.removeprefix('incident_')}"
    else:
        return None
    assert value is not None
    body = b'{"type":' + orjson.dumps(kind) + b',"id":' + orjson.dumps(ident) + b',"data":'
    return Delivery(ident, kind, body + value.strip() + b"}")


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The ``X-FW-Signature`` value: ``t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

    >>> header = sign(b"0123456789abcdef", b'{"type":"handoff"}', 1767225600)
    >>> header[:16], len(header[16:])
    ('t=1767225600,v1=', 64)
    >>> header[16:] == hmac.new(b"0123456789abcdef", b'1767225600.{"type":"handoff"}',
    ...                         hashlib.sha256).hexdigest()
    True
    """
    mac = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def shown_url(url: str) -> str:
    """A URL as logs and dead letters show it: no credentials, query or fragment.

    >>> shown_url("https://user:pw@desk.example.com:8443/hooks/fw?token=s3cret#x")
    'https://desk.example.com:8443/hooks/fw'
    """
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def parse_urls(text: str) -> list[str]:
    """The comma-separated ``webhook_urls``, each checked to be http(s) with a host.

    >>> parse_urls(" http://127.0.0.1:8080/a , https://desk.example.com/b")
    ['http://127.0.0.1:8080/a', 'https://desk.example.com/b']
    >>> parse_urls("desk.example.com/b")
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: webhook_urls: 'desk.example.com/b' is not an http:// or https:// URL
    """
    urls = [u.strip() for u in text.split(",") if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook_urls: {url!r} is not an http:// or https:// URL")
    if len(set(urls)) != len(urls):
        raise ConfigError("webhook_urls names a URL twice")
    return urls


# -- retries ------------------------------------------------------------------------------
def retryable(status: int) -> bool:
    """Whether an HTTP status is worth another try: 408, 429 and 5xx.

    >>> [s for s in (400, 401, 404, 408, 409, 422, 429, 500, 502, 503) if retryable(s)]
    [408, 429, 500, 502, 503]
    """
    return status in (408, 429) or 500 <= status <= 599


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th failed try: exponential, capped, jittered.

    The ceiling doubles from ``base_s`` up to ``cap_s``; the wait is drawn from its upper
    half (``rand`` in [0, 1)), so it never collapses to nothing yet workers that failed
    together retry apart. A receiver's Retry-After is honoured, up to the cap.

    >>> b = Backoff(base_s=1.0, cap_s=10.0)
    >>> [b.delay(n, rand=0.0) for n in (1, 2, 3, 4, 5, 6)]
    [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    >>> [b.delay(n, rand=0.999999) for n in (1, 4, 9)]  # doctest: +ELLIPSIS
    [0.99..., 7.99..., 9.99...]
    >>> b.delay(1, rand=0.0, retry_after=3.0), b.delay(1, rand=0.0, retry_after=3600)
    (3.0, 10.0)
    """

    base_s: float
    cap_s: float

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff: need 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")

    def delay(self, failures: int, *, rand: float, retry_after: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(failures - 1, 64))
        wait = ceiling * (0.5 + rand / 2)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.cap_s))
        return wait


@dataclass(frozen=True)
class Answer:
    """What one POST came to: an HTTP status, or None with the error (timeout, refused)."""

    status: int | None
    error: str
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299

    @property
    def retryable(self) -> bool:
        return self.status is None or retryable(self.status)


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> Answer: ...

    async def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class HttpTransport:
    """POSTs with one aiohttp session (keep-alive), made in the loop that first posts."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                await response.content.read(1 << 16)  # the answer is not used: a bounded read
                return Answer(response.status, f"HTTP {response.status}",
                              _retry_after(response.headers.get("Retry-After")))
        except TimeoutError:
            return Answer(None, f"no answer within {timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:300])

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


# -- one record to every URL ----------------------------------------------------------------
class Message(Protocol):
    """What the sink needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


#: Writes one dead letter: (key, value, headers); returns once the broker has it.
DeadLetterWriter = Callable[[bytes | None, bytes | None, Headers], Awaitable[None]]


@dataclass(frozen=True)
class Failure:
    url: str
    detail: str


class Webhooks:
    """Signs and POSTs one record to every URL, retrying, remembering, dead-lettering.

    No Kafka here: the dead-letter writer, the transport, the clock, the sleep and the
    random draw are passed in, so tests need neither a broker nor a server.
    """

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        metrics: Metrics,
        dead_letter: DeadLetterWriter,
        *,
        max_tries: int = 5,
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        incidents: bool = False,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        remember: int = REMEMBER_IDS,
    ) -> None:
        if not urls:
            raise ValueError("urls is empty: name at least one URL to POST to")
        if max_tries < 1:
            raise ValueError(f"max_tries = {max_tries}: allowed 1 or more")
        self.urls = list(urls)
        self.secret = secret.encode()
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.max_tries = max_tries
        self.backoff = backoff or Backoff(0.5, 60.0)
        self.timeout_s = timeout_s
        self.incidents = incidents
        self.transport: Transport = transport or HttpTransport()
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.remember = remember
        #: id -> indexes of the URLs it was delivered to; least recently used first.
        self._delivered: OrderedDict[str, set[int]] = OrderedDict()

    def headers(self, delivery: Delivery) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.type,
            IDEMPOTENCY_HEADER: delivery.id,
            SIGNATURE_HEADER: sign(self.secret, delivery.body, int(self.clock())),
        }

    def delivered_to(self, delivery_id: str) -> set[int]:
        return self._delivered.get(delivery_id, set())

    def _remember(self, delivery_id: str, url_index: int) -> None:
        self._delivered.setdefault(delivery_id, set()).add(url_index)
        self._delivered.move_to_end(delivery_id)
        while len(self._delivered) > self.remember:
            self._delivered.popitem(last=False)

    async def handle(self, message: Message) -> str:
        """Deliver one record everywhere it is due; returns what became of it:
        ``skipped`` (not for webhooks), ``invalid``, ``duplicate``, ``delivered`` or
        ``dead_lettered`` (for at least one URL)."""
        family = "incident" if message.topic == INCIDENTS_TOPIC else "handoff"
        try:
            delivery = delivery_of(message.value, incidents=self.incidents)
        except InvalidRecord as exc:
            log.warning("webhook sink skips %s[%s]@%s: %s", message.topic, message.partition,
                        message.offset, exc)
            self.metrics.webhook_deliveries.labels("invalid", family).inc()
            return "invalid"
        if delivery is None:
            return "skipped"
        done = self.delivered_to(delivery.id)
        due = [i for i in range(len(self.urls)) if i not in done]
        if len(due) < len(self.urls):
            self.metrics.webhook_deliveries.labels("duplicate", delivery.family).inc(
                len(self.urls) - len(due))
        if not due:
            self._delivered.move_to_end(delivery.id)
            return "duplicate"
        results = await asyncio.gather(*(self._post(i, delivery, message) for i in due))
        failures = [f for f in results if f is not None]
        for failure in failures:
            await self.dead_letter(message.key, message.value, self._dead_headers(message, failure))
            self.metrics.webhook_deliveries.labels("dead_lettered", delivery.family).inc()
            log.warning("webhook %s %s dead-lettered: %s", delivery.type, delivery.id,
                        failure.detail)
        return "dead_lettered" if failures else "delivered"

    async def _post(self, index: int, delivery: Delivery, message: Message) -> Failure | None:
        url = self.urls[index]
        for attempt in range(1, self.max_tries + 1):
            answer = await self.transport.post(url, delivery.body, self.headers(delivery),
                                               self.timeout_s)
            if answer.ok:
                self._remember(delivery.id, index)
                self.metrics.webhook_deliveries.labels("delivered", delivery.family).inc()
                if message.timestamp > 0:
                    self.metrics.webhook_latency.observe(
                        max(0.0, self.clock() - message.timestamp / 1000))
                return None
            if not answer.retryable:
                return Failure(url, f"POST {shown_url(url)}: {answer.error}, not retried")
            if attempt == self.max_tries:
                break
            self.metrics.webhook_deliveries.labels("retried", delivery.family).inc()
            await self.sleep(self.backoff.delay(attempt, rand=self.rand(),
                                                retry_after=answer.retry_after))
        return Failure(url, f"POST {shown_url(url)}: {answer.error}, after {self.max_tries} tries")

    @staticmethod
    def _dead_headers(message: Message, failure: Failure) -> Headers:
        return [
            ("fw-reason", DEADLETTER_REASON.encode()),
            ("fw-detail", failure.detail.encode()),
            ("fw-topic", message.topic.encode()),
            ("fw-partition", str(message.partition).encode()),
            ("fw-offset", str(message.offset).encode()),
        ]


# -- many records at once, committed in order ------------------------------------------------
TP = tuple[str, int]


class Offsets:
    """Per partition, the records in flight in arrival order, and the offset that may be
    committed: just past the last record before the first unfinished one.

    >>> o = Offsets()
    >>> for offset in (10, 11, 12):
    ...     o.start(("t", 0), offset)
    >>> o.finish(("t", 0), 11); o.committable()
    {}
    >>> o.finish(("t", 0), 10); o.committable()
    {('t', 0): 12}
    >>> o.committed({("t", 0): 12}); o.finish(("t", 0), 12); o.committable()
    {('t', 0): 13}
    """

    def __init__(self) -> None:
        self._inflight: dict[TP, dict[int, bool]] = {}
        self._position: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def start(self, tp: TP, offset: int) -> None:
        self._inflight.setdefault(tp, {})[offset] = False

    def finish(self, tp: TP, offset: int) -> None:
        inflight = self._inflight.get(tp)
        if inflight is None or offset not in inflight:
            return  # the partition was revoked meanwhile
        inflight[offset] = True
        while inflight:
            first = next(iter(inflight))
            if not inflight[first]:
                break
            del inflight[first]
            self._position[tp] = first + 1

    def committable(self) -> dict[TP, int]:
        return {tp: p for tp, p in self._position.items() if self._committed.get(tp) != p}

    def committed(self, positions: Mapping[TP, int]) -> None:
        self._committed.update(positions)

    def in_flight(self, tps: Iterable[TP] | None = None) -> int:
        wanted = self._inflight.keys() if tps is None else tps
        return sum(len(self._inflight.get(tp, ())) for tp in wanted)

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._inflight.pop(tp, None)
            self._position.pop(tp, None)
            self._committed.pop(tp, None)


class Dispatcher:
    """Runs ``handle`` on records, at most ``concurrency`` at once and one key at a time.

    Records of one (topic, key) wait for the one before them, so a session's or an
    incident's records reach receivers in order; others go past. The caller submits
    only while :meth:`free` is positive, and commits :meth:`committable` offsets.
    """

    def __init__(self, handle: Callable[[Message], Awaitable[Any]], concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency = {concurrency}: allowed 1 or more")
        self.handle = handle
        self.concurrency = concurrency
        self.offsets = Offsets()
        self._tasks: dict[asyncio.Task[None], TP] = {}
        self._last_of_key: dict[tuple[str, bytes | None], asyncio.Task[None]] = {}
        self._finished = asyncio.Event()

    def free(self) -> int:
        return self.concurrency - len(self._tasks)

    def submit(self, message: Message) -> None:
        tp = (message.topic, message.partition)
        chain = (message.topic, message.key)
        self.offsets.start(tp, message.offset)
        task = asyncio.create_task(self._run(message, self._last_of_key.get(chain)))
        self._tasks[task] = tp
        self._last_of_key[chain] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._last_of_key.get(chain) is t:
                del self._last_of_key[chain]
            self._finished.set()

        task.add_done_callback(done)

    async def _run(self, message: Message, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])
        await self.handle(message)
        self.offsets.finish((message.topic, message.partition), message.offset)

    def reap(self) -> None:
        """Forget finished tasks; re-raise the first failure (the sink then restarts
        from the committed offsets, so nothing unfinished is lost)."""
        for task in [t for t in self._tasks if t.done()]:
            del self._tasks[task]
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def wait(self, timeout: float) -> None:
        """Until some record finishes, or ``timeout`` seconds."""
        self._finished.clear()
        if any(t.done() for t in self._tasks):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout)

    async def settle(self, tps: Iterable[TP], timeout: float) -> None:
        """Give the records of ``tps`` in flight up to ``timeout`` seconds to finish."""
        tps = set(tps)
        mine = [t for t, tp in self._tasks.items() if tp in tps]
        if mine:
            await asyncio.wait(mine, timeout=timeout)

    def drop(self, tps: Iterable[TP]) -> None:
        """Cancel what is still in flight on ``tps`` (their next owner delivers it again)
        and forget the partitions."""
        tps = set(tps)
        for task, tp in self._tasks.items():
            if tp in tps:
                task.cancel()
        self.offsets.forget(tps)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()
        self._last_of_key.clear()


# -- the Kafka side -------------------------------------------------------------------------
class KafkaDeadLetters:
    """A :data:`DeadLetterWriter` with its own producer, started and stopped by the sink."""

    def __init__(self, bootstrap_servers: str, topic: str = DEADLETTER_TOPIC, *,
                 client_id: str = "frictionwatch-webhooks") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                    client_id=self.client_id)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def __call__(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        if self._producer is None:
            raise RuntimeError("dead letters before the sink started")
        await self._producer.send_and_wait(self.topic, value=value, key=key, headers=headers)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: WebhookSink, consumer: AIOKafkaConsumer,
                 dispatcher: Dispatcher) -> None:
        self.sink, self.consumer, self.dispatcher = sink, consumer, dispatcher

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Let what is in flight finish (a little while), commit it, drop the rest."""
        tps = [(tp.topic, tp.partition) for tp in revoked]
        await self.dispatcher.settle(tps, self.sink.revoke_grace_s)
        await self.sink.commit(self.consumer, self.dispatcher, set(revoked))
        self.dispatcher.drop(tps)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass  # the consume loop pins their start positions, then counts them


class WebhookSink:
    """The consumer group ``<app id>-webhooks`` feeding :class:`Webhooks`."""

    def __init__(
        self,
        webhooks: Webhooks,
        dead_letters: KafkaDeadLetters,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        concurrency: int = 8,
        auto_offset_reset: str = "latest",
        session_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 1.0,
        fetch_max_wait_ms: int = 100,
        client_id: str = "frictionwatch-webhooks",
        revoke_grace_s: float | None = None,
    ) -> None:
        self.webhooks = webhooks
        self.dead_letters = dead_letters
        self.metrics = webhooks.metrics
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = list(topics)
        self.concurrency = concurrency
        self.auto_offset_reset = auto_offset_reset
        self.session_timeout_s = session_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.client_id = client_id
        #: How long records in flight on revoked partitions may finish: within the
        #: rebalance timeout (= the session timeout), or the group drops this member.
        self.revoke_grace_s = (min(5.0, session_timeout_s / 2) if revoke_grace_s is None
                               else revoke_grace_s)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics,
                      transport: Transport | None = None) -> WebhookSink:
        """The sink the settings ask for; :class:`ConfigError` when they do not hold up."""
        urls = parse_urls(settings.webhook_urls)
        if not urls:
            raise ConfigError("webhook_urls is empty: there is nowhere to POST to")
        if len(settings.webhook_secret) < 16:
            raise ConfigError("webhook_secret (FW_WEBHOOK_SECRET) must be set when webhook_urls "
                              "is: at least 16 characters, shared with the receivers")
        if settings.webhook_backoff_s > settings.webhook_backoff_max_s:
            raise ConfigError(f"webhook_backoff_s = {settings.webhook_backoff_s} is above "
                              f"webhook_backoff_max_s = {settings.webhook_backoff_max_s}")
        client_id = f"{settings.app_id}-webhooks"
        dead_letters = KafkaDeadLetters(settings.bootstrap_servers, client_id=client_id)
        webhooks = Webhooks(
            urls, settings.webhook_secret, metrics, dead_letters,
            max_tries=settings.webhook_max_tries,
            backoff=Backoff(settings.webhook_backoff_s, settings.webhook_backoff_max_s),
            timeout_s=settings.webhook_timeout_s, incidents=settings.webhook_incidents,
            transport=transport,
        )
        topics = [INTERVENTIONS_TOPIC, *([INCIDENTS_TOPIC] if settings.webhook_incidents else [])]
        return cls(
            webhooks, dead_letters, bootstrap_servers=settings.bootstrap_servers,
            group_id=client_id, topics=topics, concurrency=settings.webhook_concurrency,
            auto_offset_reset=settings.webhook_start,
            session_timeout_s=settings.session_timeout_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            fetch_max_wait_ms=settings.fetch_max_wait_ms, client_id=client_id,
        )

    async def run(self) -> None:
        """Until cancelled (the worker stopping); reconnects while the broker is away."""
        try:
            while True:
                try:
                    await self._run_once()
                except KafkaError as exc:
                    log.warning("webhook sink: %r; restarting from the committed offsets in 1 s",
                                exc)
                    await asyncio.sleep(1.0)
        finally:
            await self.webhooks.transport.close()

    async def _run_once(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            client_id=self.client_id, enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset, fetch_max_wait_ms=self.fetch_max_wait_ms,
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.heartbeat_interval_s * 1000),
        )
        dispatcher = Dispatcher(self.webhooks.handle, self.concurrency)
        try:
            await self.dead_letters.start()
            await consumer.start()
            consumer.subscribe(self.topics, listener=_Rebalance(self, consumer, dispatcher))
            await self._consume(consumer, dispatcher)
        finally:
            await dispatcher.close()
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            await self.dead_letters.stop()
            self.metrics.webhook_partitions.set(0)

    async def _consume(self, consumer: AIOKafkaConsumer, dispatcher: Dispatcher) -> None:
        pinned: set[TopicPartition] = set()
        while True:
            dispatcher.reap()
            assigned = consumer.assignment()
            await self.commit(consumer, dispatcher, assigned)
            if assigned != pinned:
                await self._pin(consumer, assigned - pinned)
                pinned = set(assigned)
                # Counted once their positions are fixed: from here on, a record produced
                # to these partitions will be read (tests wait for this gauge).
                self.metrics.webhook_partitions.set(len(assigned))
            free = dispatcher.free()
            if free <= 0:
                # Every slot is busy (a slow receiver): stop fetching, but keep polling,
                # so that the group does not take this member for dead.
                consumer.pause(*assigned)
                await dispatcher.wait(timeout=1.0)
                await consumer.getmany(timeout_ms=0)
                continue
            consumer.resume(*assigned)
            batch = await consumer.getmany(timeout_ms=200, max_records=free)
            for messages in batch.values():
                for message in messages:
                    dispatcher.submit(message)

    async def _pin(self, consumer: AIOKafkaConsumer, new: set[TopicPartition]) -> None:
        """Commit the start position of a newly assigned partition the group has never
        committed, so that where ``auto_offset_reset`` put it holds across restarts."""
        for tp in new:
            if await consumer.committed(tp) is None:
                position = await consumer.position(tp)
                with contextlib.suppress(CommitFailedError, IllegalStateError):
                    await consumer.commit({tp: position})

    @staticmethod
    async def commit(consumer: AIOKafkaConsumer, dispatcher: Dispatcher,
                     tps: set[TopicPartition]) -> None:
        """Commit the finished records of ``tps``; a commit refused in a rebalance waits
        for the next round (the records are then delivered again, not lost)."""
        positions = {tp: o for tp, o in dispatcher.offsets.committable().items()
                     if TopicPartition(*tp) in tps}
        if not positions:
            return
        try:
            await consumer.commit({TopicPartition(*tp): o for tp, o in positions.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            log.info("webhook sink: commit deferred (%r)", exc)
            return
        dispatcher.offsets.committed(positions)


def register(app: faust.App, settings: Settings, metrics: Metrics) -> WebhookSink | None:
    """Run the webhook sink in the worker when ``webhook_urls`` is set; checks the
    settings now (a bad URL or a missing secret stops the worker before Kafka)."""
    if not settings.webhook_urls.strip():
        return None
    sink = WebhookSink.from_settings(settings, metrics)

    @app.task
    async def deliver_webhooks() -> None:
        await sink.run()

    return sink
