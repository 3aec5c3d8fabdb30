"""A batch's output records, handed to the producer together and held until acknowledged.

The agent adds every record a batch produced (signals, interventions, incident
observations, dead letters) and awaits :meth:`Outbox.flush` once: each record goes
straight to the app's producer (no ``Topic.send`` future-message, sensor calls and
await per record), then all their delivery futures are awaited together. Only after
that does the agent write the batch's session states (README "Faults": outputs
acknowledged, then the state, then the offsets).

**A failed send never stops the process and loses nothing** (issue 10):

- a *transient* failure (the broker unreachable after the producer's own retries, a
  timeout, a leader change, an authorization error an operator must fix) is retried
  with backoff for as long as it takes: the batch is held, so its offsets cannot be
  committed and nothing is lost if the process dies meanwhile. Each failed try is
  counted (``frictionwatch_output_send_failures_total{topic, outcome="retried"}``),
  the first failure of a kind is logged (once, until sends succeed again), and
  ``/healthz`` says ``outputs_failing`` until they do;
- a *permanent* failure of one record (:data:`PERMANENT`: too large for the broker, a
  corrupt record) cannot be cured by trying again: after :data:`PERMANENT_TRIES` tries
  the record goes to the dead letters (its first bytes, ``fw-reason`` =
  ``output_undeliverable``, ``fw-detail`` the error, ``fw-topic`` where it was going),
  counted as ``dead_lettered``. A dead letter that is itself permanently refused is
  logged and counted as ``dropped``: there is nowhere further to put it.

Records that succeed are not sent again; only the failed ones are retried, so a retried
record may land after a later record of its key (consumers de-duplicate by id anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError

from streamer.metrics import Metrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

#: Errors no retry can cure for that record: it goes to the dead letters instead.
PERMANENT: Final = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)
#: Tries of a record that fails permanently before it is dead-lettered.
PERMANENT_TRIES: Final = 3
#: The dead-letter reason of an output the broker refused for good.
UNDELIVERABLE: Final = "output_undeliverable"
#: An undeliverable output's dead letter keeps at most this many of its bytes.
MAX_DEAD_LETTER_BYTES: Final = 512 * 1024
#: Retry delays (seconds): the first, doubling up to the last.
BACKOFF_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0


class Producer(Protocol):
    """What the outbox needs of Faust's producer (``app.maybe_start_producer()``)."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
        timestamp: float | None, headers: Any,
    ) -> Awaitable[Any]: ...


@dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    #: Failed tries with a permanent error so far.
    refused: int = 0


@dataclass
class OutputHealth:
    """What ``/healthz`` reads: why outputs are failing right now (None: they are not)."""

    failing: str | None = None
    since: float | None = None
    #: The error kinds logged since sends last succeeded (each is logged once).
    logged: set[str] = field(default_factory=set)


class Outbox:
    """Collects one batch's outputs; :meth:`flush` delivers them all or dead-letters them.

    ``producer`` is awaited for the producer at each flush (Faust's
    ``app.maybe_start_producer``: the transaction manager under ``exactly_once``).
    """

    def __init__(
        self,
        producer: Callable[[], Awaitable[Producer]],
        metrics: Metrics,
        deadletter_topic: str,
        health: OutputHealth | None = None,
        *,
        backoff_s: float = BACKOFF_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.producer = producer
        self.metrics = metrics
        self.deadletter_topic = deadletter_topic
        self.health = health if health is not None else OutputHealth()
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.sleep = sleep
        self._items: list[Output] = []

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            headers: Headers | None = None) -> None:
        """One record for ``topic``, placed by its key as the producer places it."""
        self._items.append(Output(topic, key, value, headers))

    def __len__(self) -> int:
        return len(self._items)

    async def flush(self) -> None:
        """Hand every record added to the producer and wait until each is acknowledged
        (or, refused for good, dead-lettered). Never raises a send error; retries
        transient ones with backoff for as long as they last."""
        pending, self._items = self._items, []
        delay = self.backoff_s
        while pending:
            failed = await self._try(pending)
            if not failed:
                break
            pending = []
            transient = False
            for output, exc in failed:
                if isinstance(exc, PERMANENT):
                    output.refused += 1
                    if output.refused >= PERMANENT_TRIES:
                        self._give_up(output, exc, pending)
                        continue
                else:
                    transient = True
                self.metrics.output_send_failures.labels(_kind(output), "retried").inc()
                self._report(output, exc)
                pending.append(output)
            if pending and transient:
                await self.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        if self.health.failing is not None:
            log.warning("outputs are delivered again (failing since %.0f s)",
                        time.monotonic() - (self.health.since or time.monotonic()))
        self.health.failing, self.health.since = None, None
        self.health.logged.clear()

    async def _try(self, outputs: list[Output]) -> list[tuple[Output, BaseException]]:
        """One send of each output, all handed over before any is awaited; the failed
        ones with their errors."""
        futures: list[Awaitable[Any] | BaseException] = []
        try:
            producer = await self.producer()
        except Exception as exc:  # a producer that cannot start: every output failed
            return [(output, exc) for output in outputs]
        for output in outputs:
            try:
                futures.append(await producer.send(
                    output.topic, output.key, output.value, None, None, output.headers))
            except Exception as exc:  # refused before it was queued (e.g. too large)
                futures.append(_cause(exc))
        waiting = [f for f in futures if not isinstance(f, BaseException)]
        results = iter(await asyncio.gather(*waiting, return_exceptions=True))
        failed = []
        for output, future in zip(outputs, futures, strict=True):
            result = future if isinstance(future, BaseException) else next(results)
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation, exit: not a send error
                failed.append((output, _cause(result)))
        return failed

    def _give_up(self, output: Output, exc: BaseException, pending: list[Output]) -> None:
        if output.topic == self.deadletter_topic:
            self.metrics.output_send_failures.labels(_kind(output), "dropped").inc()
            log.error("a dead letter was refused for good (%r): dropped", exc)
            return
        self.metrics.output_send_failures.labels(_kind(output), "dead_lettered").inc()
        log.error("an output for %s was refused for good (%r): dead-lettered",
                  output.topic, exc)
        value = output.value or b""
        headers: Headers = [
            ("fw-reason", UNDELIVERABLE.encode()),
            ("fw-detail", repr(exc)[:512].encode("utf-8", "replace")),
            ("fw-topic", output.topic.encode()),
        ]
        if len(value) > MAX_DEAD_LETTER_BYTES:
            headers.append(("fw-truncated", str(len(value)).encode()))
            value = value[:MAX_DEAD_LETTER_BYTES]
        pending.append(Output(self.deadletter_topic, output.key, value, headers))

    def _report(self, output: Output, exc: BaseException) -> None:
        kind = f"{output.topic}: {type(exc).__name__}"
        if self.health.failing is None:
            self.health.since = time.monotonic()
        self.health.failing = f"sends to {kind} ({exc})"[:300]
        if kind not in self.health.logged:
            self.health.logged.add(kind)
            log.warning("sending to %s failed (%r): the batch is held and retried until "
                        "its outputs are delivered", output.topic, exc)


def _kind(output: Output) -> str:
    return output.topic


def _cause(exc: BaseException) -> BaseException:
    """Faust wraps aiokafka's errors in ``ProducerSendError``: the error underneath."""
    cause = exc.__cause__
    return cause if isinstance(exc, ProducerSendError) and isinstance(cause, Exception) else exc
