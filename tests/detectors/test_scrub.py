"""The hostile browser at the decode boundary (issue 10, items 6, 7 and 10): personal
data never gets past validate_event, strings are capped in bytes, codes are codes,
nesting is bounded. Pure: no broker, no clock."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import InvalidEvent
from detectors.events import (
    MAX_DEPTH,
    MAX_PATH_BYTES,
    MAX_TEXT_BYTES,
    decode_record,
    validate_event,
)
from detectors.scrub import clean_code, clean_text, scrub, url_path
from detectors.session import Engine, SessionState

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PHONE = "+44 20 7946 0958"
SECRET = "s3cr3tT0kenVa1ue"
#: What must never be found downstream of decoding: each a piece of the planted data.
NEEDLES = ("jane.doe", "example.com", "4111", "7946", SECRET)
PII = (f"contact {EMAIL} card {CARD} phone {PHONE} at "
       f"https://shop.example/cb?access_token={SECRET}#id_token={SECRET}")
PII_PATH = f"/account/{EMAIL}/{CARD}/{PHONE}?access_token={SECRET}#token={SECRET}"


def leaks(value: Any) -> list[str]:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return [n for n in NEEDLES if n in text]


def poisoned_session(sid: str = "s-pii") -> list[dict[str, Any]]:
    """Events with the planted data in every free-text field, and friction enough for
    every detector that keeps evidence to fire (signals, a nudge, a handoff)."""
    t = 1_767_225_600_000
    page = {"page": PII_PATH}
    events: list[dict[str, Any]] = [
        {"type": "page_view", "page": PII_PATH, "referrer": PII_PATH},
        {"type": "page_view", "page": "/c/bags", "referrer": PII_PATH},
        {"type": "page_view", "page": PII_PATH},
        {"type": "page_view", "page": "/c/bags"},
        {"type": "page_view", "page": PII_PATH},
    ]
    events += [{"type": "click", "x": 10, "y": 10, "target": f"#pay {PII}", "text": PII, **page}
               for _ in range(4)]
    events += [{"type": "js_error", "message": PII, **page}]
    events += [{"type": "scroll", "y": y, "direction": PII, **page}
               for y in (0, 900, 100, 900, 100, 900, 100, 900, 100)]
    events += [{"type": "form_error", "field": PII, "message": PII, **page} for _ in range(3)]
    events += [{"type": "search", "query": PII, "results": 0, **page} for _ in range(3)]
    events += [{"type": "http_error", "url": PII_PATH, "status": 503, **page} for _ in range(3)]
    events += [{"type": "checkout_attempt", "step": PII, **page}]
    events += [{"type": "checkout_failed", "reason": PII, "code": PII, **page} for _ in range(3)]
    events += [{"type": "help_request", "channel": PII, "note": {"free": PII, "list": [PII]}}]
    return [{"session_id": sid, "ts": t + i * 400, "event_id": f"e{i}", **e}
            for i, e in enumerate(events)]


def test_planted_personal_data_never_passes_decoding() -> None:
    for event in poisoned_session():
        cleaned = validate_event(copy.deepcopy(event))
        assert leaks(cleaned) == [], (event["type"], cleaned)


def test_planted_personal_data_never_reaches_state_signals_or_interventions() -> None:
    """Issue 10 item 6: a js_error message with an e-mail and a card number reached
    signals, reasons[].evidence and the handoff context; so did checkout_failed
    reason/code and the help_request channel."""
    engine = Engine.from_config()
    state = SessionState("s-pii")
    records: list[dict[str, Any]] = []
    for event in poisoned_session():
        records += engine.step(state, validate_event(event)).records()
    kinds = {r["kind"] for r in records}
    detectors = {r["detector"] for r in records if r["kind"] == "signal"}
    assert {"signal", "nudge", "handoff"} <= kinds
    assert {"error_click", "checkout_failure", "help_request", "excessive_scroll",
            "search_struggle", "form_struggle"} <= detectors
    assert leaks(records) == []
    assert leaks(state.to_json().decode()) == []


def test_a_4000_character_code_is_not_a_summary() -> None:
    """Issue 10 item 7: a 4000-character ``code`` became the handoff summary."""
    engine = Engine.from_config()
    state = SessionState("s-long")
    records: list[dict[str, Any]] = []
    for ts in (1, 2, 3):
        event = {"session_id": "s-long", "type": "checkout_failed", "ts": ts,
                 "code": "x" * 4000, "reason": "declined " * 500}
        records += engine.step(state, validate_event(event)).records()
    (handoff,) = [r for r in records if r["kind"] == "handoff"]
    assert handoff["context"]["summary"] == "3 failed payment(s)"
    assert len(orjson.dumps(handoff)) < 2000


@pytest.mark.parametrize(("value", "expected"), [
    ("card_declined", "card_declined"), (402, 402), ("51", "51"), ("ERR.x:y-z", "ERR.x:y-z"),
    ("x" * 40, "x" * 40), ("x" * 41, None), ("declined, sorry", None), ("", None),
    ("<img src=x>", None), ("ümlaut", None), (4111111111111111, None), ("4111111111111111", None),
    (True, None), (None, None),
])
def test_codes_are_allow_listed_by_pattern(value: Any, expected: Any) -> None:
    assert clean_code(value) == expected


def test_codes_that_are_not_codes_become_null_not_refusals() -> None:
    dropped: list[str] = []
    event = validate_event({"session_id": "s", "type": "checkout_failed", "ts": 1,
                            "reason": "a" * 41, "code": "ok_code"}, dropped.append)
    assert (event["reason"], event["code"], dropped) == (None, "ok_code", ["code_dropped"])
    for type_, name in (("help_request", "channel"), ("scroll", "direction")):
        event = validate_event({"session_id": "s", "type": type_, "ts": 1, "y": 0,
                                name: "call " + PHONE})
        assert event[name] is None


def test_strings_are_capped_in_utf8_bytes() -> None:
    """Issue 10 items 1 and 7: caps counted characters, so a 4096-emoji id was 16 KB."""
    emoji = "\U0001f600"
    with pytest.raises(InvalidEvent) as err:
        validate_event({"session_id": "s", "type": "x", "ts": 1, "event_id": emoji * 4096})
    assert err.value.reason == "too_large"
    with pytest.raises(InvalidEvent) as err:  # 65 emoji: 65 characters, 260 bytes
        validate_event({"session_id": emoji * 65, "type": "x", "ts": 1})
    assert err.value.reason == "too_large"
    assert validate_event({"session_id": emoji * 64, "type": "x", "ts": 1})  # 256 bytes
    event = validate_event({"session_id": "s", "type": "js_error", "ts": 1,
                            "message": (emoji + " ") * 5000, "page": "/é" * 1000,
                            "extra": "ü" * 10_000})
    assert len(event["message"].encode()) <= MAX_TEXT_BYTES
    assert len(event["page"].encode()) <= MAX_PATH_BYTES
    assert len(event["extra"].encode()) <= MAX_TEXT_BYTES
    assert event["message"].startswith(emoji)  # cut at a character boundary, not refused


def test_urls_lose_query_and_fragment_in_one_place() -> None:
    """excessive_scroll evidence kept URL fragments (#access_token=...)."""
    event = validate_event({"session_id": "s", "type": "http_error", "ts": 1, "status": 500,
                            "url": "https://api.example/v1/pay?card=4111#access_token=x",
                            "page": "/checkout#access_token=abc"})
    assert (event["url"], event["page"]) == ("https://api.example/v1/pay", "/checkout")
    assert url_path("/a/b?x#y") == "/a/b" and url_path("https://h.example/p#f") == "/p"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_capped_without_recursion() -> None:
    """Issue 10 item 10: an unknown field nested 500 deep made collect answer 500."""
    ok = {"session_id": "s", "type": "x", "ts": 1, "extra": nested(MAX_DEPTH - 1)}
    assert orjson.dumps(validate_event(ok))  # the event is level 1: 8 levels in all
    for depth in (MAX_DEPTH, 500, 1000):
        with pytest.raises(InvalidEvent) as err:
            validate_event({"session_id": "s", "type": "x", "ts": 1, "extra": nested(depth)})
        assert err.value.reason == "too_large"


def test_a_deep_invalid_element_costs_only_itself() -> None:
    """Issue 10 item 10: an invalid element nested deeper than 254 in a Kafka record
    crashed the agent (its dead letter was re-encoded, and orjson stops at 255 levels).
    Now it is refused on its own (the pipeline cuts its bytes out of the record) and
    the good events beside it are kept."""
    good = {"session_id": "s1", "type": "x", "ts": 1}
    deep = b"[" * 300 + b"1" + b"]" * 300  # more than orjson can encode
    for bad in (deep, b'{"session_id": "s1", "type": "x", "ts": "no", "d": ' + deep + b"}"):
        value = b"[" + orjson.dumps(good) + b"," + bad + b"]"
        events, errors = decode_record(value, b"s1")
        assert len(events) == 1 and [e.index for e in errors] == [1]
    # A shallow bad element still costs only itself.
    events, errors = decode_record(orjson.dumps([good, nested(3)]), b"s1")
    assert len(events) == 1 and [e.reason for e in errors] == ["not_object"]


def test_received_at_is_an_optional_server_time() -> None:
    assert validate_event({"session_id": "s", "type": "x", "ts": 1, "received_at": 2})
    with pytest.raises(InvalidEvent):
        validate_event({"session_id": "s", "type": "x", "ts": 1, "received_at": "now"})


# -- properties ---------------------------------------------------------------------

_planted = st.sampled_from([EMAIL, CARD, "4111-1111-1111-1111", "5555555555554444", PHONE,
                            "(415) 555-0134", f"?token={SECRET}", f"#access_token={SECRET}",
                            "x%40example.com", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"])
_filler = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=300, deadline=None, database=None)
@given(parts=st.lists(st.tuples(_filler, _planted), max_size=6), tail=_filler,
       cap=st.integers(16, 600))
def test_planted_data_never_survives_whatever_surrounds_it(
    parts: list[tuple[str, str]], tail: str, cap: int
) -> None:
    text = "".join(f"{filler} {pii} " for filler, pii in parts) + tail
    cleaned = clean_text(text, cap)
    assert len(cleaned.encode()) <= cap
    for _, pii in parts:
        assert pii not in cleaned
    for needle in ("jane.doe", "4111", "5555555555554444", "7946", "555-0134", SECRET,
                   "x%40example"):
        assert needle not in cleaned


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=300), cap=st.integers(1, 600))
def test_cleaning_never_raises_and_keeps_its_cap(text: str, cap: int) -> None:
    assert len(clean_text(text, cap).encode("utf-8", "surrogatepass")) <= cap
    assert scrub(scrub(text)) == scrub(text)
