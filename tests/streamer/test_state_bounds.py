"""One client cannot end the worker: session state stays within its byte budget
(issue 10 item 1: six 230 KB beacons for one session, each event with a
4096-character emoji event_id, grew the state past 1 MB, the changelog send failed
with MessageSizeTooLargeError and the worker process exited).

The decoder now refuses ids over MAX_ID_BYTES (a 4096-emoji id is a dead letter), so
the beacons here carry the longest ids and strings it lets through: the state must
stay within budget even so, whatever the decoder's caps are."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from detectors.events import MAX_ID_BYTES
from detectors.session import STATE_MAX_BYTES, Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline
from tests.conftest import WorkerProcess, consume, produce, wait_for

EMOJI = "\N{PILE OF POO}"
BASE_TS = 1_767_225_600_000
MAX_RECORD_BYTES = 256 * 1024
#: The bounds README "Contracts" documents for what the worker sends.
MAX_SIGNAL_RECORD = 4 * 1024
MAX_INTERVENTION_RECORD = 32 * 1024


def hostile_event(sid: str, i: int) -> dict[str, Any]:
    """An event whose every string is as long as the decoder lets through, in emoji."""
    prefix = f"{i}-"
    event_id = prefix + EMOJI * ((MAX_ID_BYTES - len(prefix)) // 4)
    common = {"session_id": sid, "ts": BASE_TS + i * 400, "event_id": event_id}
    long = EMOJI * 500
    kinds: list[dict[str, Any]] = [
        {"type": "page_view", "page": f"/{i}/" + long},
        {"type": "click", "x": 5, "y": 5, "target": "#" + long},  # a dead click
        {"type": "checkout_failed", "code": "9" * 500 + str(i), "reason": long + str(i)},
        {"type": "js_error", "message": long},
        {"type": "form_error", "field": "f" + long},
        {"type": "search", "query": long + str(i), "results": 0},
    ]
    return {**common, **kinds[i % len(kinds)]}


def beacons(sid: str, count: int = 6, size: int = 230 * 1024) -> list[bytes]:
    """``count`` records of about ``size`` bytes, each an array of the session's events."""
    out, i = [], 0
    for _ in range(count):
        events: list[dict[str, Any]] = []
        while len(orjson.dumps(events)) < size - 20_000:
            events.append(hostile_event(sid, i))
            i += 1
        out.append(orjson.dumps(events))
    assert all(size - 20_000 <= len(b) <= MAX_RECORD_BYTES for b in out)
    return out


def test_six_big_beacons_for_one_session_stay_within_the_budget() -> None:
    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config(), states, metrics, max_record_bytes=MAX_RECORD_BYTES)
    records = beacons("greedy")
    sent: list[bytes] = []
    for value in records:
        produced = pipeline.process(b"greedy", value, topic="frictionwatch.events")
        assert not produced.dead_letters
        assert len(states[b"greedy"]) <= STATE_MAX_BYTES
        sent += [orjson.dumps(r) for o in produced.outcomes for r in o.records()]
    events = sum(len(orjson.loads(v)) for v in records)
    state = SessionState.from_json(states[b"greedy"])
    assert state.seq == events > 64
    assert all(type(tag) is int for tag in state.seen_ids)
    # Every record it made the worker send is bounded too.
    assert sent and all(len(r) <= MAX_INTERVENTION_RECORD for r in sent)
    assert all(len(r) <= MAX_SIGNAL_RECORD for r in sent if orjson.loads(r)["kind"] == "signal")
    # A retried beacon of the last 64 events (the ids a session remembers) is still
    # recognised, event by event.
    retried = orjson.dumps(orjson.loads(records[-1])[-64:])
    pipeline.process(b"greedy", retried)
    duplicates = metrics.registry.get_sample_value("frictionwatch_duplicate_events_total")
    assert duplicates == 64


def test_what_the_budget_drops_is_counted_by_part() -> None:
    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config(), states, metrics, max_record_bytes=MAX_RECORD_BYTES,
                        state_max_bytes=4096)
    events = [{"session_id": "s", "ts": BASE_TS + i, "type": "js_error", "message": "m" * 150,
               "page": f"/{i}/" + "p" * 150} for i in range(0, 40, 2)]
    events += [{"session_id": "s", "ts": BASE_TS + i, "type": "page_view",
                "page": f"/{i}/" + "p" * 150} for i in range(1, 40, 2)]
    pipeline.process(b"s", orjson.dumps(sorted(events, key=lambda e: e["ts"])))
    assert len(states[b"s"]) <= 4096
    trimmed = {s.labels["part"]: s.value for f in metrics.registry.collect() for s in f.samples
               if s.name == "frictionwatch_state_trimmed_total"}
    assert trimmed["errors"] > 0 and trimmed["seen_ids"] == 0  # the oldest errors went first


@pytest.mark.broker
def test_six_big_beacons_do_not_end_the_worker(worker: WorkerProcess) -> None:
    sid = "greedy-on-kafka"
    bootstrap = worker.settings.bootstrap_servers
    before = worker.metric("frictionwatch_records_total")
    asyncio.run(produce(bootstrap, [(sid.encode(), value) for value in beacons(sid)]))
    wait_for(lambda: worker.metric("frictionwatch_records_total") - before >= 6, 60,
             "six beacons", worker.process)
    changelog = f"{worker.settings.app_id}-session_to_state-changelog"
    writes = [r for r in asyncio.run(consume(
        bootstrap, changelog, lambda rs: any(r.key == sid.encode() for r in rs), timeout=90))
        if r.key == sid.encode()]
    assert writes, f"no state written (log {worker.log})"
    assert all(len(r.value) <= STATE_MAX_BYTES for r in writes)
    # Still up, and still working.
    help_ = {"session_id": "after-greed", "type": "help_request", "ts": BASE_TS}
    asyncio.run(produce(bootstrap, [(b"after-greed", orjson.dumps(help_))]))
    out = asyncio.run(consume(bootstrap, "frictionwatch.interventions",
                              lambda rs: any(r.key == b"after-greed" for r in rs), timeout=60))
    assert any(r.key == b"after-greed" for r in out)
    assert worker.process.poll() is None
