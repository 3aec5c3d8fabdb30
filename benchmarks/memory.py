"""(e) Worker memory per active session: RSS before and after N sessions open.

One worker (`frictionwatch run`'s group settings) is warmed up with a few thousand
sessions, then N more sessions arrive, each holding one page view (keyless arrays of 20
page views of distinct sessions: a keyless record may mix sessions, and each event goes
to its own state; the cost per session is the same as from keyed records, and the run
is 20x shorter). VmRSS is read from /proc/<pid>/status once the worker has counted
every event and reports every session as active, a few seconds later (producer buffers
drained): the growth over N is the memory one open session costs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import datasets, harness
from benchmarks.harness import BenchError, Ledger, say
from detectors.session import Engine, SessionState
from streamer.embedded import free_port
from streamer.stream.topics import EVENTS_TOPIC

APP = "fw-bench-memory"
WARM_SESSIONS = 5_000
SETTLE_S = 3.0


@dataclass(frozen=True)
class Memory:
    sessions: int
    rss_before_kb: int
    rss_after_kb: int
    state_bytes: int

    @property
    def per_session(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) * 1024 / self.sessions

    def line(self) -> str:
        return (f"(e) memory: worker RSS {self.rss_before_kb / 1024:,.0f} -> "
                f"{self.rss_after_kb / 1024:,.0f} MB for {self.sessions:,} more open sessions "
                f"holding one page view each: **{self.per_session / 1024:.2f} KB per session** "
                f"(its state JSON: {self.state_bytes} bytes)")


def state_bytes() -> int:
    state = SessionState("mem-0000000")
    Engine.from_config().step(state, {"session_id": "mem-0000000", "type": "page_view",
                                      "ts": 1, "event_id": "mem-0000000-0", "page": "/"})
    return len(state.to_json())


def active_sessions(body: str | None) -> int:
    for line in (body or "").splitlines():
        if line.startswith("frictionwatch_active_sessions "):
            return int(float(line.rsplit(" ", 1)[1]))
    return -1


def measure(addr: str, ledger: Ledger, logdir: Path, *, sessions: int,
            join_timeout: float) -> Memory:
    asyncio.run(harness.commit_offsets(addr, APP, EVENTS_TOPIC, ledger.of(EVENTS_TOPIC)))
    port = free_port()
    w = harness.start_worker("memory", ["-m", "streamer", "worker", "--broker", addr,
                                        "--app-id", APP, "--web-port", str(port)],
                             f"http://127.0.0.1:{port}/metrics", logdir, harness.read_metrics,
                             env=harness.RUN_ENV)
    with harness.workers(w):
        warm = datasets.page_views(WARM_SESSIONS, prefix="warm")
        harness.wait_for(lambda: w.counts() is not None, join_timeout, "memory worker web", [w])
        asyncio.run(harness.produce(addr, EVENTS_TOPIC, warm, "warm-up page view", ledger))
        harness.wait_for(lambda: active_sessions(w.body()) >= WARM_SESSIONS, join_timeout,
                         "memory worker: warm-up sessions active", [w])
        time.sleep(SETTLE_S)
        base = active_sessions(w.body())
        before = w.rss_kb()
        records = datasets.page_views(sessions, prefix="mem")
        asyncio.run(harness.produce(addr, EVENTS_TOPIC, records, "page view", ledger))
        total = base + sessions
        took = harness.wait_for(lambda: active_sessions(w.body()) >= total, 300,
                                f"memory worker: {total:,} sessions active", [w])
        time.sleep(SETTLE_S)
        after = w.rss_kb()
        if active_sessions(w.body()) != total:
            raise BenchError(f"memory: {active_sessions(w.body()):,} sessions active, "
                             f"expected {total:,}: the worker read records not meant for it")
        say(f"memory: {sessions:,} sessions opened in {took:.1f}s; RSS {before:,} -> {after:,} kB")
    return Memory(sessions, before, after, state_bytes())
