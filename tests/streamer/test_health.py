"""The health rules on synthetic samples: which reason, when, and which HTTP status."""

from __future__ import annotations

from collections.abc import Callable

from streamer.stream.health import Health, PartitionSample, Sample


def _run(h: Health, seconds: int, part: Callable[[int], PartitionSample], *, silent: float = 0.5,
         **flags: bool) -> None:
    for t in range(seconds):
        h.add(Sample(at=float(t), broker_silent_s=silent, partitions={0: part(t)}, **flags))


def test_healthy_worker() -> None:
    h = Health()
    # 100 records/s arrive and are read; commits every 3 s catch up with what was processed.
    _run(h, 60, lambda t: PartitionSample(end=100 * t, committed=100 * (t - t % 3),
                                          processed=100 * t, read=100 * t - 1))
    assert h.liveness().reasons == [] and h.liveness().http_status == 200
    assert h.readiness().ok and h.readiness().partitions == [0]


def test_no_assignment_is_not_ready_but_alive() -> None:
    h = Health()
    h.add(Sample(at=0.0, broker_silent_s=0.1))
    assert h.liveness().reasons == ["no_assignment"] and h.liveness().http_status == 200
    assert h.readiness().http_status == 503


def test_commit_stall_creeping_by_one_is_a_restart_reason() -> None:
    h = Health()
    # Everything processed at t=0; the committed offset creeps up by one per commit.
    _run(h, 30, lambda t: PartitionSample(end=1000, committed=600 + t // 3, processed=1000,
                                          read=999))
    v = h.liveness()
    assert v.reasons == ["commits_stalled"] and v.http_status == 503
    assert "partition 0" in v.details["commits_stalled"]
    assert h.readiness().ok  # still consuming: the load balancer need not act


def test_commits_paused_with_the_broker_are_not_a_stall() -> None:
    h = Health()
    _run(h, 30, lambda t: PartitionSample(end=1000, committed=600, processed=1000, read=999),
         silent=30)
    assert h.liveness().reasons == ["broker_unreachable"]
    assert h.liveness().http_status == 200 and h.readiness().http_status == 503


def test_records_waiting_and_none_read() -> None:
    h = Health()
    _run(h, 40, lambda t: PartitionSample(end=500 + 10 * t, committed=400, processed=400,
                                          read=399))
    v = h.liveness()
    assert "not_consuming" in v.reasons and "lag_growing" in v.reasons
    assert v.http_status == 503


def test_growing_lag_while_consuming_is_degraded_not_fatal() -> None:
    h = Health()
    # 100 records/s arrive, 80 are processed and committed.
    _run(h, 40, lambda t: PartitionSample(end=100 * t, committed=80 * (t - t % 3),
                                          processed=80 * t, read=80 * t))
    v = h.liveness()
    assert v.reasons == ["lag_growing"] and v.http_status == 200
    assert h.readiness().ok


def test_recovery_and_rebalance_are_not_ready_and_suspend_the_stall_rules() -> None:
    h = Health()
    _run(h, 30, lambda t: PartitionSample(end=1000, committed=0, processed=None, read=None),
         recovering=True)
    assert h.liveness().reasons == ["recovering"]
    assert h.readiness().reasons == ["recovering"] and h.readiness().http_status == 503
