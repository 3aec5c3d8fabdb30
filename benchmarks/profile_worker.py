"""Where a worker's time goes: py-spy samples of a worker consuming a filled topic.

``python -m benchmarks.profile_worker [--traffic storm|sim|single] [--worker ours|naive]
[--events N] [--seconds S] [--raw FILE]`` starts an embedded broker, fills the topic
with the benchmark's records (:mod:`benchmarks.datasets`), starts the worker, and once
it counts its first event runs ``py-spy record --pid`` on it for S seconds (or until
the worker is done). Prints the share of samples per frame: inclusive (the frame is on
the stack) and own (the frame is the leaf), main thread and others apart, idle samples
included (``--idle``) so that shares are of wall time.

Needs py-spy (``pip install py-spy``) and permission to ptrace the worker (root here).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import datasets, harness
from benchmarks.harness import BenchError, Ledger
from streamer.embedded import create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import EVENTS_TOPIC, Topics

APP = "fw-profile"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.py:func``."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{Path(m['file']).name}:{m['func']}"


def summarize(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        threads[thread] += count
        total += count
        names = [short(f) for f in frames[1:]] or ["<idle>"]
        for name in set(names):
            inclusive[f"{name}"] += count
        own[names[-1]] += count
    lines = [f"{total} samples; per thread: " + ", ".join(
        f"{t} {c / total:.0%}" for t, c in threads.most_common())]
    lines.append("inclusive (on the stack):")
    lines += [f"  {c / total:6.1%}  {name}" for name, c in inclusive.most_common(top)]
    lines.append("own (leaf frame):")
    lines += [f"  {c / total:6.1%}  {name}" for name, c in own.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_worker",
                                description=__doc__.splitlines()[0])
    p.add_argument("--traffic", choices=("storm", "sim", "single"), default="storm")
    p.add_argument("--worker", choices=("ours", "naive"), default="ours")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    p.add_argument("--strace", action="store_true",
                   help="instead of py-spy: strace -c -f (syscall counts and times)")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    traffic = datasets.simulator_mix(args.events) if args.traffic == "sim" else \
        datasets.storm(args.events)
    records = datasets.singles(traffic) if args.traffic == "single" else \
        datasets.arrays(traffic, 20)
    logdir = Path(tempfile.mkdtemp(prefix="fw-profile-"))
    out = args.raw or logdir / "stacks.txt"
    with harness.broker() as b:
        addr = b.address
        names = {EVENTS_TOPIC, *Topics.names(Settings(broker=addr, app_id=APP))}
        asyncio.run(create_topics(addr, sorted(names), harness.PARTITIONS))
        asyncio.run(harness.produce(addr, EVENTS_TOPIC, records, args.traffic, Ledger()))
        port = free_port()
        if args.worker == "ours":
            w = harness.start_worker("profiled", ["-m", "streamer", "worker", "--broker", addr,
                                                  "--app-id", APP, "--web-port", str(port)],
                                     f"http://127.0.0.1:{port}/metrics", logdir,
                                     harness.read_metrics, env=harness.RUN_ENV)
        else:
            w = harness.start_worker("profiled", ["-m", "benchmarks.naive_agent", "--broker",
                                                  addr, "--app-id", APP, "--topic", EVENTS_TOPIC,
                                                  "--web-port", str(port)],
                                     f"http://127.0.0.1:{port}/count/", logdir,
                                     harness.read_naive_count)
        with harness.workers(w):
            harness.wait_for(lambda: (w.counts() or (0, 0))[0] > 0, 120, "first event", [w])
            n0, t0, cpu0 = (w.counts() or (0, 0))[0], time.monotonic(), w.cpu_s()
            if args.strace:
                spy_proc = subprocess.Popen(
                    ["strace", "-c", "-f", "-p", str(w.pid), "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(args.seconds)
                spy_proc.send_signal(signal.SIGINT)
            else:
                spy_proc = subprocess.Popen(
                    [spy, "record", "--pid", str(w.pid), "--rate", str(args.rate), "--format",
                     "raw", "--idle", "--output", str(out), "--duration", str(int(args.seconds))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                spy_proc.wait(args.seconds + 30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait(5)
                raise BenchError("the profiler did not finish") from None
            n1, t1, cpu1 = (w.counts() or (0, 0))[0], time.monotonic(), w.cpu_s()
    if spy_proc.returncode != 0 and not out.exists():
        err = spy_proc.stderr.read().decode() if spy_proc.stderr else ""
        raise BenchError(f"py-spy failed: {err}")
    print(f"{args.worker} worker, {args.traffic}: {n1 - n0:,} events in {t1 - t0:.1f}s "
          f"({(n1 - n0) / (t1 - t0):,.0f} events/s under py-spy), CPU {(cpu1 - cpu0) / (t1 - t0):.2f} "
          f"cores, {(cpu1 - cpu0) / max(n1 - n0, 1) * 1e6:.0f} µs/event")
    print(out.read_text() if args.strace else summarize(out, args.top))
    if not args.raw:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
