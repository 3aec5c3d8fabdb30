"""Consumer lag exported by the worker (streamer.stream.lag): unit tests and the real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamer.embedded import EmbeddedBroker, create_topics, free_port
from streamer.stream.lag import ConsumerLag
from streamer.stream.topics import EVENTS_TOPIC
from tests.conftest import ROOT, produce, stop_process, wait_for

EVENTS = EVENTS_TOPIC


class FakeConsumer:
    """What ConsumerLag.measure reads from a Faust consumer."""

    def __init__(self, ends: dict[TP, int], committed: dict[TP, int | None],
                 earliest: dict[TP, int], fetched: dict[TP, int | None]) -> None:
        self.ends, self._committed_offset, self.earliest = ends, committed, earliest
        self.fetched = fetched

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int | None:
        return self.fetched.get(tp)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}


def test_measure_uses_committed_then_earliest_and_only_our_topics() -> None:
    p0, p1, other = TP(EVENTS, 0), TP(EVENTS, 1), TP("frictionwatch.signals", 0)
    consumer = FakeConsumer(
        ends={p0: 120, p1: 50, other: 999},
        committed={p0: 100, other: 0},  # p1: never committed
        earliest={p1: 20},  # retention removed offsets below 20
        fetched={p0: None, p1: 45},  # p0 not fetched yet; p1's last fetch is older
    )
    lag = ConsumerLag(CollectorRegistry(), [EVENTS])
    assert asyncio.run(lag.measure(consumer)) == {p0: 20, p1: 30}
    assert p1 not in consumer._committed_offset  # measuring added nothing to Faust's map


def test_measure_takes_the_fetched_watermark_when_list_offsets_is_short() -> None:
    """Tansu answers ListOffsets with the last batch's base offset + 1 (here 1 for 40)."""
    p0 = TP(EVENTS, 0)
    consumer = FakeConsumer(ends={p0: 1}, committed={}, earliest={p0: 0}, fetched={p0: 40})
    lag = ConsumerLag(CollectorRegistry(), [EVENTS])
    assert asyncio.run(lag.measure(consumer)) == {p0: 40}


def test_update_exports_and_removes_revoked_partitions() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag(registry, [EVENTS])

    def value(partition: int) -> float | None:
        return registry.get_sample_value("frictionwatch_consumer_lag",
                                         {"topic": EVENTS, "partition": str(partition)})

    lag.update({TP(EVENTS, 0): 5, TP(EVENTS, 1): 3})
    assert (value(0), value(1)) == (5.0, 3.0)
    lag.update({TP(EVENTS, 1): 0})
    assert (value(0), value(1)) == (None, 0.0)


def test_no_topics_is_refused() -> None:
    with pytest.raises(ValueError, match="topics is empty"):
        ConsumerLag(CollectorRegistry(), [])


def _lags(url: str) -> dict[tuple[str, str], float]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "frictionwatch_consumer_lag"
    }


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of its own: the shared one's events topic holds other tests' records."""
    with EmbeddedBroker() as b:
        yield b


@pytest.mark.broker
def test_lag_rises_while_the_worker_is_held_then_drains(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Records produced before the worker can process them show as lag, then drain to 0."""
    broker = own_broker
    asyncio.run(create_topics(broker.address, [EVENTS], 2))
    records = [(f"s{i}".encode(), b'{"n": %d}' % i) for i in range(40)]
    asyncio.run(produce(broker.address, records))  # nothing consumes them yet

    port, gate = free_port(), tmp_path / "gate"
    log = tmp_path / "lag-app.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.deploy.lag_app", broker.address, str(port), str(gate)],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        # Assigned both partitions, agent held on its first record: all 40 are lag.
        wait_for(lambda: sum(_lags(url).values()) >= 40, 90, f"lag of 40 (log {log})", process)
        lags = _lags(url)
        assert set(lags) == {(EVENTS, "0"), (EVENTS, "1")}  # our topic only, every partition
        assert sum(lags.values()) == 40
        gate.touch()
        wait_for(lambda: (lags := _lags(url)) != {} and sum(lags.values()) == 0, 60,
                 f"lag to drain (log {log})", process)
    finally:
        stop_process(process)
