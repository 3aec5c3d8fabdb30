"""The agent's body without Faust: a dict for the table, a fresh metrics registry."""

from __future__ import annotations

import orjson

from detectors.session import Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline


def pipeline_factory() -> tuple[Pipeline, dict[bytes, bytes], Metrics]:
    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    return Pipeline(Engine.from_config(), states, metrics, max_record_bytes=4096), states, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_good_events_beside_a_bad_one_are_kept_and_the_bad_one_dead_lettered() -> None:
    pipeline, states, metrics = pipeline_factory()
    batch = [
        {"session_id": "s", "type": "page_view", "ts": 1, "page": "/"},
        {"session_id": "s", "type": "click", "ts": 2, "x": "left", "y": 0, "target": "#a"},
        {"session_id": "s", "type": "help_request", "ts": 3},
    ]
    out = pipeline.process(b"s", orjson.dumps(batch), topic="t", partition=1, offset=9)
    assert [o.decision.kind for o in out.outcomes if o.decision] == ["handoff"]
    (dead,) = out.dead_letters
    headers = dict(dead.headers)
    assert headers["fw-reason"] == b"wrong_type" and headers["fw-index"] == b"1"
    assert headers["fw-offset"] == b"9" and headers["fw-partition"] == b"1"
    assert orjson.loads(dead.value) == batch[1]
    assert SessionState.from_json(states[b"s"]).seq == 2
    assert sample(metrics, "frictionwatch_invalid_events_total", reason="wrong_type") == 1
    assert sample(metrics, "frictionwatch_events_total", type="page_view") == 1
    assert sample(metrics, "frictionwatch_interventions_total", kind="handoff",
                  delivered="true") == 1


def test_a_whole_bad_record_keeps_its_original_bytes() -> None:
    pipeline, states, metrics = pipeline_factory()
    out = pipeline.process(b"k", b"\xff\xfe garbage", topic="t", partition=0, offset=3)
    (dead,) = out.dead_letters
    assert dead.value == b"\xff\xfe garbage" and dead.key == b"k"
    assert dict(dead.headers)["fw-reason"] == b"not_json"
    assert states == {}
    out = pipeline.process(b"k", b"[" + b"1," * 3000 + b"1]")
    assert dict(out.dead_letters[0].headers)["fw-reason"] == b"too_large"


def test_session_end_frees_the_state_and_duplicates_count_once() -> None:
    pipeline, states, metrics = pipeline_factory()
    view = {"session_id": "s", "type": "page_view", "ts": 1, "page": "/", "event_id": "e1"}
    pipeline.process(b"s", orjson.dumps([view, view]))
    assert sample(metrics, "frictionwatch_duplicate_events_total") == 1
    assert sample(metrics, "frictionwatch_events_total", type="page_view") == 1
    assert b"s" in states
    pipeline.process(b"s", orjson.dumps({"session_id": "s", "type": "session_end", "ts": 2}))
    assert b"s" not in states


def test_unknown_types_are_kept_and_counted_as_other() -> None:
    pipeline, states, metrics = pipeline_factory()
    pipeline.process(b"s", orjson.dumps({"session_id": "s", "type": "hover", "ts": 1}))
    assert sample(metrics, "frictionwatch_events_total", type="other") == 1
    assert SessionState.from_json(states[b"s"]).counts == {"other": 1}


def test_sweep_expires_idle_sessions_including_ones_recovered_from_the_changelog() -> None:
    pipeline, states, metrics = pipeline_factory()
    view = {"session_id": "old", "type": "page_view", "ts": 1_000, "page": "/"}
    pipeline.process(b"old", orjson.dumps(view))
    recovered = SessionState("restored", last_ts=2_000, first_ts=2_000)
    states[b"restored"] = recovered.to_json()  # written by another worker, never seen here
    pipeline.process(b"new", orjson.dumps(dict(view, session_id="new", ts=100_000)))
    expired = pipeline.sweep(idle_ms=50_000)
    assert {o.session_id for o in expired} == {"old", "restored"}
    assert set(states) == {b"new"}
    assert sample(metrics, "frictionwatch_outcomes_total", result="abandoned", group="none") == 2
    assert pipeline.sweep(idle_ms=50_000) == []
