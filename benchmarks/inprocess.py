"""Our own CPU per event, in process: ``Pipeline.process_batch`` over the benchmark's records.

No Kafka, no Faust: the pipeline with a plain dict as its table and the real metrics,
fed the same records the workers get, in batches of :data:`BATCH` records (the agent's
``take_events`` size under load). Output records are built (``Outcome.records()``) and
encoded with orjson, as the agent does before handing them to the producer.

``python -m benchmarks.inprocess [--events N] [--only storm,sim,single,sim-single]
[--repeats N] [--profile]`` prints µs per event for each traffic named (all four by
default: ``--only single`` is the one to py-spy for single-event records);
``--profile`` adds a cProfile of the storm (top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from benchmarks import datasets
from detectors.events import MAX_RECORD_BYTES
from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.stream.batching import BATCH_MAX
from streamer.stream.pipeline import Pipeline, Record

BATCH = BATCH_MAX
#: The traffics ``--only`` can name (storm and simulator mix, arrays and single events).
CASES = ("storm", "sim", "single", "sim-single")


@dataclass(frozen=True)
class InProcess:
    events: int
    seconds: float
    signals: int
    interventions: int

    @property
    def us_per_event(self) -> float:
        return self.seconds / self.events * 1e6


def run(records: Sequence[datasets.Record], repeats: int = 3) -> InProcess:
    """The fastest of ``repeats`` passes, each with a fresh engine and table; CPU time
    of this process (``time.process_time``), which other load on the machine disturbs
    less than wall-clock time."""
    batches = [[Record(k, v, "frictionwatch.events", 0, i) for i, (k, v) in
                enumerate(records[n:n + BATCH], n)] for n in range(0, len(records), BATCH)]
    events = datasets.events_in(records)
    best: InProcess | None = None
    for _ in range(repeats):
        pipeline = Pipeline(Engine.from_config(), {}, Metrics(),
                            max_record_bytes=MAX_RECORD_BYTES)
        signals = interventions = 0
        dumps = orjson.dumps
        started = time.process_time()
        for batch in batches:
            for outcome in pipeline.process_batch(batch).outcomes:
                for record in outcome.records():
                    dumps(record)
                    if record["kind"] == "signal":
                        signals += 1
                    else:
                        interventions += 1
        seconds = time.process_time() - started
        if best is None or seconds < best.seconds:
            best = InProcess(events, seconds, signals, interventions)
    assert best is not None
    return best


def traffic_of(case: str, events: int) -> datasets.Traffic:
    """The events a traffic of :data:`CASES` is made of."""
    return (datasets.simulator_mix if case.startswith("sim") else datasets.storm)(events)


def records_of(case: str, traffic: datasets.Traffic, k: int = 20) -> list[datasets.Record]:
    """The records of a traffic of :data:`CASES`: arrays of up to ``k`` events, or single events."""
    return datasets.singles(traffic) if case.endswith("single") else datasets.arrays(traffic, k)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inprocess",
                                description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--events-per-record", type=int, default=20)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-single", action="store_true",
                   help="profile the single-event records instead of the storm arrays")
    p.add_argument("--only", default=",".join(CASES),
                   help=f"the traffics to time, comma-separated, of {','.join(CASES)} "
                        "(e.g. ``--only single`` to py-spy one of them)")
    p.add_argument("--repeats", type=int, default=3, help="passes per traffic (the least counts)")
    args = p.parse_args(argv)
    only = args.only.split(",")
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        p.error(f"unknown traffic {', '.join(unknown)} (known: {', '.join(CASES)})")
    wanted = {*only, "single" if args.profile_single else "storm"} if args.profile else set(only)
    # Only the traffics asked for are built (the simulator's mix takes seconds).
    storm = datasets.storm(args.events) if wanted - {"sim", "sim-single"} else None
    sim = datasets.simulator_mix(args.events) if wanted & {"sim", "sim-single"} else None
    k = args.events_per_record
    def records(case: str) -> list[datasets.Record]:
        traffic = sim if case.startswith("sim") else storm
        assert traffic is not None
        return records_of(case, traffic, k)

    names = {"storm": "storm, arrays", "sim": "simulator mix, arrays",
             "single": "storm, single events", "sim-single": "simulator mix, single events"}
    for case in only:
        name = names[case]
        r = run(records(case), args.repeats)
        print(f"{name:28} {r.events:>8,} events  {r.us_per_event:6.1f} µs/event  "
              f"signals {r.signals / r.events:6.1%}  interventions {r.interventions / r.events:6.1%}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(records("single" if args.profile_single else "storm"), repeats=1)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
