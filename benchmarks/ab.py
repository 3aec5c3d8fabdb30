"""A/B: variants of our worker, alternated on the same records in one broker, N rounds.

``python -m benchmarks.ab --traffic storm|sim|single --events N --rounds R
VARIANT [VARIANT ...]`` where a VARIANT is ``name=SPEC`` and SPEC is a comma-separated
list of ``module:M`` (run ``python -m M worker``; default ``streamer``), ``tree:DIR`` (a
source tree to run the worker from, e.g. a ``git archive`` of the commit before a
change; default this one) and ``ENV=VALUE`` settings. The topic holds the dataset
only, and each run is a new consumer group reading it from the start, so every
variant consumes exactly the same records; variants alternate within each round so
that the machine's other load falls on all of them alike. Prints, per variant, the
median events/s and the least worker CPU µs/event of
the rounds (and each round's figures).

For changes between commits, compare ratios from the same invocation only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import datasets, harness
from benchmarks.harness import Ledger, say
from streamer.embedded import create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, Topics


@dataclass
class Variant:
    name: str
    module: str = "streamer"
    tree: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    runs: list[harness.Timed] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, spec = text.partition("=")
        v = cls(name)
        for part in filter(None, spec.split(",")):
            if part.startswith("module:"):
                v.module = part.removeprefix("module:")
            elif part.startswith("tree:"):
                v.tree = Path(part.removeprefix("tree:")).resolve()
            elif "=" in part:
                key, _, value = part.partition("=")
                v.env[key] = value
            else:
                raise SystemExit(f"variant {text!r}: cannot read {part!r}")
        return v


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+")
    p.add_argument("--traffic", choices=("storm", "sim", "single"), default="storm")
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-record", type=int, default=20, help="events per array record")
    args = p.parse_args(argv)
    variants = [Variant.parse(v) for v in args.variants]
    traffic = datasets.simulator_mix(args.events) if args.traffic == "sim" else \
        datasets.storm(args.events)
    records = datasets.singles(traffic) if args.traffic == "single" else \
        datasets.arrays(traffic, args.per_record)
    logdir = Path(tempfile.mkdtemp(prefix="fw-ab-"))
    with harness.broker() as b:
        addr = b.address
        apps = [f"fw-ab-{v.name}-{r}" for r in range(args.rounds) for v in variants]
        names = {EVENTS_TOPIC}
        for app in apps:
            names.update(Topics.names(Settings(broker=addr, app_id=app)))
        asyncio.run(create_topics(addr, sorted(names), harness.PARTITIONS))
        asyncio.run(harness.produce(addr, EVENTS_TOPIC, records, args.traffic, Ledger()))
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                port = free_port()
                env = {**harness.RUN_ENV, **v.env}
                if v.tree is not None:
                    env["PYTHONPATH"] = str(v.tree)
                w = harness.start_worker(
                    f"{v.name}-{r}", ["-m", v.module, "worker", "--broker", addr, "--app-id",
                                      f"fw-ab-{v.name}-{r}", "--web-port", str(port)],
                    f"http://127.0.0.1:{port}/metrics", logdir, harness.read_metrics, env=env,
                    cwd=v.tree)
                with harness.workers(w):
                    t = harness.time_workers([w], f"{v.name} round {r + 1}", traffic.events,
                                             len(records), join_timeout=120, stall_timeout=60)
                v.runs.append(t)
                say(f"{v.name} round {r + 1}: {t.rate:,.0f} events/s, "
                    f"{t.cpu_us_per_event:.0f} µs/event CPU")
    base = variants[0]
    base_cpu = min(t.cpu_us_per_event for t in base.runs)
    base_rate = statistics.median(t.rate for t in base.runs)
    print(f"{args.traffic}, {traffic.events:,} events in {len(records):,} records, "
          f"{args.rounds} rounds; load {harness.load()}")
    print("  (CPU: the least of the rounds, the run the machine's other load disturbed least)")
    for v in variants:
        cpu = min(t.cpu_us_per_event for t in v.runs)
        rate = statistics.median(t.rate for t in v.runs)
        print(f"  {v.name:12} {rate:9,.0f} events/s median ({rate / base_rate:.2f}x)  "
              f"CPU {cpu:6.1f} µs/event ({base_cpu / cpu:.2f}x less)   rounds: "
              + ", ".join(f"{t.rate:,.0f}/{t.cpu_us_per_event:.0f}" for t in v.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
