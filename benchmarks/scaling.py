"""(f) Two workers in one consumer group against one, on the same records.

For each group size the group starts at the end of the events topic, its workers are
started and the harness waits until their partitions are assigned (each worker exports
``frictionwatch_consumer_lag`` for exactly the partitions it owns: disjoint, covering
all four); only then are the storm arrays produced, so no rebalance falls inside the
timed window. (The other cases fill their topic first; here a join after the records
would rebalance in the middle of the run.) Timed from the first counted event to the
last, summed over the group. CPU seconds of the workers, of the broker and of the whole
machine (/proc/stat, which includes everyone else's load) over the window say what
limits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import datasets, harness
from benchmarks.harness import Ledger, say
from streamer.embedded import free_port
from streamer.stream.topics import EVENTS_TOPIC

APPS = ("fw-bench-scale-1", "fw-bench-scale-2")


@dataclass(frozen=True)
class Run:
    workers: int
    timed: harness.Timed
    broker_cpu_s: float
    machine_busy: float  # share of all cores busy (everyone's load)


@dataclass(frozen=True)
class Scaling:
    runs: list[Run]

    def line(self) -> str:
        one, two = self.runs
        parts = []
        for r in self.runs:
            t = r.timed
            parts.append(
                f"{r.workers} worker{'s' if r.workers > 1 else ''} {t.rate:,.0f} events/s "
                f"(workers {t.cpu_s / t.seconds:.2f} cores, broker "
                f"{r.broker_cpu_s / t.seconds:.2f} cores, machine {r.machine_busy:.0%} busy)")
        return (f"(f) scale: two workers in one group vs one on storm arrays: "
                f"**{two.timed.rate / one.timed.rate:.2f}x**; " + "; ".join(parts))


def proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / harness.CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def owned_partitions(body: str | None) -> set[int]:
    owned = set()
    for line in (body or "").splitlines():
        if line.startswith("frictionwatch_consumer_lag{") and f'topic="{EVENTS_TOPIC}"' in line:
            owned.add(int(line.split('partition="', 1)[1].split('"', 1)[0]))
    return owned


def assigned(group: list[harness.Worker]) -> bool:
    owned = [owned_partitions(w.body()) for w in group]
    union: set[int] = set().union(*owned)
    return (all(owned) and sum(len(o) for o in owned) == len(union)
            and union == set(range(harness.PARTITIONS)))


def measure(addr: str, ledger: Ledger, logdir: Path, records: list[datasets.Record],
            events: int, broker_pid: int | None, *, join_timeout: float,
            stall_timeout: float) -> Scaling:
    runs = []
    for n, app in enumerate(APPS, 1):
        asyncio.run(harness.commit_offsets(addr, app, EVENTS_TOPIC, ledger.of(EVENTS_TOPIC)))
        with contextlib.ExitStack() as stack:
            group: list[harness.Worker] = []
            for i in range(n):
                port = free_port()
                w = harness.start_worker(
                    f"scale-{n}-{i}", ["-m", "streamer", "worker", "--broker", addr,
                                       "--app-id", app, "--web-port", str(port)],
                    f"http://127.0.0.1:{port}/metrics", logdir, harness.read_metrics,
                    env=harness.RUN_ENV)
                stack.callback(harness.stop_worker, w)  # stopped by pid, whatever happens
                group.append(w)
            took = harness.wait_for(functools.partial(assigned, group), join_timeout,
                                    f"{n} worker(s) to split the partitions", group)
            say(f"scale: {n} worker(s) assigned after {took:.1f}s "
                f"({[sorted(owned_partitions(w.body())) for w in group]})")
            broker0, machine0 = proc_cpu_s(broker_pid), machine_ticks()
            asyncio.run(harness.produce(addr, EVENTS_TOPIC, records, f"scale-{n}", ledger))
            timed = harness.time_workers(group, f"(f) {n} worker(s)", events, len(records),
                                         join_timeout=join_timeout, stall_timeout=stall_timeout)
            broker1, machine1 = proc_cpu_s(broker_pid), machine_ticks()
        busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1)
        runs.append(Run(n, timed, broker1 - broker0, busy))
        say(f"(f) {n} worker(s): {timed.rate:,.0f} events/s")
        time.sleep(0.5)
    return Scaling(runs)
