"""The engine over whole sessions: what reaches the customer and what the agent reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import InvalidEvent
from detectors.events import decode_record
from detectors.session import (
    MAX_ERRORS,
    MAX_PAGES,
    MAX_SEEN_IDS,
    MAX_SIGNALS,
    Engine,
    Outcome,
    SessionState,
)

USER_ID = "user-8f2a41"


def event_factory(type_: str, ts: int, session_id: str = "s1", **fields: Any) -> dict[str, Any]:
    return {"session_id": session_id, "type": type_, "ts": ts, "user_id": USER_ID, **fields}


def checkout_story() -> list[dict[str, Any]]:
    """A customer whose card keeps failing; URLs carry tokens and coupon codes."""
    fail = "checkout_failed"
    return [
        event_factory("page_view", 1_000, page="/product/42?ref=mail&email=a%40b.c"),
        event_factory("page_view", 5_000, page="/cart?coupon=SECRET10"),
        event_factory("page_view", 9_000, page="https://shop.example/checkout?token=tok_abc#pay"),
        event_factory("checkout_attempt", 10_000, step="payment"),
        event_factory(fail, 12_000, reason="declined", code="card_declined", page="/checkout"),
        event_factory("http_error", 13_000, url="/api/pay?card=4111111111111111", status=502),
        event_factory(fail, 20_000, reason="declined", code="card_declined", page="/checkout"),
        event_factory(fail, 30_000, reason="processing_error", code=5001, page="/checkout"),
    ]


def play(engine: Engine, state: SessionState, events: list[dict[str, Any]]) -> list[Outcome]:
    return [engine.step(state, e) for e in events]


def decisions(outcomes: list[Outcome]) -> list[tuple[int, str]]:
    return [(i, o.decision.kind) for i, o in enumerate(outcomes) if o.decision is not None]


def test_three_failed_checkouts_nudge_then_hand_off() -> None:
    state = SessionState("s1")
    outcomes = play(Engine.from_config(), state, checkout_story())
    assert decisions(outcomes) == [(6, "nudge"), (7, "handoff")]  # after the 2nd and 3rd failure
    nudge, handoff = outcomes[6].intervention(), outcomes[7].intervention()
    assert "context" not in nudge
    assert handoff["kind"] == "handoff" and handoff["delivered"] is True
    assert handoff["reasons"][0]["detector"] == "checkout_failure"
    context = handoff["context"]
    assert context["pages"] == ["/product/42", "/cart", "/checkout"]
    assert context["current_page"] == "/checkout"
    assert context["checkout"]["failures"] == 3 and context["checkout"]["attempts"] == 1
    assert context["checkout"]["codes"] == ["card_declined", 5001]
    assert context["checkout"]["reasons"] == ["declined", "processing_error"]
    assert context["errors"][0]["url"] == "/api/pay" and context["errors"][0]["status"] == 502
    assert "3 failed payment(s) (card_declined, 5001)" in context["summary"]
    assert context["events_seen"] == 8 and context["duration_s"] == 29.0
    text = orjson.dumps(handoff).decode()
    for secret in (USER_ID, "user_id", "?", "SECRET10", "tok_abc", "4111", "email", "#pay"):
        assert secret not in text, secret


def test_outcome_records_are_signal_lines_then_the_intervention() -> None:
    state = SessionState("s1")
    outcome = play(Engine.from_config(), state, checkout_story())[-1]
    lines = outcome.records()
    assert [line["kind"] for line in lines] == ["signal", "handoff"]
    assert lines[0]["detector"] == "checkout_failure" and lines[0]["session_id"] == "s1"
    assert all(line["ts"] == 30_000 for line in lines)


def test_disabled_detector_and_custom_policy_from_config() -> None:
    engine = Engine.from_config(
        {"checkout_failure": {"enabled": False}, "policy": {"holdout_share": 1.0}}
    )
    assert decisions(play(engine, SessionState("s1"), checkout_story())) == []
    held = play(
        Engine.from_config({"policy": {"holdout_share": 1.0}}), SessionState("s1"), checkout_story()
    )
    assert [o.decision.delivered for o in held if o.decision] == [False, False]


def test_duplicate_event_id_is_ignored() -> None:
    engine, state = Engine.from_config(), SessionState("s1")
    fail = event_factory("checkout_failed", 1, event_id="e-1")
    first = engine.step(state, fail)
    snapshot = state.to_json()
    again = engine.step(state, dict(fail, ts=2))  # a retried beacon
    assert not first.duplicate and again.duplicate
    assert again.records() == [] and again.decision is None
    assert state.to_json() == snapshot
    # A different id counts: this is the second failure, so it nudges.
    assert engine.step(state, dict(fail, event_id="e-2")).decision.kind == "nudge"  # type: ignore[union-attr]
    assert state.checkout["failures"] == 2


def test_events_without_ids_are_never_deduplicated() -> None:
    engine, state = Engine.from_config(), SessionState("s1")
    fail = event_factory("checkout_failed", 1)
    assert not any(o.duplicate for o in play(engine, state, [fail, fail, fail]))
    assert state.checkout["failures"] == 3


def test_state_json_round_trip_continues_identically() -> None:
    engine, story = Engine.from_config(), checkout_story()
    state = SessionState("s1")
    play(engine, state, story[:6])
    restored = SessionState.from_json(state.to_json())
    assert restored == state
    assert restored.to_json() == state.to_json()
    rest_a = [o.records() for o in play(engine, state, story[6:])]
    rest_b = [o.records() for o in play(engine, restored, story[6:])]
    assert rest_a == rest_b and any(rest_a)


def traffic(n: int, unknown_types: int = 1) -> list[dict[str, Any]]:
    """A long, busy session: every kind of event, fresh ids, pages and targets."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        ts, kind = i * 700, i % 10
        common: dict[str, Any] = {"event_id": f"evt-{i:08d}", "page": f"/p/{i}"}
        if kind == 0:
            out.append(event_factory("page_view", ts, **common))
        elif kind in (1, 2, 3):
            out.append(event_factory("click", ts, x=i % 7, y=3, target=f"#b{i % 13}", **common))
        elif kind == 4:
            out.append(event_factory("checkout_failed", ts, code=f"c{i}", reason=f"r{i}", **common))
        elif kind == 5:
            out.append(event_factory("js_error", ts, message="x" * 4096, **common))
        elif kind == 6:
            out.append(event_factory("http_error", ts, url=f"/api/{i}?q=1", status=500, **common))
        elif kind == 7:
            out.append(event_factory("help_request", ts, **common))
        elif kind == 8:
            out.append(event_factory(f"custom_{i // 10 % unknown_types}", ts, **common))
        else:
            out.append(event_factory("purchase", ts, value=i, **common))
    return out


def test_state_size_stays_bounded() -> None:
    engine, state = Engine.from_config(), SessionState("s1")
    events = traffic(10_000)
    play(engine, state, events[:1_000])
    after_1k = len(state.to_json())
    play(engine, state, events[1_000:])
    assert state.seq == 10_000
    assert len(state.pages) == MAX_PAGES and len(state.seen_ids) == MAX_SEEN_IDS
    assert len(state.signals) == MAX_SIGNALS and len(state.checkout["codes"]) == MAX_ERRORS
    assert len(state.to_json()) < 8 * 1024
    assert len(state.to_json()) <= after_1k + 128  # a few more digits in counters, nothing else


def test_state_size_stays_bounded_with_many_unknown_types() -> None:
    engine, state = Engine.from_config(), SessionState("s1")
    play(engine, state, traffic(10_000, unknown_types=1_000))
    assert len(state.to_json()) < 8 * 1024


def test_integral_floats_beyond_64_bits_are_refused_before_they_reach_state() -> None:
    # 1e20 is an integer to JSON Schema but does not fit orjson's 64 bits.
    for raw in (b'{"session_id": "s1", "type": "session_end", "ts": 1e20}',
                b'{"session_id": "s1", "type": "http_error", "ts": 1, "url": "/", "status": 1e19}'):
        with pytest.raises(InvalidEvent) as refused:
            decode_record(raw, b"s1")
        assert refused.value.reason == "bad_value"


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.sampled_from(checkout_story() + traffic(30)), max_size=40))
def test_engine_never_raises_and_state_stays_json(events: list[dict[str, Any]]) -> None:
    engine, state = Engine.from_config(), SessionState("s1")
    for event in events:
        for record in engine.step(state, dict(event)).records():
            orjson.dumps(record)
    assert SessionState.from_json(state.to_json()) == state
