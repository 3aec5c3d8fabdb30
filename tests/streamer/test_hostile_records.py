"""Records from foreign producers on frictionwatch.events (issue 10, item 10): what once
crashed the agent is dead-lettered whole, with its own bytes; nothing raises."""

from __future__ import annotations

import orjson

from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline

GOOD = b'{"session_id": "s1", "type": "page_view", "ts": 1, "page": "/"}'
DEEP = b"[" * 300 + b"1" + b"]" * 300  # orjson decodes it, and cannot encode it again


def pipeline() -> Pipeline:
    return Pipeline(Engine.from_config({"model": {"enabled": False}}), {}, Metrics(),
                    max_record_bytes=256 * 1024)


def test_an_invalid_element_nested_300_deep_is_a_dead_letter_not_a_crash() -> None:
    for bad in (DEEP, b'{"session_id": "s1", "type": "x", "ts": "no", "d": ' + DEEP + b"}"):
        value = b"[" + GOOD + b"," + bad + b"]"
        produced = pipeline().process(b"s1", value, topic="frictionwatch.events", offset=7)
        (dead,) = produced.dead_letters
        assert dead.value == bad  # the element's own bytes, never re-encoded
        assert dict(dead.headers)["fw-index"] == b"1"


def test_personal_data_in_a_foreign_record_reaches_no_output() -> None:
    event = {"session_id": "s1", "type": "help_request", "ts": 1,
             "channel": "call +44 20 7946 0958", "page": "/x?email=jane@example.com"}
    produced = pipeline().process(b"s1", orjson.dumps(event))
    records = [r for outcome in produced.outcomes for r in outcome.records()]
    assert [r["kind"] for r in records] == ["signal", "handoff"]
    text = orjson.dumps(records).decode()
    assert "7946" not in text and "jane" not in text
