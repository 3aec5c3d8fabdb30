"""The agent's body without Faust: a dict for the table, a fresh metrics registry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.session import Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.pipeline import MAX_DEAD_LETTER_BYTES, Pipeline, Record


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


# -- dead letters keep the original bytes; nothing raises (issue 10 item 10) -------------
def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_an_element_nested_deeper_than_orjson_can_encode_is_dead_lettered_as_sent() -> None:
    """Issue 10: an invalid element nested deeper than 254 crashed the agent (the dead
    letter was re-serialized with orjson, which stops at 255 levels)."""
    pipeline, states, metrics = pipeline_factory()
    pipeline.max_record_bytes = 1 << 16
    deep = _nested(300)
    raw = (b'[{"session_id": "s", "type": "page_view", "ts": 1, "page": "/"},\n  ' + deep
           + b' ,{"session_id": "s", "type": "help_request", "ts": 3}]')
    out = pipeline.process(b"s", raw, topic="t", partition=0, offset=4)
    (dead,) = out.dead_letters
    headers = dict(dead.headers)
    assert headers["fw-reason"] == b"not_object" and headers["fw-index"] == b"1"
    assert dead.value == deep  # that element's own bytes, cut out of the record
    assert [o.decision.kind for o in out.outcomes if o.decision] == ["handoff"]
    assert SessionState.from_json(states[b"s"]).seq == 2


def test_dead_lettered_elements_are_the_bytes_sent_not_a_re_encoding() -> None:
    pipeline, _, _ = pipeline_factory()
    bad = b'{ "session_id" : "s", "type": "click", "ts": "\\u00e9t\\u00e9" }'
    raw = b'[{"session_id": "s", "type": "session_end", "ts": 1}, ' + bad + b", 42]"
    out = pipeline.process(b"s", raw)
    assert [(dict(d.headers)["fw-index"], d.value) for d in out.dead_letters] == [
        (b"1", bad), (b"2", b"42")]


def test_a_record_that_raises_inside_is_dead_lettered_and_the_batch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The last line of defense: a bug on one record costs that record, not the batch."""
    def boom(state: SessionState, event: Any, outcome: Any) -> None:
        if state.session_id == "bug":
            raise RuntimeError("a bug")

    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config().observed(on_outcome=boom), states, metrics,
                        max_record_bytes=4096)
    help_ = {"session_id": "ok", "type": "help_request", "ts": 1}
    bad_value = orjson.dumps(dict(help_, session_id="bug"))
    out = pipeline.process_batch([
        Record(b"bug", bad_value, "frictionwatch.events", 3, 17),
        Record(b"ok", orjson.dumps(help_), "frictionwatch.events", 3, 18),
    ])
    (dead,) = out.dead_letters
    headers = dict(dead.headers)
    assert dead.value == bad_value and headers["fw-reason"] == b"internal_error"
    assert headers["fw-offset"] == b"17" and b"RuntimeError" in headers["fw-detail"]
    assert [o.session_id for o in out.outcomes] == ["ok"]
    assert sample(metrics, "frictionwatch_invalid_events_total", reason="internal_error") == 1
    assert "internal error on frictionwatch.events[3]@17" in caplog.text


def test_a_state_that_cannot_be_written_is_dropped_not_raised() -> None:
    def poison(state: SessionState, event: Any, outcome: Any) -> None:
        if state.session_id == "bug":
            state.model["oops"] = {1, 2}  # not JSON

    states: dict[bytes, bytes] = {}
    metrics = Metrics()
    pipeline = Pipeline(Engine.from_config().observed(on_outcome=poison), states, metrics,
                        max_record_bytes=4096)
    view = {"session_id": "ok", "type": "page_view", "ts": 1, "page": "/"}
    pipeline.process_batch([Record(b"bug", orjson.dumps(dict(view, session_id="bug"))),
                            Record(b"ok", orjson.dumps(view))])
    assert set(states) == {b"ok"}
    assert sample(metrics, "frictionwatch_invalid_events_total", reason="internal_error") == 1


def test_dead_letters_are_bounded_in_bytes() -> None:
    pipeline, _, _ = pipeline_factory()
    huge = b'{"session_id": "s", "page": "' + b"x" * 700_000 + b'"}'
    (dead,) = pipeline.process(b"s", huge).dead_letters
    headers = dict(dead.headers)
    assert headers["fw-reason"] == b"too_large"
    assert dead.value == huge[:MAX_DEAD_LETTER_BYTES]  # the original bytes, the first 512 KiB
    assert headers["fw-truncated"] == str(len(huge)).encode()
    key = b"k" * 20_000
    (dead,) = pipeline.process(key, b'{"session_id": "s", "type": "x", "ts": 1}').dead_letters
    assert dict(dead.headers)["fw-reason"] == b"key_mismatch"
    assert len(dict(dead.headers)["fw-detail"]) <= 512


def test_a_state_that_cannot_be_read_back_is_dropped_by_the_sweep_if_owned() -> None:
    pipeline, states, metrics = pipeline_factory()
    states[b"corrupt"] = b"\x00 not a state"
    states[b"theirs"] = b"\x00 not ours either"
    pipeline.process(b"s", orjson.dumps({"session_id": "s", "type": "page_view", "ts": 1, "page": "/"}))
    assert pipeline.sweep(idle_ms=50_000, owns=lambda key: key != b"theirs") == []
    assert set(states) == {b"s", b"theirs"}
    assert sample(metrics, "frictionwatch_invalid_events_total", reason="internal_error") == 1
