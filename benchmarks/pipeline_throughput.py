"""Events per second on the embedded broker, on the same records for every pipeline.

``make bench`` (or ``python -m benchmarks.pipeline_throughput [--events N]``) starts ONE
embedded broker and, in one run, for each kind of record (:mod:`benchmarks.datasets`):

- **storm arrays**: per-session arrays of up to K (20) events of a friction storm;
- **simulator arrays**: per-session arrays of up to K events of the simulator's mix;
- **single events**: the storm's events, one per record (what foreign producers send);

measures, on the very same records:

(a) plain aiokafka consume + orjson decode: what the broker and the decoder deliver;
(b) the naive Faust agent (:mod:`benchmarks.naive_agent`): Faust's json codec, one
    table write per record (its session's event count);
(b0) the floor (``naive_agent --floor``): raw values taken in batches, decoded and
    counted, nothing written or sent: what any Faust agent pays for these records;
(c) our worker (``python -m streamer worker``, `frictionwatch run`'s group timeouts):
    every detector, the online models and the incident agent on;

and prints events/s and the ratio to (b), ratios first; then (d) the latency line
(:mod:`benchmarks.latency`), (e) the memory line (:mod:`benchmarks.memory`) and (f) the
two-worker line (:mod:`benchmarks.scaling`). The in-process column is
``Pipeline.process_batch`` over the same records (:mod:`benchmarks.inprocess`).

Every topic is filled before its consumer starts. A Faust worker is timed from the
first event it counts to the last (its group join and table recovery are excluded):
the harness reads the worker's counter (``frictionwatch_events_total`` on ``/metrics``,
``/count/`` for the naive agent) every 100 ms, and the rate is the events counted
inside that window over its length. Then the harness waits until the worker's
consumer group has committed every record (Faust commits every 2.8 s, after flushing
its producer): "commit +s" is how long after the last counted event that happened.
The worker's CPU seconds (all threads, from /proc) in the window give the CPU
µs/event column, which the machine's other load disturbs less than events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import datasets, harness, inprocess, latency, memory, scaling
from benchmarks.harness import BenchError, Ledger, say
from streamer.embedded import create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, Topics

RAW_REPEATS = 3
APP_PREFIX = "fw-bench"


@dataclass(frozen=True)
class Case:
    key: str  # storm | sim | single
    label: str
    records: list[datasets.Record]
    events: int


@dataclass(frozen=True)
class Row:
    case: Case
    raw: float  # events/s
    naive: harness.Timed
    floor: harness.Timed
    ours: harness.Timed
    naive_commit_s: float
    ours_commit_s: float
    inproc_us: float
    signals: int
    interventions: int


def raw_rate(addr: str, topic: str, ends: dict[int, int], events: int, timeout: float) -> float:
    runs = []
    for i in range(RAW_REPEATS):
        n, records, seconds = asyncio.run(
            harness.raw_consume(addr, topic, {p: (0, e) for p, e in ends.items()}, timeout))
        if n != events:
            raise BenchError(f"raw {topic}: decoded {n} events, expected {events}")
        say(f"raw {topic} run {i + 1}/{RAW_REPEATS}: {n:,} events in {seconds:.3f}s")
        runs.append(n / seconds)
    return statistics.median(runs)


def our_argv(addr: str, app_id: str, port: int) -> list[str]:
    return ["-m", "streamer", "worker", "--broker", addr, "--app-id", app_id,
            "--partitions", str(harness.PARTITIONS), "--web-port", str(port)]


def naive_argv(addr: str, app_id: str, topic: str, port: int, floor: bool = False
               ) -> list[str]:
    return ["-m", "benchmarks.naive_agent", "--broker", addr, "--app-id", app_id,
            "--topic", topic, "--partitions", str(harness.PARTITIONS), "--web-port", str(port),
            *(["--floor"] if floor else [])]


def counts_of(body: str | None, name: str) -> int:
    total = 0.0
    for line in (body or "").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def run_case(addr: str, case: Case, ledger: Ledger, logdir: Path, args: argparse.Namespace
             ) -> Row:
    naive_topic = f"bench.{case.key}"
    naive_ends = asyncio.run(harness.produce(addr, naive_topic, case.records, case.label, ledger))
    start = ledger.of(EVENTS_TOPIC)
    ours_app = f"{APP_PREFIX}-{case.key}"
    asyncio.run(harness.commit_offsets(addr, ours_app, EVENTS_TOPIC, start))
    ours_ends = asyncio.run(harness.produce(addr, EVENTS_TOPIC, case.records, case.label, ledger))
    raw = raw_rate(addr, naive_topic, naive_ends, case.events, max(60.0, case.events / 2000)) \
        if not args.no_naive else float("nan")

    timeouts = {"join_timeout": args.join_timeout, "stall_timeout": args.stall_timeout}
    naive, naive_commit = harness.Timed(0, 0, float("nan"), 0, 0.0), float("nan")
    floor = naive
    if not args.no_naive:
        for name, kind in (("b", "naive"), ("b0", "floor")):
            is_floor = kind == "floor"
            port = free_port()
            app_id = f"{APP_PREFIX}-{kind}-{case.key}"
            w = harness.start_worker(f"{kind}-{case.key}",
                                     naive_argv(addr, app_id, naive_topic, port, is_floor),
                                     f"http://127.0.0.1:{port}/count/", logdir,
                                     harness.read_naive_count)
            with harness.workers(w):
                timed = harness.time_workers([w], f"({name}) {case.label}", case.events,
                                             len(case.records), **timeouts)
                committed = asyncio.run(harness.wait_committed(
                    addr, app_id, naive_topic, naive_ends, args.stall_timeout))
            say(f"({name}) {case.label}: {timed.rate:,.0f} events/s, all committed "
                f"+{committed:.1f}s")
            if is_floor:
                floor = timed
            else:
                naive, naive_commit = timed, committed

    port = free_port()
    w = harness.start_worker(f"ours-{case.key}", our_argv(addr, ours_app, port),
                             f"http://127.0.0.1:{port}/metrics", logdir, harness.read_metrics,
                             env=harness.RUN_ENV)
    with harness.workers(w):
        ours = harness.time_workers([w], f"(c) {case.label}", case.events, len(case.records),
                                    **timeouts)
        ours_commit = asyncio.run(harness.wait_committed(addr, ours_app, EVENTS_TOPIC,
                                                         ours_ends, args.stall_timeout))
        body = w.body()
    say(f"(c) {case.label}: {ours.rate:,.0f} events/s, all committed +{ours_commit:.1f}s")
    inproc = inprocess.run(case.records, repeats=1)
    return Row(case, raw, naive, floor, ours, naive_commit, ours_commit, inproc.us_per_event,
               counts_of(body, "frictionwatch_signals_total"),
               counts_of(body, "frictionwatch_interventions_total"))


def throughput_table(rows: Sequence[Row]) -> str:
    out = [
        "| records | (c)/(b) | (b0)/(b) | (a)/(b) | (b) naive ev/s | (c) ours ev/s "
        "| (b0) Faust floor ev/s | (a) aiokafka+orjson ev/s "
        "| CPU µs/event (b) / (b0) / (c) | (c) in-process µs/event "
        "| events | ev/record | (c) signals / interventions | commit +s (b) / (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b, f, c = r.naive, r.floor, r.ours
        out.append(
            f"| {r.case.label} | **{c.rate / b.rate:.2f}x** | {f.rate / b.rate:.2f}x "
            f"| {r.raw / b.rate:.0f}x | {b.rate:,.0f} | {c.rate:,.0f} | {f.rate:,.0f} "
            f"| {r.raw:,.0f} | {b.cpu_us_per_event:.0f} / {f.cpu_us_per_event:.0f} "
            f"/ {c.cpu_us_per_event:.0f} | {r.inproc_us:.1f} "
            f"| {r.case.events:,} | {r.case.events / len(r.case.records):.1f} "
            f"| {r.signals / r.case.events:.1%} / {r.interventions / r.case.events:.1%} "
            f"| {r.naive_commit_s:.1f} / {r.ours_commit_s:.1f} |"
        )
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_throughput",
                                description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000, help="events per throughput case")
    p.add_argument("--events-per-record", type=int, default=20,
                   help="K: events per array record")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", default="storm,sim,single,latency,memory,scaling",
                   help="comma-separated parts to run (default: all)")
    p.add_argument("--latency-rate", type=int, default=5000, help="offered events/s")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--latency-fetch-waits", default="100,20",
                   help="consumer fetch waits (ms) to measure the latency at; the first is "
                        "`run`'s default")
    p.add_argument("--memory-sessions", type=int, default=100_000)
    p.add_argument("--join-timeout", type=float, default=120.0,
                   help="seconds a worker may take to join and count its first event")
    p.add_argument("--stall-timeout", type=float, default=60.0,
                   help="seconds a worker may go without counting a new event")
    p.add_argument("--no-naive", action="store_true",
                   help="while developing: skip (a) and (b), run our worker only")
    p.add_argument("--worker-tree", type=Path,
                   help="run our worker (every `python -m streamer`) from this source tree, "
                        "e.g. a `git archive` of an older commit, for a before/after row")
    args = p.parse_args(argv)
    if args.worker_tree is not None:
        harness.WORKER_TREE = args.worker_tree.resolve()
    if args.events < 1 or args.events_per_record < 1:
        p.error("--events and --events-per-record must be >= 1")
    return args


def run(args: argparse.Namespace, logdir: Path) -> list[str]:
    parts = set(args.only.split(","))
    k = args.events_per_record
    say(f"generating {args.events:,} events of each traffic")
    storm = datasets.storm(args.events, args.seed)
    sim = datasets.simulator_mix(args.events, args.seed)
    cases = [
        Case("storm", f"storm, arrays of <= {k}", datasets.arrays(storm, k), storm.events),
        Case("sim", f"simulator mix, arrays of <= {k}", datasets.arrays(sim, k), sim.events),
        Case("single", "storm, 1 event/record", datasets.singles(storm), storm.events),
    ]
    lines: list[str] = []
    with harness.broker() as b:
        addr = b.address
        names = {EVENTS_TOPIC, *(f"bench.{c.key}" for c in cases)}
        apps = [f"{APP_PREFIX}-{c.key}" for c in cases] + [
            memory.APP, *scaling.APPS]
        for app_id in apps:
            names.update(Topics.names(Settings(broker=addr, app_id=app_id)))
        asyncio.run(create_topics(addr, sorted(names), harness.PARTITIONS))
        ledger = Ledger()
        rows = [run_case(addr, c, ledger, logdir, args) for c in cases if c.key in parts]
        if rows:
            lines += [throughput_table(rows), ""]
        if "latency" in parts:
            waits = [int(w) for w in args.latency_fetch_waits.split(",") if w]
            lines.append(latency.measure(addr, ledger, logdir, rate=args.latency_rate,
                                         seconds=args.latency_seconds, seed=args.seed + 6,
                                         join_timeout=args.join_timeout,
                                         fetch_waits=waits).line())
        if "memory" in parts:
            lines.append(memory.measure(addr, ledger, logdir, sessions=args.memory_sessions,
                                        join_timeout=args.join_timeout).line())
        if "scaling" in parts:
            lines.append(scaling.measure(addr, ledger, logdir, cases[0].records, cases[0].events,
                                         b.process.pid if b.process else None,
                                         join_timeout=args.join_timeout,
                                         stall_timeout=args.stall_timeout).line())
    return lines


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
    load_before = harness.load()
    started = time.monotonic()
    ok = False
    try:
        lines = run(args, logdir)
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
    print("\n".join(lines))
    print()
    print(f"commit {harness.git_commit()}, {time.strftime('%Y-%m-%d')}, "
          f"{time.monotonic() - started:.0f} s; machine: {harness.machine()}; load average "
          f"(1/5/15 min) {load_before} at the start, {harness.load()} at the end")
    print(harness.versions())
    if harness.WORKER_TREE is not None:
        print(f"our worker ran from {harness.WORKER_TREE} (--worker-tree), not this tree")
    print(f"(a): median of {RAW_REPEATS} runs; (b), (c): from the first counted event to the "
          f"last (join excluded), counter read every {harness.POLL_S * 1000:.0f} ms; "
          f"compare ratios measured in one run, not absolute figures across runs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
