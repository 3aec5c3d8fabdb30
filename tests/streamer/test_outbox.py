"""The outbox: a batch's outputs delivered together; failed sends retried or dead-lettered,
never raised (issue 10: a failed output send never stops the worker, loses nothing)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from streamer.metrics import Metrics
from streamer.stream.health import Health, PartitionSample, Sample
from streamer.stream.outbox import PERMANENT_TRIES, UNDELIVERABLE, Outbox, OutputHealth

DEADLETTER = "dead"


class FakeProducer:
    """Records what it delivered; ``fail(topic, key, value)`` returns the error of a try
    (None: delivered), ``raise_on_send`` the error ``send`` itself raises."""

    def __init__(self, fail: Any = None, raise_on_send: Any = None) -> None:
        self.fail = fail or (lambda topic, key, value: None)
        self.raise_on_send = raise_on_send or (lambda topic, key, value: None)
        self.delivered: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.tries = 0

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any) -> Any:
        self.tries += 1
        raised = self.raise_on_send(topic, key, value)
        if raised is not None:
            raise raised
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        error = self.fail(topic, key, value)
        if error is None:
            self.delivered.append((topic, key, value, headers))
            future.set_result(("metadata", topic))
        else:
            future.set_exception(error)
        return future


def _outbox(producer: FakeProducer, metrics: Metrics, health: OutputHealth,
            sleeps: list[float]) -> Outbox:
    async def get() -> FakeProducer:
        return producer

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return Outbox(get, metrics, DEADLETTER, health, backoff_s=0.1, backoff_max_s=0.4,
                  sleep=sleep)


def _failures(metrics: Metrics, topic: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "frictionwatch_output_send_failures_total", {"topic": topic, "outcome": outcome})
    return value or 0.0


def test_every_output_is_handed_over_before_any_is_awaited() -> None:
    producer = FakeProducer()
    outbox = _outbox(producer, Metrics(), OutputHealth(), [])
    for i in range(5):
        outbox.add("signals", b"k", str(i).encode())
    asyncio.run(outbox.flush())
    assert [v for _, _, v, _ in producer.delivered] == [b"0", b"1", b"2", b"3", b"4"]
    assert len(outbox) == 0 and producer.tries == 5


def test_a_transient_failure_is_retried_with_backoff_until_delivered() -> None:
    left = {"n": 4}  # the broker refuses four times, then takes it

    def fail(topic: str, key: bytes | None, value: bytes | None) -> Exception | None:
        if value == b"handoff" and left["n"] > 0:
            left["n"] -= 1
            return KafkaConnectionError("broker gone")
        return None

    producer, metrics, health, sleeps = FakeProducer(fail), Metrics(), OutputHealth(), []
    seen_failing: list[str | None] = []
    outbox = _outbox(producer, metrics, health, sleeps)

    async def sleep(seconds: float) -> None:  # what /healthz would read while it waits
        seen_failing.append(health.failing)
        sleeps.append(seconds)

    outbox.sleep = sleep
    outbox.add("signals", b"s", b"signal")
    outbox.add("interventions", b"s", b"handoff")
    asyncio.run(outbox.flush())
    delivered = [v for _, _, v, _ in producer.delivered]
    assert delivered == [b"signal", b"handoff"]  # each once: a delivered one is not re-sent
    assert sleeps == [0.1, 0.2, 0.4, 0.4]  # doubling, capped
    assert all(f is not None and "interventions" in f for f in seen_failing)
    assert health.failing is None  # degraded only while it lasted
    assert _failures(metrics, "interventions", "retried") == 4
    assert _failures(metrics, "interventions", "dead_lettered") == 0


def test_a_transient_failure_is_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    left = {"n": 6}

    def fail(topic: str, key: bytes | None, value: bytes | None) -> Exception | None:
        if left["n"] > 0:
            left["n"] -= 1
            return KafkaConnectionError("broker gone")
        return None

    outbox = _outbox(FakeProducer(fail), Metrics(), OutputHealth(), [])
    outbox.add("signals", b"s", b"x")
    outbox.add("signals", b"s", b"y")
    with caplog.at_level("WARNING", logger="streamer.stream.outbox"):
        asyncio.run(outbox.flush())
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("where", ["future", "send"])
def test_a_record_refused_for_good_goes_to_the_dead_letters(where: str) -> None:
    big = b"x" * 100

    def refused(topic: str, key: bytes | None, value: bytes | None) -> Exception | None:
        return MessageSizeTooLargeError("too large") if value == big and topic != DEADLETTER else None

    def raised(topic: str, key: bytes | None, value: bytes | None) -> Exception | None:
        if value == big and topic != DEADLETTER:  # Faust wraps what aiokafka raises at send
            try:
                raise MessageSizeTooLargeError("too large")
            except MessageSizeTooLargeError as exc:
                wrapped = ProducerSendError(f"Error while sending: {exc!r}")
                wrapped.__cause__ = exc
                return wrapped
        return None

    producer = FakeProducer(refused) if where == "future" else FakeProducer(raise_on_send=raised)
    metrics, sleeps = Metrics(), []
    outbox = _outbox(producer, metrics, OutputHealth(), sleeps)
    outbox.add("interventions", b"s", big)
    outbox.add("signals", b"s", b"small")
    asyncio.run(outbox.flush())
    assert [(t, v) for t, _, v, _ in producer.delivered] == [("signals", b"small"),
                                                             (DEADLETTER, big)]
    _, key, _, headers = producer.delivered[1]
    assert key == b"s"
    assert dict(headers)["fw-reason"] == UNDELIVERABLE.encode()
    assert dict(headers)["fw-topic"] == b"interventions"
    assert b"MessageSizeTooLarge" in dict(headers)["fw-detail"]
    assert sleeps == []  # nothing to wait for: no retry cures it
    assert producer.tries == 2 + PERMANENT_TRIES  # small once, big PERMANENT_TRIES times, +1 dead
    assert _failures(metrics, "interventions", "dead_lettered") == 1


def test_a_dead_letter_refused_for_good_is_dropped_not_raised() -> None:
    def refused(topic: str, key: bytes | None, value: bytes | None) -> Exception | None:
        return MessageSizeTooLargeError("too large")

    metrics = Metrics()
    outbox = _outbox(FakeProducer(refused), metrics, OutputHealth(), [])
    outbox.add("signals", b"s", b"v")
    asyncio.run(outbox.flush())
    assert _failures(metrics, "signals", "dead_lettered") == 1
    assert _failures(metrics, DEADLETTER, "dropped") == 1


def test_a_producer_that_cannot_start_is_a_transient_failure() -> None:
    producer = FakeProducer()
    starts = {"n": 0}

    async def get() -> FakeProducer:
        starts["n"] += 1
        if starts["n"] < 3:
            raise KafkaConnectionError("no broker")
        return producer

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    outbox = Outbox(get, Metrics(), DEADLETTER, OutputHealth(), sleep=sleep)
    outbox.add("signals", b"s", b"v")
    asyncio.run(outbox.flush())
    assert len(producer.delivered) == 1 and len(sleeps) == 2


def test_healthz_is_degraded_while_outputs_fail_and_not_called_not_consuming() -> None:
    h = Health(not_consuming_s=5)
    waiting = PartitionSample(end=100, committed=10, processed=10, read=10)
    for t in range(8):
        h.add(Sample(at=float(t), broker_silent_s=0.5, partitions={0: waiting},
                     outputs_failing="sends to interventions: KafkaConnectionError"))
    v = h.liveness()
    assert v.reasons == ["outputs_failing"] and v.http_status == 200 and not v.ok
    h.add(Sample(at=8.0, broker_silent_s=0.5, partitions={0: waiting}))
    assert "outputs_failing" not in h.liveness().reasons
