"""A session's state and what it sends are bounded in bytes, whatever a browser sends
(issue 10: one client filled a state past 1 MB; a 4000-character code became the
handoff summary)."""

from __future__ import annotations

from typing import Any

import orjson

from detectors.session import (
    MAX_CONTEXT_BYTES,
    MAX_EVIDENCE_BYTES,
    MAX_SEEN_IDS,
    MAX_SUMMARY_BYTES,
    MAX_TEXT,
    STATE_MAX_BYTES,
    Engine,
    SessionState,
    id_tag,
)

EMOJI = "\N{PILE OF POO}"  # 4 bytes of UTF-8, one character


def strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def utf8(text: str) -> int:
    return len(text.encode())


def test_a_4000_character_code_is_no_summary() -> None:
    engine, state = Engine.from_config(), SessionState("s")
    fail = {"session_id": "s", "type": "checkout_failed", "page": "/checkout",
            "code": "9" * 4000, "reason": EMOJI * 4000}
    outcomes = [engine.step(state, dict(fail, ts=t)) for t in (1, 2, 3)]
    handoff = outcomes[-1].intervention()
    assert handoff["kind"] == "handoff"
    context = handoff["context"]
    assert utf8(context["summary"]) <= MAX_SUMMARY_BYTES
    assert context["summary"].startswith("3 failed payment(s) (9999")
    assert len(orjson.dumps(context)) <= MAX_CONTEXT_BYTES
    for reason in handoff["reasons"]:
        assert all(utf8(s) <= MAX_EVIDENCE_BYTES for s in strings(reason["evidence"]))
    for record in outcomes[-1].records():
        assert len(orjson.dumps(record)) < 16 * 1024
    assert all(utf8(s) <= MAX_TEXT for s in strings(state.checkout))


def test_stored_strings_are_capped_in_utf8_bytes() -> None:
    engine, state = Engine.from_config(), SessionState("s")
    long = EMOJI * 4096
    events = [
        {"type": "page_view", "page": "/" + long},
        {"type": "checkout_attempt", "step": long},
        {"type": "js_error", "message": long, "page": "/" + long},
        {"type": "form_error", "field": long},
        {"type": "http_error", "url": "/" + long, "status": 500},
    ]
    for i, event in enumerate(events):
        engine.step(state, {"session_id": "s", "ts": i, **event})
    mine = [state.pages, state.checkout, state.errors, state.signals]
    assert all(utf8(s) <= MAX_TEXT for s in strings(mine))
    assert len(state.to_json()) < STATE_MAX_BYTES


def test_event_ids_are_remembered_as_fixed_size_tags() -> None:
    """64 seen ids of 4096 emoji were 1 MB of state alone."""
    engine, state = Engine.from_config(), SessionState("s")
    ids = [f"{i}-" + EMOJI * 4090 for i in range(100)]
    for i, event_id in enumerate(ids):
        engine.step(state, {"session_id": "s", "type": "scroll", "ts": i, "y": i,
                            "event_id": event_id})
    assert len(state.seen_ids) == MAX_SEEN_IDS
    assert len(orjson.dumps(state.seen_ids)) <= MAX_SEEN_IDS * 20
    # De-duplication still works on the latest ids, and only on them.
    again = [engine.step(state, {"session_id": "s", "type": "scroll", "ts": 200, "y": 0,
                                 "event_id": event_id}).duplicate for event_id in ids[-3:]]
    assert again == [True, True, True]
    assert not engine.step(state, {"session_id": "s", "type": "scroll", "ts": 201, "y": 0,
                                   "event_id": "new"}).duplicate


def test_a_state_written_with_raw_ids_still_deduplicates() -> None:
    old = orjson.loads(SessionState("s").to_json())
    old["seen_ids"] = ["e-1", "e-2"]
    for key in ("seen_at", "clock_offset"):  # older states have no server time
        del old[key]
    state = SessionState.from_json(orjson.dumps(old))
    assert state.seen_ids == [id_tag("e-1"), id_tag("e-2")]
    outcome = Engine.from_config().step(state, {"session_id": "s", "type": "x", "ts": 1,
                                                "event_id": "e-2"})
    assert outcome.duplicate


def test_the_budget_drops_the_oldest_detail_first() -> None:
    engine, state = Engine.from_config(), SessionState("s")
    for i in range(40):
        engine.step(state, {"session_id": "s", "type": "js_error", "ts": i * 10_000,
                            "message": f"{i}-" + "m" * 300, "page": f"/p/{i}/" + "x" * 300,
                            "event_id": f"e{i}"})
        engine.step(state, {"session_id": "s", "type": "page_view", "ts": i * 10_000 + 1,
                            "page": f"/p/{i}/" + "y" * 300})
    before = SessionState.from_json(state.to_json())
    raw, dropped = state.encode(4096)
    assert len(raw) <= 4096 and SessionState.from_json(raw) == state
    assert list(dropped) == ["errors", "pages"]
    assert dropped["errors"] == len(before.errors)  # all errors went before any page
    assert state.seen_ids == before.seen_ids  # the ids go last: retries stay recognised
    # What is left is the newest of each list.
    assert state.errors == before.errors[len(before.errors) - len(state.errors):]
    assert state.pages == before.pages[len(before.pages) - len(state.pages):]
    assert state.counts == before.counts and state.policy == before.policy
    assert state.encode(4096) == (raw, {})  # within budget: nothing more to drop
