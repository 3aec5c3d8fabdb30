"""Foreign Kafka clients against the embedded broker: what the README's "Kafka clients"
promises. confluent-kafka (librdkafka 2.16) feeds a running worker and reads what it
writes; the installed kcat connects exactly when its librdkafka is 2.2.0 or newer."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import confluent_kafka
import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from streamer.embedded import EmbeddedBroker
from tests.conftest import need_tool, running_worker

pytestmark = pytest.mark.broker

BASE_TS = 1_767_225_600_000
#: The first librdkafka that gets past ApiVersionRequest on the embedded broker (README).
FIRST_GOOD_LIBRDKAFKA = (2, 2, 0)


def test_confluent_kafka_feeds_a_worker_and_reads_interventions_and_dead_letters(
        tmp_path: Path) -> None:
    """A broker and a worker of its own: the shared ``worker`` fixture, once started,
    reads every later test's events (test_reload counts on it not running yet)."""
    assert confluent_kafka.libversion()[0].startswith("2.16."), confluent_kafka.libversion()
    with EmbeddedBroker() as broker, running_worker(broker, tmp_path, "fw-interop") as worker:
        _feed_and_read(worker.settings.bootstrap_servers)


def _feed_and_read(bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    sid, bad_key = f"ck-{run}", f"ck-bad-{run}"
    beacon = [{"session_id": sid, "type": "page_view", "ts": BASE_TS, "page": "/checkout"},
              {"session_id": sid, "type": "help_request", "ts": BASE_TS + 1000}]

    failed: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": "interop-test"})
    producer.produce("frictionwatch.events", key=sid, value=orjson.dumps(beacon),
                     on_delivery=lambda err, _msg: err is not None and failed.append(err))
    producer.produce("frictionwatch.events", key=bad_key, value=b"this is not json",
                     on_delivery=lambda err, _msg: err is not None and failed.append(err))
    assert producer.flush(30) == 0 and failed == []

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"interop-{run}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        # The embedded broker holds a JoinGroup for half the session timeout.
        "session.timeout.ms": 6000,
    })
    found: dict[str, Message] = {}
    try:
        consumer.subscribe(["frictionwatch.interventions", "frictionwatch.deadletter"])
        deadline = time.monotonic() + 90
        while len(found) < 2 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is None or error.code() == KafkaError._PARTITION_EOF, error
            key = (message.key() or b"").decode()
            if key == sid and message.topic() == "frictionwatch.interventions":
                found["handoff"] = message
            elif key == bad_key and message.topic() == "frictionwatch.deadletter":
                found["dead"] = message
        assert set(found) == {"handoff", "dead"}, f"only {sorted(found)} within 90 s"
        # Commits in the consumer group work too.
        consumer.commit(asynchronous=False)
        positions = consumer.committed(consumer.assignment(), timeout=10)
        assert sum(max(tp.offset, 0) for tp in positions) > 0
    finally:
        consumer.close()

    handoff = orjson.loads(found["handoff"].value())
    assert handoff["kind"] == "handoff" and handoff["session_id"] == sid
    assert handoff["reasons"][0]["detector"] == "help_request"
    dead = found["dead"]
    headers = {k: v.decode() for k, v in dead.headers() or []}
    assert dead.value() == b"this is not json"  # the original bytes
    assert headers["fw-reason"] == "not_json" and headers["fw-topic"] == "frictionwatch.events"


def test_kcat_connects_exactly_when_its_librdkafka_is_new_enough(broker: EmbeddedBroker) -> None:
    kcat = need_tool("kcat")
    about = subprocess.run([kcat, "-V"], capture_output=True, text=True, timeout=30)
    match = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", about.stdout + about.stderr)
    assert match, about.stdout + about.stderr
    version = tuple(int(n) for n in match.groups())
    listing = subprocess.run([kcat, "-b", broker.address, "-L", "-m", "5"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    connects = listing.returncode == 0
    assert connects == (version >= FIRST_GOOD_LIBRDKAFKA), (
        f"kcat with librdkafka {'.'.join(match.groups())} "
        f"{'connects' if connects else 'does not connect'}: the README's 'Kafka clients' "
        f"is out of date\n{listing.stderr[-1000:]}")
    if not connects:
        assert "Read underflow" in listing.stderr
