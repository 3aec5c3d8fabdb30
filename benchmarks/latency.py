"""(d) Latency at a fixed offered load: event record append -> intervention record append.

A plain aiokafka producer offers per-session records of 5 storm events at a fixed rate
(default 5,000 events/s = 1,000 records/s, paced every millisecond) to one worker
started with `frictionwatch run`'s settings (the embedded broker's group timeouts),
once per consumer fetch wait measured (default: `run`'s 100 ms, then 20 ms), each time
a fresh worker and fresh shoppers; the worker's CPU idle (5 s before the load) and
under the load is what a shorter fetch wait costs.

Latency of an intervention = its record's timestamp minus the timestamp of the event
record that holds the event it answers (matched by session id and event ``ts``), both
read back from the topics. Tansu keeps the producer's CreateTime (it ignores
``message.timestamp.type=LogAppendTime``), so "append time" is when each producer
appended the record to its batch: the intervention's own linger (5 ms at most) is not
in it. A consumer reading the interventions topic meanwhile (fetch wait 5 ms) gives the
"seen" figure, which includes that and the fetch. The first seconds of the offered
load are left out (warm-up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import datasets, harness
from benchmarks.harness import BenchError, Ledger, say
from streamer.embedded import create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, INTERVENTIONS_TOPIC, Topics

APP = "fw-bench-latency"
PER_RECORD = 5
WARMUP_S = 3.0
#: Seconds the idle worker's CPU is measured for, before the load.
IDLE_S = 5.0


@dataclass(frozen=True)
class Latency:
    offered: int  # events/s
    achieved: float  # events/s the producer really offered
    seconds: float
    fetch_wait_ms: int
    append_ms: list[float]
    seen_ms: list[float]
    busy_cpu: float  # worker CPU, share of one core, under the load
    idle_cpu: float  # the same, idle, before the load

    def part(self) -> str:
        a, s = self.append_ms, self.seen_ms
        if not a:
            return f"fetch wait {self.fetch_wait_ms} ms: no intervention matched (see the log)"
        return (
            f"fetch wait {self.fetch_wait_ms} ms: **p50 {pct(a, 50):.0f} ms / p99 "
            f"{pct(a, 99):.0f} ms** (max {max(a):.0f}, {len(a):,} interventions; seen by a "
            f"consumer p50 {pct(s, 50):.0f} / p99 {pct(s, 99):.0f} ms); worker CPU "
            f"{self.busy_cpu:.0%} of a core under the load, {self.idle_cpu:.1%} idle"
        )


@dataclass(frozen=True)
class LatencyReport:
    runs: list[Latency]

    def line(self) -> str:
        r = self.runs[0]
        return (f"(d) latency, event append -> intervention append, at {r.offered:,} events/s "
                f"offered ({', '.join(f'{x.achieved:,.0f}' for x in self.runs)} achieved; "
                f"{PER_RECORD}-event storm records for {r.seconds:.0f} s, `run`'s settings): "
                + "; ".join(x.part() for x in self.runs))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def _offer(bootstrap: str, records: list[datasets.Record], per_s: float,
                 ledger: Ledger) -> float:
    """Send ``records`` at ``per_s`` records/s (recorded in ``ledger``); returns the
    seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        futures = []
        for i, (key, value) in enumerate(records):
            delay = started + i / per_s - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            futures.append(await producer.send(EVENTS_TOPIC, value=value, key=key))
        acks = await asyncio.gather(*futures)
        took = loop.time() - started
        ends = ledger.of(EVENTS_TOPIC)
        for ack in acks:
            ends[ack.partition] = max(ends[ack.partition], ack.offset + 1)
        ledger.ends[EVENTS_TOPIC] = ends
        return took
    finally:
        await producer.stop()


async def _observe(bootstrap: str, keys: set[bytes], stop: asyncio.Event) -> list[tuple[Any, float]]:
    """(record, receive time in ms) of every intervention of ``keys`` until ``stop``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=5)
    await consumer.start()
    seen: list[tuple[Any, float]] = []
    try:
        partitions = consumer.partitions_for_topic(INTERVENTIONS_TOPIC) or set()
        tps = [TopicPartition(INTERVENTIONS_TOPIC, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)  # Tansu may answer a little short: filtered by key
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time() * 1000
            for msgs in batch.values():
                seen.extend((m, now) for m in msgs if m.key in keys)
        return seen
    finally:
        await consumer.stop()


async def _drive(bootstrap: str, records: list[datasets.Record], per_s: float,
                 keys: set[bytes], worker: harness.Worker, events: int, before: int,
                 ledger: Ledger) -> tuple[float, float, list[tuple[Any, float]]]:
    stop = asyncio.Event()
    observer = asyncio.create_task(_observe(bootstrap, keys, stop))
    await asyncio.sleep(1.0)  # the observer is in place
    cpu0 = worker.cpu_s()
    took = await _offer(bootstrap, records, per_s, ledger)
    deadline = time.monotonic() + 60
    while True:
        counts = await asyncio.to_thread(worker.counts)
        if counts is not None and counts[0] - before >= events:
            break
        if time.monotonic() > deadline:
            stop.set()
            await observer
            raise BenchError(f"latency: the worker did not count all {events} events in 60 s")
        await asyncio.sleep(0.1)
    busy = (worker.cpu_s() - cpu0) / took
    await asyncio.sleep(1.0)  # the last interventions reach the observer
    stop.set()
    return took, busy, await observer


def measure(addr: str, ledger: Ledger, logdir: Path, *, rate: int, seconds: float, seed: int,
            join_timeout: float, fetch_waits: Sequence[int] = ()) -> LatencyReport:
    """One run per fetch wait (`run`'s own first), each with a fresh worker and shoppers."""
    waits = list(fetch_waits) or [Settings().fetch_max_wait_ms]
    return LatencyReport([
        _measure(addr, ledger, logdir, rate=rate, seconds=seconds, seed=seed + n,
                 join_timeout=join_timeout, fetch_wait=wait)
        for n, wait in enumerate(waits)])


def _measure(addr: str, ledger: Ledger, logdir: Path, *, rate: int, seconds: float, seed: int,
             join_timeout: float, fetch_wait: int) -> Latency:
    app = f"{APP}-{fetch_wait}"
    asyncio.run(create_topics(addr, Topics.names(Settings(broker=addr, app_id=app)),
                              harness.PARTITIONS))
    traffic = datasets.storm(int(rate * seconds), seed)
    records = datasets.arrays(traffic, PER_RECORD)
    keys = {s.session_id.encode() for s in traffic.sessions}
    asyncio.run(harness.commit_offsets(addr, app, EVENTS_TOPIC, ledger.of(EVENTS_TOPIC)))
    port = free_port()
    env = {**harness.RUN_ENV, "FW_FETCH_MAX_WAIT_MS": str(fetch_wait)}
    w = harness.start_worker(f"latency-{fetch_wait}", [
        "-m", "streamer", "worker", "--broker", addr, "--app-id", app, "--web-port", str(port)],
        f"http://127.0.0.1:{port}/metrics", logdir, harness.read_metrics, env=env)
    with harness.workers(w):
        probe = [(b"latency-probe", orjson.dumps({"session_id": "latency-probe",
                                                   "type": "page_view", "ts": 1, "page": "/"}))]
        harness.wait_for(lambda: w.counts() is not None, join_timeout, "latency worker web", [w])
        asyncio.run(harness.produce(addr, EVENTS_TOPIC, probe, "probe", ledger))
        harness.wait_for(lambda: (w.counts() or (0, 0))[0] >= 1, join_timeout,
                         "latency worker to consume its probe", [w])
        time.sleep(2.0)
        cpu0, t0 = w.cpu_s(), time.monotonic()
        time.sleep(IDLE_S)
        idle = (w.cpu_s() - cpu0) / (time.monotonic() - t0)
        start = ledger.of(EVENTS_TOPIC)
        say(f"latency (fetch wait {fetch_wait} ms): offering {len(records):,} records "
            f"({traffic.events:,} events) at {rate:,} events/s")
        before = (w.counts() or (0, 0))[0]
        took, busy, seen = asyncio.run(_drive(addr, records, rate / PER_RECORD, keys, w,
                                              traffic.events, before, ledger))
    # The event records as the broker holds them: their timestamps and events.
    appended = asyncio.run(_event_timestamps(addr, start, keys))
    first = min(appended.values()) if appended else 0
    append_ms, seen_ms = [], []
    for msg, received in seen:
        iv = orjson.loads(msg.value)
        t = appended.get((iv["session_id"], iv["ts"]))
        if t is None or t < first + WARMUP_S * 1000:
            continue
        append_ms.append(msg.timestamp - t)
        seen_ms.append(received - t)
    say(f"latency (fetch wait {fetch_wait} ms): {len(seen):,} interventions seen, "
        f"{len(append_ms):,} matched after warm-up")
    return Latency(rate, traffic.events / took, seconds, fetch_wait, append_ms, seen_ms, busy,
                   idle)


async def _event_timestamps(addr: str, start: dict[int, int], keys: set[bytes]
                            ) -> dict[tuple[str, int], int]:
    """(session id, event ts) -> timestamp of the first event record holding it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=50)
    await consumer.start()
    out: dict[tuple[str, int], int] = {}
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        empty = 0
        while empty < 3:  # read until three fetches in a row come back empty
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            empty = 0 if batch else empty + 1
            for msgs in batch.values():
                for m in msgs:
                    if m.key not in keys:
                        continue
                    for event in orjson.loads(m.value):
                        out.setdefault((event["session_id"], event["ts"]), m.timestamp)
        return out
    finally:
        await consumer.stop()
