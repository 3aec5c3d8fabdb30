"""The webhook sink on the embedded broker, against a real HTTP receiver on 127.0.0.1.

The first two run the sink in this process on topics of their own (fast, no worker);
the last runs a real worker with webhooks configured and holds the receiver while the
worker goes on consuming and committing events.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.policy import in_holdout
from streamer.embedded import EmbeddedBroker, create_topics
from streamer.metrics import Metrics
from streamer.sinks.webhook import Backoff, KafkaDeadLetters, Webhooks, WebhookSink
from tests.conftest import consume, produce, running_worker, wait_for
from tests.sinks.receiver import Receiver, documented_verify

pytestmark = pytest.mark.broker

SECRET = "whsec-0123456789abcdef"
BASE_TS = 1_767_225_600_000


def handoff(ident: str, session: str, **changes: object) -> bytes:
    record = {"intervention_id": ident, "session_id": session, "kind": "handoff",
              "ts": BASE_TS, "reasons": [], "message": "A person will be with you",
              "risk": 0.9, "delivered": True, "context": {"summary": "asked for a person"}}
    return orjson.dumps({**record, **changes})


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (0 where none), read without joining the group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0
                for p in range(partitions)}
    finally:
        await consumer.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def in_process_sink(broker: EmbeddedBroker, url: str, topic: str, deadletter: str,
                    metrics: Metrics, **options: float) -> WebhookSink:
    group = f"{topic}-webhooks"
    dead_letters = KafkaDeadLetters(broker.address, deadletter)
    webhooks = Webhooks(
        [url], SECRET, metrics, dead_letters, max_tries=int(options.get("max_tries", 5)),
        backoff=Backoff(0.02, 0.1), timeout_s=options.get("timeout_s", 5.0),
    )
    return WebhookSink(webhooks, dead_letters, bootstrap_servers=broker.address, group_id=group,
                       topics=[topic], concurrency=4, auto_offset_reset="earliest",
                       session_timeout_s=3.0, heartbeat_interval_s=0.5)


async def run_sink_until(sink: WebhookSink, check: Callable[[], Awaitable[bool]],
                         timeout: float, what: str) -> None:
    task = asyncio.create_task(sink.run())
    try:
        await until(check, timeout, what)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def deliveries(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value(
        "frictionwatch_webhook_deliveries_total", {"outcome": outcome, "type": "handoff"}) or 0.0


def test_every_handoff_reaches_a_failing_then_recovering_receiver_once(
        broker: EmbeddedBroker) -> None:
    topic, deadletter = f"wh-{uuid.uuid4().hex[:8]}", f"wh-dead-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(broker.address, [topic, deadletter], 2))
    handoffs = [(f"s{i}".encode(), handoff(f"h{i}", f"s{i}")) for i in range(6)]
    records = [
        *handoffs,
        handoffs[1], handoffs[4],  # duplicates, as a worker that re-processes leaves them
        (b"s-nudge", handoff("n1", "s-nudge", kind="nudge")),
        (b"s-held", handoff("held-1", "s-held", delivered=False)),  # holdout
    ]
    asyncio.run(produce(broker.address, records, topic))
    metrics = Metrics()
    # Each id: 500, 500, then 200.
    with Receiver(lambda request, tries: 500 if tries <= 2 else 200) as receiver:
        sink = in_process_sink(broker, receiver.url, topic, deadletter, metrics)

        async def all_delivered_and_committed() -> bool:
            if len(receiver.answered(200)) < 6:
                return False
            offsets = await committed(broker.address, sink.group_id, topic, 2)
            return sum(offsets.values()) == len(records)  # fresh topic: offsets from 0

        asyncio.run(run_sink_until(sink, all_delivered_and_committed, 60,
                                   "six deliveries and every offset committed"))
        requests = receiver.requests

    ok = Counter(r.id for r in receiver.answered(200))
    assert ok == {f"h{i}": 1 for i in range(6)}, ok  # each id accepted exactly once
    assert Counter(r.id for r in requests) == {f"h{i}": 3 for i in range(6)}
    assert not any(r.id in ("n1", "held-1") for r in requests)  # no nudge, no holdout
    assert (deliveries(metrics, "delivered"), deliveries(metrics, "retried"),
            deliveries(metrics, "duplicate"), deliveries(metrics, "dead_lettered")) == (6, 12, 2, 0)
    verify = documented_verify()
    for request in requests:
        assert verify(SECRET.encode(), request.body, request.headers["X-FW-Signature"])
        assert request.headers["X-FW-Event"] == "handoff"
        assert request.payload["type"] == "handoff" and request.payload["id"] == request.id
        assert request.payload["data"]["intervention_id"] == request.id


def test_a_receiver_that_never_answers_sends_the_handoff_to_the_dead_letters(
        broker: EmbeddedBroker) -> None:
    topic, deadletter = f"wh-{uuid.uuid4().hex[:8]}", f"wh-dead-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(broker.address, [topic, deadletter], 2))
    value = handoff("lost-1", "s-lost")
    asyncio.run(produce(broker.address, [(b"s-lost", value)], topic))
    metrics = Metrics()
    with Receiver(lambda request, tries: None) as receiver:  # holds every request
        sink = in_process_sink(broker, receiver.url, topic, deadletter, metrics,
                               max_tries=3, timeout_s=0.3)

        async def dead_lettered_and_committed() -> bool:
            offsets = await committed(broker.address, sink.group_id, topic, 2)
            return deliveries(metrics, "dead_lettered") == 1 and sum(offsets.values()) == 1

        asyncio.run(run_sink_until(sink, dead_lettered_and_committed, 60,
                                   "a dead letter and the offset committed"))
        tries = [r.id for r in receiver.requests]
    assert tries == ["lost-1"] * 3
    [dead] = asyncio.run(consume(broker.address, deadletter, lambda rs: len(rs) >= 1, timeout=30))
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.key == b"s-lost" and dead.value == value  # the record as it was
    assert headers["fw-reason"] == "webhook_failed"
    assert headers["fw-detail"] == (f"POST http://127.0.0.1:{receiver.port}/hook: "
                                    "no answer within 0.3 s, after 3 tries")
    assert headers["fw-topic"] == topic and int(headers["fw-offset"]) == 0
    assert (deliveries(metrics, "retried"), deliveries(metrics, "delivered")) == (2, 0)


def test_a_slow_receiver_does_not_stall_the_worker(tmp_path: Path) -> None:
    """Acceptance: while a receiver sits on a handoff, the worker's pipeline goes on
    consuming and committing events; then the handoff is delivered, once.

    A broker of its own: a worker of another test on the shared one would read these
    events too and publish its own (non-holdout) copies of the interventions.
    """
    with EmbeddedBroker() as broker:
        _slow_receiver_scenario(broker, tmp_path)


def _slow_receiver_scenario(broker: EmbeddedBroker, tmp_path: Path) -> None:
    app_id = f"fw-webhooks-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "holdout.toml"
    config.write_text("[model]\nenabled = false\n[policy]\nholdout_share = 0.5\n")
    names = (f"{app_id}-{i}" for i in itertools.count())
    shown = next(s for s in names if not in_holdout(s, 0.5))
    held = next(s for s in names if in_holdout(s, 0.5))

    # The first try is held until released and then answered 500; the second gets 500
    # too; the third 200.
    def script(request: object, tries: int) -> int | None:
        return None if tries == 1 else 500 if tries == 2 else 200

    with Receiver(script, release_status=500) as receiver:
        env = {"FW_WEBHOOK_URLS": receiver.url, "FW_WEBHOOK_SECRET": SECRET,
               "FW_WEBHOOK_TIMEOUT_S": "120", "FW_WEBHOOK_BACKOFF_S": "0.05",
               "FW_WEBHOOK_BACKOFF_MAX_S": "0.2"}
        with running_worker(broker, tmp_path, app_id, "--config", str(config), env=env) as w:
            bootstrap = w.settings.bootstrap_servers
            wait_for(lambda: w.metric("frictionwatch_webhook_partitions") == 2, 60,
                     "the webhook sink to read its partitions", w.process)
            # Three failed payments: a nudge (never posted), then a handoff. Not a help
            # request: that handoff is shown even to a holdout session.
            asyncio.run(produce(bootstrap, [
                (s.encode(), orjson.dumps([{"session_id": s, "type": "checkout_failed",
                                            "ts": BASE_TS + i, "reason": "card_declined"}
                                           for i in range(3)]))
                for s in (shown, held)]))
            wait_for(lambda: len(receiver.requests) == 1, 60, "the handoff to reach the receiver")

            # The receiver sits on it. Events keep flowing through the pipeline.
            records_before = w.metric("frictionwatch_records_total")
            events_before = sum(asyncio.run(committed(bootstrap, app_id, "frictionwatch.events",
                                                      2)).values())
            browsing = [(f"{app_id}-b{i}".encode(), orjson.dumps(
                {"session_id": f"{app_id}-b{i}", "type": "page_view", "ts": BASE_TS, "page": "/"}))
                for i in range(40)]
            asyncio.run(produce(bootstrap, browsing))
            wait_for(lambda: w.metric("frictionwatch_records_total") - records_before >= 40, 30,
                     "the worker to consume events while the receiver is slow", w.process)
            wait_for(lambda: sum(asyncio.run(committed(
                bootstrap, app_id, "frictionwatch.events", 2)).values()) >= events_before + 40,
                30, "the events group to commit past them", w.process)
            assert len(receiver.requests) == 1 and receiver.answered(500) == []  # still held

            receiver.release()
            wait_for(lambda: w.metric("frictionwatch_webhook_deliveries_total",
                                      outcome="delivered") == 1, 30, "the delivery", w.process)
            assert w.metric("frictionwatch_webhook_deliveries_total", outcome="retried") == 2

            # The holdout session's handoff went past the sink (its offset is committed)
            # without a request.
            out = asyncio.run(consume(bootstrap, "frictionwatch.interventions", lambda rs: any(
                r.key == held.encode() and orjson.loads(r.value)["kind"] == "handoff" for r in rs)))
            [held_record] = [r for r in out if r.key == held.encode()
                             and orjson.loads(r.value)["kind"] == "handoff"]
            assert orjson.loads(held_record.value)["delivered"] is False
            wait_for(lambda: asyncio.run(committed(
                bootstrap, f"{app_id}-webhooks", "frictionwatch.interventions", 2)
            )[held_record.partition] > held_record.offset, 30, "the sink to pass the holdout")

    requests = receiver.requests
    assert {r.payload["data"]["session_id"] for r in requests} == {shown}
    assert len({r.id for r in requests}) == 1 and len(receiver.answered(200)) == 1
    assert len(requests) == 3
    assert all(documented_verify()(SECRET.encode(), r.body, r.headers["X-FW-Signature"])
               for r in requests)
