"""The fleet's clock is the server's (issue 10, "Time"): a browser's ``ts`` never moves it.

The reproductions of the issue, on the pipeline with a dict for the table and fake
records: a far-future ``ts`` or a browser 31 minutes fast must not expire anybody, and
fleet-wide incidents must neither skip their learning period nor be hidden by one
far-future observation. Record timestamps (seconds, as Faust gives them) stand for the
broker's time; ``received_at`` for the collector's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from detectors.session import Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.incidents import IncidentFeed, IncidentTable
from streamer.stream.pipeline import FUTURE_SLACK_MS, Pipeline, Produced
from streamer.tools.replay import replay_lines
from tests.conftest import RULES_ONLY

MIN_MS = 60_000
IDLE_MS = 30 * MIN_MS
INT_MAX = 2**63 - 1
CHECKOUT = b"/checkout|checkout_failure"


def pipeline_factory(
    config: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[Pipeline, dict[bytes, bytes], Metrics]:
    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    engine = Engine.from_config(config)
    return Pipeline(engine, states, metrics, max_record_bytes=1 << 18, **kwargs), states, metrics


def send(pipeline: Pipeline, event: dict[str, Any], at_s: float | None, partition: int = 0) -> Produced:
    """One record holding ``event``, with Kafka record timestamp ``at_s`` (seconds)."""
    return pipeline.process(event["session_id"].encode(), orjson.dumps(event),
                            topic="frictionwatch.events", partition=partition, timestamp_s=at_s)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def failed(sid: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {"session_id": sid, "type": "checkout_failed", "ts": ts, "reason": "declined",
            "code": "402", "page": "/checkout", **extra}


def test_one_event_with_the_largest_ts_wipes_nobody() -> None:
    """Issue 10 item 2: ``ts = 2**63-1`` moved the watermark and every session expired;
    a customer with two failed payments got no handoff at the third."""
    pipeline, states, metrics = pipeline_factory()
    t0 = time.time() - 600
    ms = int(t0 * 1000)
    send(pipeline, failed("customer", ms + 1000), t0 + 1)
    send(pipeline, failed("customer", ms + 2000), t0 + 2)
    for i in range(99):
        send(pipeline, {"session_id": f"s{i}", "type": "page_view", "ts": ms + 3000, "page": "/"},
             t0 + 3)
    send(pipeline, {"session_id": "a", "type": "x", "ts": INT_MAX}, t0 + 4)

    assert pipeline.watermark <= int((t0 + 4) * 1000)
    assert pipeline.sweep(IDLE_MS) == []
    assert len(states) == 101
    models = pipeline.engine.models
    assert models is not None and models.risk.learned == 0  # nobody learned as "abandoned"
    third = send(pipeline, failed("customer", ms + 5000), t0 + 5)
    assert [o.decision.kind for o in third.outcomes if o.decision] == ["handoff"]
    assert sample(metrics, "frictionwatch_clock_skew_total", kind="offset") == 1


def test_a_browser_31_minutes_fast_expires_nobody() -> None:
    """Issue 10 item 2: a clock only 31 min fast expired 100 of 100 sessions."""
    pipeline, states, metrics = pipeline_factory(RULES_ONLY)
    now = time.time()
    for i in range(100):
        send(pipeline, {"session_id": f"s{i}", "type": "page_view", "ts": int(now * 1000),
                        "page": "/"}, now)
    fast = int(now * 1000) + 31 * MIN_MS
    send(pipeline, {"session_id": "fast", "type": "page_view", "ts": fast, "page": "/"}, now)
    assert pipeline.sweep(IDLE_MS) == []
    assert len(states) == 101
    # Its events are processed all the same, on their own clock, and counted.
    assert SessionState.from_json(states[b"fast"]).last_ts == fast
    assert sample(metrics, "frictionwatch_clock_skew_total", kind="offset") == 1
    assert sample(metrics, "frictionwatch_events_total", type="page_view") == 101


def test_sessions_expire_on_server_time_and_the_clock_never_goes_back() -> None:
    pipeline, states, _ = pipeline_factory(RULES_ONLY)
    t0 = time.time() - 7200
    # The browser's clock is a day behind: its ts says nothing about idleness.
    old = int(t0 * 1000) - 86_400_000
    send(pipeline, {"session_id": "idle", "type": "page_view", "ts": old, "page": "/"}, t0)
    send(pipeline, {"session_id": "live", "type": "page_view", "ts": old, "page": "/"}, t0 + 1790)
    assert pipeline.sweep(IDLE_MS) == []
    send(pipeline, {"session_id": "live", "type": "click", "ts": old + 5, "x": 1, "y": 1,
                    "target": "#a", "reaction_ms": 10}, t0 + 1801)
    # A late record (an older timestamp) does not move the partition's clock back.
    send(pipeline, {"session_id": "late", "type": "page_view", "ts": old, "page": "/"}, t0 + 100)
    assert pipeline.clocks[0] == int((t0 + 1801) * 1000)
    assert [o.session_id for o in pipeline.sweep(IDLE_MS)] == ["idle"]
    assert set(states) == {b"live", b"late"}


def test_received_at_is_the_server_time_and_drift_is_counted() -> None:
    pipeline, states, metrics = pipeline_factory(RULES_ONLY, wall_clock=None)
    base = 1_767_225_600_000
    view = {"session_id": "s", "type": "page_view", "page": "/"}
    # No record timestamp (a replayed file): received_at, stamped by the collector, rules.
    send(pipeline, dict(view, ts=base - 3_600_000, received_at=base), None)
    send(pipeline, dict(view, ts=base - 3_599_000, received_at=base + 1000), None)
    assert pipeline.watermark == base + 1000
    state = SessionState.from_json(states[b"s"])
    assert state.clock_offset == 3_600_000 and state.seen_at == base + 1000
    assert sample(metrics, "frictionwatch_clock_skew_total", kind="offset") == 1
    assert sample(metrics, "frictionwatch_clock_skew_total", kind="drift") == 0
    # The browser's clock jumps a day ahead mid-session: drift, still processed.
    send(pipeline, dict(view, ts=base + 86_400_000, received_at=base + 2000), None)
    assert sample(metrics, "frictionwatch_clock_skew_total", kind="drift") == 1
    assert pipeline.watermark == base + 2000
    # received_at wins over the record timestamp; one that is not a time is refused at
    # decode (a dead letter), so it moves no clock.
    send(pipeline, dict(view, ts=base, received_at=base + 3000), (base + 10_000) / 1000)
    assert pipeline.watermark == base + 3000
    send(pipeline, dict(view, ts=base, received_at="soon"), (base + 4000) / 1000)
    assert pipeline.watermark == base + 3000
    assert sample(metrics, "frictionwatch_invalid_events_total", reason="wrong_type") == 1


def test_server_times_from_the_future_are_capped_at_the_wall_clock() -> None:
    """A producer whose clock is a year ahead, or a forged received_at, cannot move the
    fleet's clock past the worker's wall clock (plus a small slack)."""
    wall = 1_800_000_000.0
    pipeline, states, _ = pipeline_factory(RULES_ONLY, wall_clock=lambda: wall)
    cap = int(wall * 1000) + FUTURE_SLACK_MS
    view = {"session_id": "s", "type": "page_view", "ts": int(wall * 1000), "page": "/"}
    send(pipeline, view, wall - 600)  # ten minutes ago
    send(pipeline, dict(view, session_id="year"), wall + 365 * 86_400)
    assert pipeline.watermark == cap
    send(pipeline, dict(view, session_id="forged", received_at=INT_MAX), wall)
    assert pipeline.watermark == cap
    assert pipeline.sweep(IDLE_MS) == [] and len(states) == 3


# -- incidents: learning period and hidden outages -----------------------------------------
class _Topic:
    """Collects what the incident feed sends to the repartition topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


def stream_incidents(timeline: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """The stream's path, without Faust: pipeline -> incident feed -> incident table."""
    pipeline, _, metrics = pipeline_factory(RULES_ONLY)
    topic = _Topic()
    feed = IncidentFeed(pipeline.engine.incidents, topic)  # type: ignore[arg-type]
    table = IncidentTable(pipeline.engine.incidents, {}, metrics)
    changes = []
    for event, at_s in timeline:
        produced = send(pipeline, event, at_s)
        asyncio.run(feed.send(produced.observations()))
        changes += table.process(topic.sent)
        topic.sent.clear()
    return changes


def replay_incidents(timeline: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Replay's path: the collector's received_at in the file stands for the server time."""
    lines = (orjson.dumps(dict(e, received_at=int(at_s * 1000))) for e, at_s in timeline)
    records = replay_lines(lines, Engine.from_config(RULES_ONLY), max_record_bytes=1 << 18)
    return [r for r in records if r["kind"].startswith("incident_")]


PATHS = {"stream": stream_incidents, "replay": replay_incidents}


def help_at(sid: str, at_s: float) -> tuple[dict[str, Any], float]:
    """A help request on the home page: starts the fleet's observation."""
    return {"session_id": sid, "type": "help_request", "ts": int(at_s * 1000), "page": "/"}, at_s


@pytest.mark.parametrize("path", PATHS)
def test_future_ts_does_not_skip_the_learning_period(path: str) -> None:
    """Issue 10 item 3: 15 events of 5 invented sessions, ts = now + 31 min, opened
    /checkout x checkout_failure two minutes after start (learning takes 30)."""
    start = time.time() - 3600
    timeline = [help_at("first", start)]
    future = int((start + 120) * 1000) + 31 * MIN_MS
    for i in range(5):
        for k in range(3):
            timeline.append((failed(f"fake-{i}", future + k), start + 120 + i + k / 10))
    assert PATHS[path](timeline) == []


@pytest.mark.parametrize("path", PATHS)
def test_one_far_future_observation_does_not_hide_an_outage(path: str) -> None:
    """Issue 10 item 3: one far-future observation kept a real outage from opening."""
    start = time.time() - 3 * 3600
    timeline = [help_at("first", start)]
    timeline += [(failed("hider", INT_MAX), start + 2400), (failed("hider", INT_MAX), start + 2401)]
    outage = start + 3600
    for i in range(8):  # eight customers fail twice within a minute
        for k in range(2):
            at = outage + i * 5 + k
            timeline.append((failed(f"o{i}", int(at * 1000)), at))
    changes = PATHS[path](timeline)
    assert [(c["kind"], c["key"]) for c in changes] == [("incident_open", CHECKOUT.decode())]
    assert int(outage * 1000) <= changes[0]["ts"] <= int((outage + 60) * 1000)
