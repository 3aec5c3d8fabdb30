"""The v1 codec: the JSON Schema and ``validate_event`` accept exactly the same events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from detectors import events
from detectors.errors import InvalidEvent
from detectors.events import (
    KNOWN_TYPES,
    MAX_EVENTS_PER_RECORD,
    MAX_RECORD_BYTES,
    MAX_STRING_CHARS,
    REASONS,
    decode_record,
    validate_event,
)

SCHEMA_PATH = Path(events.__file__).parent / "schema" / "event.v1.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def schema_accepts(obj: Any) -> bool:
    return VALIDATOR.is_valid(obj)


def validator_accepts(obj: Any) -> bool:
    try:
        validate_event(copy.deepcopy(obj))  # it normalises 3.0 -> 3 in place
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc
        return False
    return True


def event_factory(type_: str = "session_end", **fields: Any) -> dict[str, Any]:
    return {"session_id": "s1", "type": type_, "ts": 1000, **fields}


# -- the schema itself ---------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] and SCHEMA["title"] and SCHEMA["description"]


def test_schema_has_one_example_per_known_type() -> None:
    assert sorted(e["type"] for e in SCHEMA["examples"]) == sorted(KNOWN_TYPES)


@pytest.mark.parametrize("example", SCHEMA["examples"], ids=lambda e: e["type"])
def test_examples_pass_both_validators(example: dict[str, Any]) -> None:
    VALIDATOR.validate(example)
    assert validate_event(copy.deepcopy(example)) == example


def test_schema_names_every_field_of_the_table() -> None:
    """Every field the validator knows appears in the schema, so the two cannot drift."""
    text = SCHEMA_PATH.read_text()
    for fields in [*events._FIELDS.values(), events._COMMON, events.SERVER_FIELDS]:
        for name in fields:
            assert f'"{name}"' in text, name


# -- hand-picked edges, both ways (so the property below has teeth) -------------------

LONG = "x" * MAX_STRING_CHARS
EDGES: list[tuple[str, Any, bool]] = [
    ("minimal unknown type", {"session_id": "s", "type": "whatever", "ts": 0}, True),
    ("extra properties", event_factory(colour="red", nested={"a": [1]}), True),
    ("ts float integral", event_factory(ts=3.0), True),
    ("ts float fractional", event_factory(ts=3.5), False),
    ("ts negative", event_factory(ts=-1), False),
    ("ts bool", event_factory(ts=True), False),
    ("ts string", event_factory(ts="1000"), False),
    ("no session_id", {"type": "session_end", "ts": 1}, False),
    ("empty session_id", event_factory(session_id=""), False),
    ("session_id 256", event_factory(session_id="s" * 256), True),
    ("session_id 257", event_factory(session_id="s" * 257), False),
    ("type 257", {"session_id": "s", "type": "t" * 257, "ts": 1}, False),
    ("type null", {"session_id": "s", "type": None, "ts": 1}, False),
    ("user_id null", event_factory(user_id=None), True),
    ("user_id int", event_factory(user_id=7), False),
    # Free text is cut to its byte cap, never refused for its length; ids are refused.
    ("page far over its cap", event_factory(page=LONG + "x"), True),
    ("page at cap", event_factory(page=LONG), True),
    ("event_id 256", event_factory(event_id="e" * 256), True),
    ("event_id 257", event_factory(event_id="e" * 257), False),
    ("user_id 257", event_factory(user_id="u" * 257), False),
    ("intervention id 257", event_factory("intervention_shown", intervention_id="i" * 257), False),
    ("received_at", event_factory(received_at=1_767_225_600_000), True),
    ("received_at null", event_factory(received_at=None), True),
    ("received_at negative", event_factory(received_at=-1), False),
    ("received_at string", event_factory(received_at="now"), False),
    ("received_at float integral", event_factory(received_at=5.0), True),
    ("page_view page null", event_factory("page_view", page=None), False),
    ("page_view no page", event_factory("page_view"), False),
    ("click minimal", event_factory("click", x=1, y=2.5, target="#a"), True),
    ("click x bool", event_factory("click", x=True, y=2, target="#a"), False),
    ("click reaction null", event_factory("click", x=1, y=2, target="#a", reaction_ms=None), True),
    ("click reaction str", event_factory("click", x=1, y=2, target="#a", reaction_ms="9"), False),
    ("http status float integral", event_factory("http_error", url="/a", status=500.0), True),
    ("http status fractional", event_factory("http_error", url="/a", status=500.5), False),
    ("search results bool", event_factory("search", query="q", results=False), False),
    ("checkout code int", event_factory("checkout_failed", code=51), True),
    ("checkout code float integral", event_factory("checkout_failed", code=51.0), True),
    ("checkout code float", event_factory("checkout_failed", code=5.1), False),
    ("checkout code too long: dropped", event_factory("checkout_failed", code=LONG + "x"), True),
    ("checkout reason prose: dropped", event_factory("checkout_failed", reason="a b"), True),
    ("checkout reason int", event_factory("checkout_failed", reason=5), False),
    ("help channel list", event_factory("help_request", channel=["chat"]), False),
    ("checkout step list", event_factory("checkout_attempt", step=[1]), False),
    ("purchase value null", event_factory("purchase", value=None), True),
    ("intervention id missing", event_factory("intervention_shown"), False),
    ("not an object", [event_factory()], False),
]


@pytest.mark.parametrize(("obj", "valid"), [(o, v) for _, o, v in EDGES], ids=[e[0] for e in EDGES])
def test_edges_agree(obj: Any, valid: bool) -> None:
    assert schema_accepts(obj) is valid
    assert validator_accepts(obj) is valid


# -- property: the schema and the validator agree on arbitrary objects ----------------

_ALL_FIELDS = sorted({n for table in events._FIELDS.values() for n in table} | set(events._COMMON)
                     | set(events.SERVER_FIELDS))
_SERVER_SPEC = ((int,), False, True)
_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from([0, 1, 255, 256, 257, MAX_STRING_CHARS, MAX_STRING_CHARS + 1]).map("a".__mul__),
)
_int = st.one_of(st.integers(-3, 3), st.integers(-(2**53), 2**53))
_integral_float = st.integers(-(2**20), 2**20).map(float)  # 3.0: an integer to JSON Schema
_number = st.one_of(_int, _integral_float, st.floats(allow_nan=False, allow_infinity=False))
_scalar = st.one_of(st.none(), st.booleans(), _int, _integral_float, _number, _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
_OF_KIND = {str: _text, int: st.one_of(_int, _integral_float), float: _number}


def _draw_value(draw: st.DrawFn, name: str, type_: str) -> Any:
    """Mostly a value of the field's own JSON type (or null), sometimes anything."""
    spec = (events._FIELDS.get(type_, {}).get(name) or events._COMMON.get(name)
            or (_SERVER_SPEC if name in events.SERVER_FIELDS else None))
    choice = draw(st.integers(0, 9))
    if spec is None or choice == 0:
        return draw(_json)
    if choice == 1:
        return None
    return draw(st.one_of(*(_OF_KIND[k] for k in spec[0])))


@st.composite
def event_like(draw: st.DrawFn, type_: str) -> Any:
    """An object around the v1 shape: each part is usually right, sometimes wrong."""
    if not draw(st.integers(0, 40)):
        return draw(_json)  # sometimes not even an object
    obj: dict[str, Any] = {}
    for name, right, wrong in (
        ("session_id", _text, _json),
        ("type", st.just(type_), _json),
        ("ts", st.one_of(st.integers(-2, 2**45), _integral_float), _json),
    ):
        choice = draw(st.integers(0, 15))
        if choice:
            obj[name] = draw(right if choice > 1 else wrong)
    names = [*events._FIELDS.get(type_, {}), *events._COMMON, *events.SERVER_FIELDS]
    names = [n for n in names if draw(st.integers(0, 3))]  # each usually present
    names += draw(st.lists(st.sampled_from(_ALL_FIELDS), max_size=2))  # other types' fields
    for name in names:
        obj[name] = _draw_value(draw, name, type_)
    obj.update(draw(st.dictionaries(st.text(max_size=4), _json, max_size=2)))
    return obj


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_schema_and_validator_agree(data: st.DataObject) -> None:
    type_ = data.draw(st.sampled_from([*sorted(KNOWN_TYPES), "unknown_type"]))
    obj = data.draw(event_like(type_))
    assert schema_accepts(obj) == validator_accepts(obj), (
        f"schema errors: {[e.message for e in VALIDATOR.iter_errors(obj)]}"
    )


_DELETE = object()
_PROBES = [
    _DELETE,
    None,
    True,
    False,
    0,
    -1,
    7,
    2**53,
    3.0,
    -0.0,
    3.5,
    1e300,
    "",
    "a",
    "a" * 256,
    "a" * 257,
    LONG,
    LONG + "a",
    [],
    ["a"],
    {},
    {"a": 1},
]


def test_every_field_against_every_kind_of_value() -> None:
    """Each field of each type's example, replaced by each probe: both must agree."""
    disagreements = []
    for example in SCHEMA["examples"]:
        extra = {*events._FIELDS[example["type"]], *events._COMMON, *events.SERVER_FIELDS,
                 "brand_new_field"}
        for name in sorted(set(example) | extra):
            for probe in _PROBES:
                obj = {k: v for k, v in example.items() if k != name}
                if probe is not _DELETE:
                    obj[name] = probe
                if schema_accepts(obj) != validator_accepts(obj):
                    disagreements.append(
                        (example["type"], name, repr(probe)[:20], schema_accepts(obj))
                    )
    assert disagreements == []


# -- decode_record ------------------------------------------------------------------


def click_factory(ts: int = 1, session_id: str = "s1") -> dict[str, Any]:
    return {"session_id": session_id, "type": "click", "ts": ts, "x": 1, "y": 2, "target": "#a"}


def record(value: Any) -> bytes:
    return orjson.dumps(value)


def refusal(value: bytes, key: bytes | None = b"s1", **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_record(value, key, **kwargs)
    assert info.value.reason in REASONS
    return info.value


def test_single_object() -> None:
    assert decode_record(record(click_factory()), b"s1") == ([click_factory()], [])


def test_array_keeps_order() -> None:
    batch = [click_factory(ts) for ts in (3, 1, 2)]
    assert decode_record(record(batch), b"s1") == (batch, [])


def test_no_key_accepts_any_session() -> None:
    assert (
        decode_record(record(click_factory(session_id="other")), None)[0][0]["session_id"]
        == "other"
    )


def test_integral_float_ts_becomes_int() -> None:
    (event,), _ = decode_record(b'{"session_id": "s1", "type": "x", "ts": 5.0}', b"s1")
    assert event["ts"] == 5 and isinstance(event["ts"], int)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[]", "empty_batch"),
        (b"oops", "not_json"),
        (b"", "not_json"),
        (b'{"session_id": "s1"', "not_json"),
        (b"42", "not_object"),
        (b'"s1"', "not_object"),
        (b"null", "not_object"),
        (b'{"type": "click", "ts": 1}', "missing_field"),
        (b'{"session_id": "s1", "type": "click", "ts": "1"}', "wrong_type"),
        (b'{"session_id": "s1", "type": "click", "ts": -5}', "bad_value"),
    ],
)
def test_unusable_records(value: bytes, reason: str) -> None:
    assert refusal(value).reason == reason


def test_oversized_record() -> None:
    big = record([click_factory(t) for t in range(MAX_RECORD_BYTES // 60)])
    assert len(big) > MAX_RECORD_BYTES
    error = refusal(big)
    assert error.reason == "too_large" and str(MAX_RECORD_BYTES) in error.detail
    assert refusal(record(click_factory()), max_bytes=10).reason == "too_large"


def test_too_many_events() -> None:
    minimal = {"session_id": "s1", "type": "x", "ts": 0}
    assert decode_record(record([minimal] * MAX_EVENTS_PER_RECORD), b"s1")[1] == []
    error = refusal(record([minimal] * (MAX_EVENTS_PER_RECORD + 1)))
    assert error.reason == "too_large" and str(MAX_EVENTS_PER_RECORD) in error.detail


def test_key_mismatch_single_event() -> None:
    error = refusal(record(click_factory(session_id="s2")), key=b"s1")
    assert error.reason == "key_mismatch" and "s2" in error.detail and error.index is None


def test_bad_elements_do_not_lose_good_ones() -> None:
    batch = [
        click_factory(1),
        {"session_id": "s1", "type": "click", "ts": 2},  # no x, y, target
        click_factory(3),
        click_factory(4, session_id="s2"),
        "not an event",
        click_factory(6),
    ]
    good, errors = decode_record(record(batch), b"s1")
    assert [e["ts"] for e in good] == [1, 3, 6]
    assert [(e.index, e.reason) for e in errors] == [
        (1, "missing_field"),
        (3, "key_mismatch"),
        (4, "not_object"),
    ]
    assert all(e.reason in REASONS for e in errors)
    assert errors[0].as_dict() == {
        "reason": "missing_field",
        "detail": errors[0].detail,
        "index": 1,
    }


def test_all_bad_array_is_not_an_exception() -> None:
    good, errors = decode_record(b"[1, 2]", b"s1")
    assert good == [] and [e.index for e in errors] == [0, 1]
