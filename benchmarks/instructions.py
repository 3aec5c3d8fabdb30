"""Instructions per event in process, counted by valgrind: within ±0.2% on every run.

CPU time on a shared machine moves by ±10-25% between passes (other processes, their
use of the caches), so a 3% change cannot be told from noise by timing alone. This
counts what the CPU executes instead: ``valgrind --tool=cachegrind`` runs
``Pipeline.process_batch`` over the benchmark's records (:mod:`benchmarks.inprocess`'s
loop, one pass, a fresh engine) and, separately, the same process doing everything but
the pass; the difference is the pass (with what ``inprocess.run`` does before it
times: the records made into ``Record`` objects and their events counted, 1-2% and the
same in every tree). Cachegrind also simulates the caches (first
level 32 KB, last level 4 MB here): its miss counts say whether a change touches less
memory, which is what single-event records are short of (README, "Our CPU per
event"). Nearly deterministic for a given tree and ``PYTHONHASHSEED`` (three runs of
one tree: 182,256 to 182,729 instructions per storm event; addresses, and so a few
hash-table probes, differ between runs); a few minutes per
traffic at 10,000 events (the records are built under valgrind too, twice).

``python -m benchmarks.instructions [--events N] [--only storm,sim,single,sim-single]``
(run it in each tree to compare, e.g. with ``PYTHONPATH=TREE``). Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.inprocess import CASES

_COUNTS = {"instructions": r"I\s+refs:\s+([\d,]+)", "D1 misses": r"D1\s+misses:\s+([\d,]+)",
           "LL misses": r"LLd misses:\s+([\d,]+)"}


def _child(case: str, events: int, passes: int) -> None:
    """Build the records, then run ``passes`` passes (0: the build alone)."""
    from benchmarks import inprocess

    records = inprocess.records_of(case, inprocess.traffic_of(case, events))
    if passes:
        inprocess.run(records, passes)


def count(case: str, events: int, passes: int) -> dict[str, int]:
    """Cachegrind's counts for one child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--LL=4194304,16,64",
             f"--cachegrind-out-file={out}", sys.executable, "-m", "benchmarks.instructions",
             "--child", case, "--events", str(events), "--passes", str(passes)],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    found = {}
    for name, pattern in _COUNTS.items():
        match = re.search(pattern, done.stderr)
        if match is None:
            raise SystemExit(f"no {name} in valgrind's output:\n{done.stderr[-2000:]}")
        found[name] = int(match.group(1).replace(",", ""))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--only", default=",".join(CASES))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.events, args.passes)
        return 0
    if shutil.which("valgrind") is None:
        p.error("needs valgrind (apt-get install valgrind)")
    for case in args.only.split(","):
        if case not in CASES:
            p.error(f"unknown traffic {case} (known: {', '.join(CASES)})")
        base, run = count(case, args.events, 0), count(case, args.events, 1)
        per_event = {name: (run[name] - base[name]) / args.events for name in _COUNTS}
        print(f"{case:12} {args.events:>8,} events  " + "  ".join(
            f"{name} {value:>9,.0f}/event" for name, value in per_event.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
