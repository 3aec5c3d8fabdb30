"""The v1 event schema: decoding and validation at the edge, with orjson.

A Kafka record (or an HTTP beacon) holds one event object or a JSON array of events of
one session. Anything that does not fit raises :class:`InvalidEvent` with a ``reason``
from a small fixed set (it becomes a metric label and a dead-letter header) and a
``detail`` a human can act on.

>>> events, errors = decode_record(
...     b'[{"session_id": "s1", "type": "click", "ts": 1, "x": 3, "y": 4, "target": "#pay"},'
...     b' {"session_id": "s1", "type": "click", "ts": "soon"}]', key=b"s1")
>>> [e["type"] for e in events]
['click']
>>> errors[0].reason, errors[0].index, errors[0].detail
('wrong_type', 1, "field 'ts' must be an integer (ms since epoch), got str")
>>> decode_record(b"oops", key=None)
Traceback (most recent call last):
...
detectors.errors.InvalidEvent: not_json: unexpected character, expected a JSON value: line 1 column 1 (char 0)
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from detectors.errors import InvalidEvent

Event = dict[str, Any]

#: Every reason an input can be refused for; bounded, so safe as a metric label.
REASONS: Final = (
    "not_json",
    "not_object",
    "empty_batch",
    "too_large",
    "missing_field",
    "wrong_type",
    "bad_value",
    "key_mismatch",
)

MAX_RECORD_BYTES: Final = 256 * 1024
MAX_EVENTS_PER_RECORD: Final = 1000
MAX_STRING_CHARS: Final = 4096
#: Integers must fit a signed 64-bit word: orjson (and Kafka tooling) cannot carry more.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_STR: tuple[type, ...] = (str,)
_NUM: tuple[type, ...] = (int, float)
_INT: tuple[type, ...] = (int,)
_STR_OR_INT: tuple[type, ...] = (str, int)

# type -> {field: (accepted python types, required, nullable)}; mirrors schema/event.v1.json
_FIELDS: Final[dict[str, dict[str, tuple[tuple[type, ...], bool, bool]]]] = {
    "page_view": {"page": (_STR, True, False), "referrer": (_STR, False, True)},
    "click": {
        "x": (_NUM, True, False),
        "y": (_NUM, True, False),
        "target": (_STR, True, False),
        "text": (_STR, False, True),
        "reaction_ms": (_NUM, False, True),
    },
    "scroll": {"y": (_NUM, True, False), "direction": (_STR, False, True)},
    "js_error": {"message": (_STR, True, False)},
    "http_error": {"url": (_STR, True, False), "status": (_INT, True, False)},
    "form_error": {"field": (_STR, True, False), "message": (_STR, False, True)},
    "search": {"query": (_STR, True, False), "results": (_INT, True, False)},
    "checkout_attempt": {"step": (_STR_OR_INT, False, True)},
    "checkout_failed": {"reason": (_STR, False, True), "code": (_STR_OR_INT, False, True)},
    "purchase": {"value": (_NUM, False, True)},
    "help_request": {"channel": (_STR, False, True)},
    "intervention_shown": {"intervention_id": (_STR, True, False)},
    "intervention_accepted": {"intervention_id": (_STR, True, False)},
    "intervention_dismissed": {"intervention_id": (_STR, True, False)},
    "session_end": {},
}
_COMMON: Final[dict[str, tuple[tuple[type, ...], bool, bool]]] = {
    "event_id": (_STR, False, True),
    "page": (_STR, False, True),
    "user_id": (_STR, False, True),
}
KNOWN_TYPES: Final = frozenset(_FIELDS)

_TYPE_WORDS: dict[tuple[type, ...], str] = {_STR: "a string", _NUM: "a number", _INT: "an integer",
               _STR_OR_INT: "a string or an integer"}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    # bool is an int subclass in Python but not a number in JSON.
    return isinstance(value, kinds) and not isinstance(value, bool)


def _check_fields(event: Event, fields: dict[str, tuple[tuple[type, ...], bool, bool]]) -> None:
    for name, (kinds, required, nullable) in fields.items():
        if name not in event:
            if required:
                raise InvalidEvent("missing_field", f"{event['type']} needs field {name!r}")
            continue
        value = event[name]
        if value is None and (nullable or not required):
            continue
        if kinds in (_INT, _STR_OR_INT) and isinstance(value, float) and value.is_integer():
            event[name] = value = int(value)  # JSON Schema counts 3.0 as an integer
        if not _is(value, kinds):
            raise InvalidEvent(
                "wrong_type",
                f"field {name!r} must be {_TYPE_WORDS[kinds]}, got {_type_name(value)}",
            )
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise InvalidEvent("too_large", f"field {name!r} is over {MAX_STRING_CHARS} chars")
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise InvalidEvent("bad_value", f"field {name!r} does not fit 64 bits: {value}")


def url_path(url: str, limit: int = 200) -> str:
    """A page or URL reduced to its path: query strings and fragments carry PII.

    >>> url_path("https://shop.example/checkout?email=a@b.c#pay")
    '/checkout'
    """
    path = url.split("#", 1)[0].split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path[:limit] or "/"


def validate_event(obj: Any) -> Event:
    """Check one decoded JSON value against the v1 schema and return it as an event.

    Unknown types pass (they are counted downstream, not rejected); known types must
    carry their own required fields with the right JSON types.

    >>> validate_event({"session_id": "s", "type": "search", "ts": 5, "query": "q",
    ...                 "results": 0})["results"]
    0
    >>> validate_event({"session_id": "s", "type": "http_error", "ts": 5, "url": "/a"})
    Traceback (most recent call last):
    ...
    detectors.errors.InvalidEvent: missing_field: http_error needs field 'status'
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"an event must be a JSON object, got {_type_name(obj)}")
    for name in ("session_id", "type", "ts"):
        if name not in obj:
            raise InvalidEvent("missing_field", f"every event needs field {name!r}")
    for name in ("session_id", "type"):
        value = obj[name]
        if not isinstance(value, str):
            raise InvalidEvent(
                "wrong_type", f"field {name!r} must be a string, got {_type_name(value)}"
            )
        if not value or len(value) > 256:
            raise InvalidEvent("bad_value", f"field {name!r} must be 1 to 256 chars")
    ts = obj["ts"]
    if isinstance(ts, float) and ts.is_integer():
        obj["ts"] = ts = int(ts)
    if not _is(ts, _INT):
        raise InvalidEvent(
            "wrong_type", f"field 'ts' must be an integer (ms since epoch), got {_type_name(ts)}"
        )
    if not 0 <= ts <= INT_MAX:
        raise InvalidEvent("bad_value", f"field 'ts' must be 0 to 2**63-1, got {ts}")
    _check_fields(obj, _COMMON)
    fields = _FIELDS.get(obj["type"])
    if fields:
        _check_fields(obj, fields)
    return obj


def decode_record(
    value: bytes, key: bytes | None, *, max_bytes: int = MAX_RECORD_BYTES
) -> tuple[list[Event], list[InvalidEvent]]:
    """Decode one record: a single event object or an array of one session's events.

    Returns the valid events (in order) and one :class:`InvalidEvent` per refused
    element, its ``index`` set, so that good events next to a bad one are not lost.
    Raises :class:`InvalidEvent` when the record as a whole is unusable. When ``key``
    is given it must be the events' ``session_id``: partitioning by session is what
    keeps a session's state on one worker.
    """
    if len(value) > max_bytes:
        raise InvalidEvent("too_large", f"record is {len(value)} bytes, the cap is {max_bytes}")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)) from None
    if isinstance(decoded, dict):
        items, single = [decoded], True
    elif isinstance(decoded, list):
        items, single = decoded, False
        if not items:
            raise InvalidEvent("empty_batch", "the array holds no events")
        if len(items) > MAX_EVENTS_PER_RECORD:
            raise InvalidEvent(
                "too_large", f"{len(items)} events in one record, the cap is {MAX_EVENTS_PER_RECORD}"
            )
    else:
        raise InvalidEvent(
            "not_object", f"a record must be an event object or an array, got {_type_name(decoded)}"
        )
    expected = key.decode("utf-8", "replace") if key is not None else None
    events: list[Event] = []
    errors: list[InvalidEvent] = []
    for index, item in enumerate(items):
        try:
            event = validate_event(item)
            if expected is not None and event["session_id"] != expected:
                raise InvalidEvent(
                    "key_mismatch",
                    f"session_id {event['session_id']!r} differs from the record key {expected!r}",
                )
            events.append(event)
        except InvalidEvent as exc:
            if single:
                raise
            exc.index = index
            errors.append(exc)
    return events, errors
