"""Digests of what the pipeline produces, to show that a change for speed changed nothing.

``PYTHONHASHSEED=0 PYTHONPATH=TREE python -m benchmarks.digest [--events N]`` runs
:class:`~streamer.stream.pipeline.Pipeline` over the benchmark's storm and simulator
records (arrays and single events; batches of 500, idle sweeps between them) and
prints, per case, a digest of every output record and incident observation, of the
stored session states (empty detector slices left out: the engine stopped writing
them) and of the counters (timings left out). Run it in two source trees (e.g. a
``git archive`` of main and this one): equal lines, equal behaviour on those records.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence

import orjson
from prometheus_client import generate_latest

from benchmarks import datasets
from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline, Record

BATCH = 500
IDLE_MS = 120_000


def digest(records: Sequence[datasets.Record]) -> str:
    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config(), states, metrics, max_record_bytes=1 << 20,
                        wall_clock=None)
    outputs = hashlib.sha256()
    for n in range(0, len(records), BATCH):
        batch = [Record(k, v, "frictionwatch.events", hash(k) % 4 if k else 0, i,
                        1_767_225_600.0 + i / 100)
                 for i, (k, v) in enumerate(records[n:n + BATCH], n)]
        out = pipeline.process_batch(batch)
        for outcome in out.outcomes:
            outputs.update(orjson.dumps(outcome.records()))
        outputs.update(orjson.dumps(out.observations()))
        for outcome in pipeline.sweep(IDLE_MS):
            outputs.update(orjson.dumps([outcome.session_id, outcome.result, outcome.group,
                                         outcome.estimate, outcome.arm]))
    stored = hashlib.sha256()
    for key in sorted(states):
        state = orjson.loads(states[key])
        if "detectors" in state:
            state["detectors"] = {k: v for k, v in sorted(state["detectors"].items()) if v}
        stored.update(key + orjson.dumps(state, option=orjson.OPT_SORT_KEYS))
    counters = sorted(line for line in generate_latest(metrics.registry).decode().splitlines()
                      if not line.startswith("#") and "seconds" not in line
                      and "_created" not in line)
    counted = hashlib.sha256("\n".join(counters).encode())
    return (f"outputs {outputs.hexdigest()[:16]}  states {stored.hexdigest()[:16]}  "
            f"counters {counted.hexdigest()[:16]}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.digest",
                                description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    args = p.parse_args(argv)
    for traffic in (datasets.storm(args.events), datasets.simulator_mix(args.events)):
        for shape, records in (("arrays", datasets.arrays(traffic, 20)),
                               ("single events", datasets.singles(traffic))):
            print(f"{traffic.name:14} {shape:14} {digest(records)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
