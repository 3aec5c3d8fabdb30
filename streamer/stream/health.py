"""Honest health of a worker: liveness (``/healthz``) and readiness (``/readyz``).

Every second the worker samples what it can see of itself (its assignment, the
fetched high watermark, the offsets it has processed and committed, table recovery),
and a client of its own asks the brokers for the events topic's metadata. :class:`Health`
judges the samples; it does no I/O, so the tests feed it samples.

Reasons (each also a ``frictionwatch_health_reason{reason}`` gauge, 1 while it holds):

``broker_unreachable``
    no broker answered a metadata request for ``BROKER_SILENT_S`` (a paused, dead or
    partitioned broker): nothing can be consumed, committed or published.
``no_assignment``
    the consumer holds no partition of the events topic: starting, rebalancing, or a
    worker beyond the partition count.
``rebalancing`` / ``recovering``
    a rebalance is in progress / tables are being restored from their changelogs.
``lag_growing``
    the group's lag on this worker's partitions (end offset minus committed) rose over
    the last ``LAG_WINDOW_S``: the worker falls behind (scale out, or find out why).
``commits_stalled``
    records this worker processed ``COMMIT_STALL_S`` ago are still not committed, while
    the broker answers: a restart would re-deliver all of them, and the stall grows.
``not_consuming``
    records are waiting on an assigned partition, the broker answers, no rebalance or
    recovery is running, and nothing was read for ``NOT_CONSUMING_S``: a wedged worker.
``outputs_failing``
    the agent's output records cannot be delivered (streamer/stream/outbox.py): its
    batch is held and retried, so nothing is read or committed meanwhile (that is not
    also reported as ``not_consuming``: a restart would not cure it).

``/healthz`` (liveness) answers ``{"status": "ok"}``, or ``{"status": "degraded",
"reasons": [...], "details": {...}}``; the HTTP status is 503 only for the reasons a
restart may cure (``RESTART_REASONS``), 200 otherwise: restarting every worker because
the broker is down would make the outage worse. ``/readyz`` (readiness) answers 200
``{"ready": true, "partitions": [...]}`` once the worker holds partitions, its tables
are recovered and it is consuming with the broker reachable, 503 with the reasons
before that; a load balancer should route to ready workers only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

#: Seconds between two samples, and between two broker probes.
SAMPLE_INTERVAL_S = 1.0
#: A probe waits this long for the broker's answer.
PROBE_TIMEOUT_S = 2.0
#: No answer from any broker for this long: ``broker_unreachable``.
BROKER_SILENT_S = 5.0
#: Processed records not committed after this long: ``commits_stalled`` (Faust commits
#: every 2.8 s; a backlog in the stream's buffer adds a few seconds more).
COMMIT_STALL_S = 15.0
#: Records waiting and none read for this long: ``not_consuming``.
NOT_CONSUMING_S = 20.0
#: The window over which the lag must rise for ``lag_growing``.
LAG_WINDOW_S = 30.0

REASONS = ("broker_unreachable", "no_assignment", "rebalancing", "recovering", "lag_growing",
           "commits_stalled", "not_consuming", "outputs_failing")
#: Reasons a restart of this worker may cure: /healthz answers 503 with any of them.
RESTART_REASONS = frozenset({"commits_stalled", "not_consuming"})
#: Reasons a worker must not get traffic or be counted on: /readyz answers 503.
NOT_READY_REASONS = frozenset({"broker_unreachable", "no_assignment", "rebalancing", "recovering"})


@dataclass(frozen=True, slots=True)
class PartitionSample:
    """One partition of the events topic as the worker sees it; None = not known yet."""

    end: int | None = None  # high watermark of the last fetch
    committed: int | None = None  # next offset the group reads after a restart
    processed: int | None = None  # one past the highest offset processed (acked)
    read: int | None = None  # Faust's read offset: how far records were taken from Kafka


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic seconds
    broker_silent_s: float  # seconds since a broker last answered
    partitions: Mapping[int, PartitionSample] = field(default_factory=dict)
    rebalancing: bool = False
    recovering: bool = False
    outputs_failing: str | None = None  # why the agent's output sends fail, if they do


@dataclass(frozen=True)
class Verdict:
    ok: bool
    http_status: int
    reasons: list[str]
    details: dict[str, str]
    partitions: list[int]


class Health:
    """The reasons of the latest sample, judged against the samples before it.

    >>> h = Health()
    >>> p = PartitionSample(end=100, committed=100, processed=100, read=99)
    >>> h.add(Sample(at=0.0, broker_silent_s=0.5, partitions={0: p}))
    >>> h.liveness().reasons, h.readiness().ok
    ([], True)
    >>> h.add(Sample(at=1.0, broker_silent_s=6.0, partitions={0: p}))
    >>> v = h.liveness()
    >>> v.reasons, v.http_status, h.readiness().http_status
    (['broker_unreachable'], 200, 503)
    """

    def __init__(
        self,
        *,
        broker_silent_s: float = BROKER_SILENT_S,
        commit_stall_s: float = COMMIT_STALL_S,
        not_consuming_s: float = NOT_CONSUMING_S,
        lag_window_s: float = LAG_WINDOW_S,
    ) -> None:
        self.broker_silent_s = broker_silent_s
        self.commit_stall_s = commit_stall_s
        self.not_consuming_s = not_consuming_s
        self.lag_window_s = lag_window_s
        self._keep_s = max(commit_stall_s, not_consuming_s, lag_window_s) + 5.0
        self._samples: deque[Sample] = deque()
        self.reasons: dict[str, str] = {"no_assignment": "not sampled yet"}
        self.partitions: list[int] = []

    def add(self, sample: Sample) -> None:
        samples = self._samples
        if samples and set(samples[-1].partitions) != set(sample.partitions):
            samples.clear()  # another assignment: the history says nothing about it
        samples.append(sample)
        while samples and sample.at - samples[0].at > self._keep_s:
            samples.popleft()
        self.partitions = sorted(sample.partitions)
        self.reasons = self._judge(sample)

    def _judge(self, now: Sample) -> dict[str, str]:
        reasons: dict[str, str] = {}
        reachable = now.broker_silent_s < self.broker_silent_s
        if not reachable:
            reasons["broker_unreachable"] = f"no broker answered for {now.broker_silent_s:.0f} s"
        if not now.partitions:
            reasons["no_assignment"] = "no partition of the events topic is assigned"
        if now.rebalancing:
            reasons["rebalancing"] = "a consumer-group rebalance is in progress"
        if now.recovering:
            reasons["recovering"] = "tables are being restored from their changelogs"
        lag = self._lag_growth()
        if lag is not None:
            reasons["lag_growing"] = lag
        if now.outputs_failing is not None:
            reasons["outputs_failing"] = now.outputs_failing
        if reachable and not now.rebalancing and not now.recovering:
            stalled = self._commit_stall(now)
            if stalled:
                reasons["commits_stalled"] = stalled
            idle = self._not_consuming(now)
            if idle and now.outputs_failing is None:
                reasons["not_consuming"] = idle
        return reasons

    def _since(self, now: Sample, seconds: float) -> list[Sample]:
        return [s for s in self._samples if now.at - s.at >= seconds]

    def _commit_stall(self, now: Sample) -> str | None:
        """Processed offsets at least ``commit_stall_s`` old, still above the committed one."""
        old = self._since(now, self.commit_stall_s)
        stalled = []
        for p, part in now.partitions.items():
            if part.committed is None:
                continue
            behind = [s.partitions[p].processed for s in old
                      if (s.partitions[p].processed or 0) > part.committed]
            if behind:
                stalled.append(f"partition {p}: committed {part.committed}, processed up to "
                               f"{max(o or 0 for o in behind)} {self.commit_stall_s:.0f}+ s ago")
        return "; ".join(stalled) or None

    def _not_consuming(self, now: Sample) -> str | None:
        """Records waiting on a partition whose read offset has not moved for a while."""
        old = self._since(now, self.not_consuming_s)
        if not old:
            return None
        then = old[-1]
        waiting = []
        for p, part in now.partitions.items():
            before = then.partitions[p]
            position = part.read if part.read is not None else part.committed
            if (part.end is not None and position is not None and part.end > position + 1
                    and part.read == before.read):
                waiting.append(f"partition {p}: {part.end - position} records waiting, "
                               f"none read for {now.at - then.at:.0f} s")
        return "; ".join(waiting) or None

    def _lag_growth(self) -> str | None:
        """The lag rose over the window: every sample of its last third is above every
        sample of its first third (commits make the lag saw-toothed; a trend survives)."""
        samples = list(self._samples)
        if not samples or samples[-1].at - samples[0].at < self.lag_window_s:
            return None
        start = samples[-1].at - self.lag_window_s
        window = [s for s in samples if s.at >= start]
        third = self.lag_window_s / 3
        first = [_lag(s) for s in window if s.at < start + third]
        last = [_lag(s) for s in window if s.at >= samples[-1].at - third]
        if not first or not last or any(x is None for x in first + last):
            return None
        low, high = min(x for x in last if x is not None), max(x for x in first if x is not None)
        if low > high:
            return f"lag rose from at most {high} to at least {low} records in {self.lag_window_s:.0f} s"
        return None

    def liveness(self) -> Verdict:
        restart = sorted(RESTART_REASONS & self.reasons.keys())
        return Verdict(not self.reasons, 503 if restart else 200, self._ordered(self.reasons),
                       dict(self.reasons), self.partitions)

    def readiness(self) -> Verdict:
        blocking = {r: d for r, d in self.reasons.items() if r in NOT_READY_REASONS}
        return Verdict(not blocking, 200 if not blocking else 503, self._ordered(blocking),
                       blocking, self.partitions)

    @staticmethod
    def _ordered(reasons: Iterable[str]) -> list[str]:
        return sorted(reasons, key=REASONS.index)


def _lag(sample: Sample) -> int | None:
    total = 0
    for part in sample.partitions.values():
        if part.end is None or part.committed is None:
            return None
        total += max(0, part.end - part.committed)
    return total


class Monitor:
    """Samples a Faust app every second into :class:`Health`; probes the brokers."""

    def __init__(self, app: faust.App, topic: str, bootstrap_servers: str,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.clock = clock
        self.health = Health()
        self.started = clock()
        self.broker_ok_at: float | None = None
        self.gauge = Gauge("frictionwatch_health_reason",
                           "1 while the worker is degraded for this reason (see README, Health).",
                           ["reason"], registry=registry) if registry is not None else None
        self.ready_gauge = Gauge("frictionwatch_ready",
                                 "1 while the worker is ready (assigned, recovered, consuming).",
                                 registry=registry) if registry is not None else None

    def sample(self) -> Sample:
        now = self.clock()
        silent = now - (self.broker_ok_at if self.broker_ok_at is not None else self.started)
        app = self.app
        partitions: dict[int, PartitionSample] = {}
        consumer: Any = app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        except ConsumerNotStarted:
            assigned = []
        for tp in assigned:
            acked = consumer._acked.get(tp)  # noqa: SLF001 - Faust keeps no public view
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001
            partitions[tp.partition] = PartitionSample(
                end=_or_none(consumer.highwater(tp)),
                committed=committed,
                processed=max(acked) + 1 if acked else committed,
                read=consumer._read_offset.get(tp),  # noqa: SLF001
            )
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
        outputs = getattr(app, "output_health", None)
        return Sample(
            at=now, broker_silent_s=silent, partitions=partitions,
            rebalancing=bool(app.rebalancing) or not consumer.flow_active,
            recovering=bool(app.in_recovery) or not recovery.completed.is_set(),
            outputs_failing=getattr(outputs, "failing", None),
        )

    def tick(self) -> None:
        self.health.add(self.sample())
        if self.gauge is not None and self.ready_gauge is not None:
            for reason in REASONS:
                self.gauge.labels(reason).set(1 if reason in self.health.reasons else 0)
            self.ready_gauge.set(1 if self.health.readiness().ok else 0)

    async def probe_forever(self) -> None:
        """Ask the brokers for the events topic's metadata every second, on a client of
        our own (the consumer's runs in another thread and must not be disturbed)."""
        admin: AIOKafkaAdminClient | None = None
        try:
            while True:
                started = self.clock()
                try:
                    if admin is None:
                        admin = AIOKafkaAdminClient(
                            bootstrap_servers=self.bootstrap_servers,
                            client_id=f"{self.app.conf.id}-health",
                            request_timeout_ms=int(PROBE_TIMEOUT_S * 1000))
                        await asyncio.wait_for(admin.start(), PROBE_TIMEOUT_S)
                    await asyncio.wait_for(admin.describe_topics([self.topic]), PROBE_TIMEOUT_S)
                    self.broker_ok_at = self.clock()
                except (TimeoutError, KafkaError, OSError) as exc:
                    log.debug("broker probe failed: %r", exc)
                    if admin is not None:
                        await _close(admin)
                        admin = None
                await asyncio.sleep(max(0.0, SAMPLE_INTERVAL_S - (self.clock() - started)))
        finally:
            if admin is not None:
                await _close(admin)


async def _close(admin: AIOKafkaAdminClient) -> None:
    try:
        await asyncio.wait_for(admin.close(), PROBE_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as exc:
        log.debug("closing the probe client: %r", exc)


def _or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def install(app: faust.App, topic: str, registry: CollectorRegistry | None = None) -> Monitor:
    """Sample ``app`` every second and probe its brokers; returns the monitor."""
    servers = ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)
    monitor = Monitor(app, topic, servers, registry)

    @app.timer(interval=SAMPLE_INTERVAL_S, name="frictionwatch.health_sample")
    async def health_sample() -> None:
        monitor.tick()

    @app.task
    async def health_probe() -> None:
        await monitor.probe_forever()

    return monitor
