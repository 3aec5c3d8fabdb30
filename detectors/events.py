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

from detectors import scrub
from detectors.errors import InvalidEvent
from detectors.scrub import OnScrub, clean_code, clean_text
from detectors.scrub import url_path as url_path  # the one URL-stripping function

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
#: Caps in UTF-8 bytes, not characters: one emoji is 4 bytes, and bytes are what fill
#: session state, Kafka records and SSE frames.
#: Identities (session_id, event_id, user_id, intervention_id, type) over the cap are
#: refused (``too_large``): cutting them would merge two sessions or two events.
MAX_ID_BYTES: Final = 256
#: Free text (js_error/form_error message, click text, search query, checkout step,
#: strings in fields we do not know) is scrubbed and cut at a character boundary.
MAX_TEXT_BYTES: Final = 512
#: Paths, URLs, selectors and field names: scrubbed, query and fragment stripped, cut.
MAX_PATH_BYTES: Final = 200
#: Objects and arrays nest at most this deep in an event (the event itself is 1);
#: anything deeper is refused (``too_large``) before it is stored or re-encoded
#: (orjson's encoder stops at 255 levels, its decoder at 1024).
MAX_DEPTH: Final = 8
#: No decoded string is longer than this many characters (kept for importers; the
#: caps above, in bytes, are the rule).
MAX_STRING_CHARS: Final = 4096
#: Integers must fit a signed 64-bit word: orjson (and Kafka tooling) cannot carry more.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_STR: tuple[type, ...] = (str,)
_NUM: tuple[type, ...] = (int, float)
_INT: tuple[type, ...] = (int,)
_STR_OR_INT: tuple[type, ...] = (str, int)

# What a field's value is, and so how it is cleaned:
_ID = "id"  # an identity: refused over MAX_ID_BYTES
_TEXT = "text"  # free text: scrubbed, cut at MAX_TEXT_BYTES
_SHORT = "short"  # a selector or field name: scrubbed, cut at MAX_PATH_BYTES
_URL = "url"  # a page or URL: query and fragment stripped, scrubbed, cut at MAX_PATH_BYTES
_CODE = "code"  # a machine word (scrub.CODE_RE), else dropped (None)

Spec = tuple[tuple[type, ...], bool, bool]
# type -> {field: (accepted python types, required, nullable)}; mirrors schema/event.v1.json
_FIELDS: Final[dict[str, dict[str, Spec]]] = {
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
_COMMON: Final[dict[str, Spec]] = {
    "event_id": (_STR, False, True),
    "page": (_STR, False, True),
    "user_id": (_STR, False, True),
}
#: Fields only a server sets, each an integer 0..2**63-1 or null: ``received_at``, the
#: receive time (ms since epoch) the collector stamps over whatever a browser sent (a
#: record from another producer may carry its own, as trusted as that producer).
SERVER_FIELDS: Final = ("received_at",)
(_SERVER_FIELD,) = SERVER_FIELDS  # validate_event's fast test knows of this one only
#: field -> what its value is, so how it is cleaned (a name means the same in every type).
_KIND_OF: Final[dict[str, str]] = {
    "event_id": _ID, "user_id": _ID, "intervention_id": _ID,
    "message": _TEXT, "text": _TEXT, "query": _TEXT, "step": _TEXT,
    "target": _SHORT, "field": _SHORT,
    "page": _URL, "referrer": _URL, "url": _URL,
    "reason": _CODE, "code": _CODE, "channel": _CODE, "direction": _CODE,
}
KNOWN_TYPES: Final = frozenset(_FIELDS)
_BASE: Final = ("session_id", "type", "ts", *SERVER_FIELDS)
# Every field name an event of a type has a rule for; anything else is "unknown".
_KNOWN_NAMES: Final = {
    t: frozenset((*_BASE, *_COMMON, *fields)) for t, fields in _FIELDS.items()
}
_COMMON_NAMES: Final = frozenset((*_BASE, *_COMMON))

_TYPE_WORDS: dict[tuple[type, ...], str] = {_STR: "a string", _NUM: "a number", _INT: "an integer",
               _STR_OR_INT: "a string or an integer"}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    # bool is an int subclass in Python but not a number in JSON.
    return isinstance(value, kinds) and not isinstance(value, bool)


def _utf8_len(text: str) -> int:
    # A character is at most 4 bytes: most strings need no encoding to be measured.
    return len(text) if len(text) * 4 <= MAX_ID_BYTES else len(text.encode("utf-8", "surrogatepass"))


def _check_time(event: Event, name: str) -> None:
    value = event[name]
    if isinstance(value, float) and value.is_integer():
        event[name] = value = int(value)
    if not _is(value, _INT):
        raise InvalidEvent(
            "wrong_type", f"field {name!r} must be an integer (ms since epoch), got {_type_name(value)}"
        )
    if not 0 <= value <= INT_MAX:
        raise InvalidEvent("bad_value", f"field {name!r} must be 0 to 2**63-1, got {value}")


def _check_id(name: str, value: str) -> None:
    if _utf8_len(value) > MAX_ID_BYTES:
        raise InvalidEvent("too_large", f"field {name!r} is over {MAX_ID_BYTES} bytes (UTF-8)")


def _clean_url(value: str, on_scrub: OnScrub) -> str:
    path = url_path(value, limit=len(value) * 4 + 4, keep_origin=True)
    if len(path) > 4 * MAX_PATH_BYTES:  # bound the work; a cut segment may be half an e-mail
        path = path[: path.rfind("/", 0, 4 * MAX_PATH_BYTES) + 1] or "/"
        if on_scrub is not None:
            on_scrub("truncated")
    return clean_text(path, MAX_PATH_BYTES, on_scrub)


#: (field kind, string) -> the string cleaned, for strings whose cleaning scrubbed,
#: cut and dropped nothing: cleaning is a pure function of the string (no callback
#: was owed), and pages, selectors, messages and codes repeat from event to event.
#: A string that had anything scrubbed is cleaned again every time it comes.
_CLEANED: dict[tuple[str, str], Any] = {}
#: At most this many entries (then it starts again), of strings of at most
#: _CLEANED_CHARS characters: a bound of a few MB.
_CLEANED_MAX: Final = 4096
_CLEANED_CHARS: Final = 256


def _clean(name: str, value: Any, kind: str, on_scrub: OnScrub) -> Any:
    """A valid value of a field made safe to keep (see the kinds above); strings seen
    before with nothing to scrub are looked up (:data:`_CLEANED`).

    >>> _clean("page", "/p/1?email=a@b.c", _URL, None), ("url", "/p/1?email=a@b.c") in _CLEANED
    ('/p/1', True)
    >>> noted = []; _clean("query", "mail a@b.co", _TEXT, noted.append), noted
    ('mail [email]', ['email'])
    >>> ("text", "mail a@b.co") in _CLEANED  # scrubbed: cleaned afresh each time
    False
    """
    if type(value) is not str or len(value) > _CLEANED_CHARS:
        return _clean_now(name, value, kind, on_scrub)
    cached = _CLEANED.get((kind, value), _NOT_CLEANED)
    if cached is not _NOT_CLEANED:
        return cached
    noted: list[str] = []
    cleaned = _clean_now(name, value, kind, noted.append)
    if noted:
        if on_scrub is not None:
            for what in noted:
                on_scrub(what)
    else:
        if len(_CLEANED) >= _CLEANED_MAX:
            _CLEANED.clear()
        _CLEANED[kind, value] = cleaned
    return cleaned


_NOT_CLEANED: Final = object()


def _clean_now(name: str, value: Any, kind: str, on_scrub: OnScrub) -> Any:
    if kind == _CODE:
        return clean_code(value, on_scrub)
    if isinstance(value, str):
        if kind == _TEXT:
            return clean_text(value, MAX_TEXT_BYTES, on_scrub)
        if kind == _SHORT:
            return clean_text(value, MAX_PATH_BYTES, on_scrub)
        if kind == _URL:
            return _clean_url(value, on_scrub)
    elif kind == _TEXT and isinstance(value, int):
        return clean_code(value, on_scrub)  # a step number, unless it is a card number
    return value


#: One field's check, prepared: (name, accepted types, the exact Python types of a
#: decoded JSON value that are accepted, required, nullable, its kind or None).
_Check = tuple[str, tuple[type, ...], frozenset[type], bool, bool, str | None]
_ABSENT: Final = object()


def _plan(fields: dict[str, Spec]) -> tuple[_Check, ...]:
    return tuple((name, kinds, frozenset(kinds), required, nullable, _KIND_OF.get(name))
                 for name, (kinds, required, nullable) in fields.items())


def _check_fields(event: Event, plan: tuple[_Check, ...], on_scrub: OnScrub) -> None:
    for name, kinds, exact, required, nullable, kind in plan:
        value = event.get(name, _ABSENT)
        if value is _ABSENT:
            if required:
                raise InvalidEvent("missing_field", f"{event['type']} needs field {name!r}")
            continue
        if value is None and (nullable or not required):
            continue
        if type(value) not in exact:  # orjson makes exact types: the rest is rare
            if kinds in (_INT, _STR_OR_INT) and isinstance(value, float) and value.is_integer():
                event[name] = value = int(value)  # JSON Schema counts 3.0 as an integer
            if not _is(value, kinds):
                raise InvalidEvent(
                    "wrong_type",
                    f"field {name!r} must be {_TYPE_WORDS[kinds]}, got {_type_name(value)}",
                )
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise InvalidEvent("bad_value", f"field {name!r} does not fit 64 bits: {value}")
        if kind == _ID:  # an identity is kept as sent, only bounded
            if isinstance(value, str):
                _check_id(name, value)
        elif kind:
            event[name] = _clean(name, value, kind, on_scrub)


#: Per known type, its checks: the common fields' first, then its own.
_PLANS: Final = {t: _plan(_COMMON) + _plan(fields) for t, fields in _FIELDS.items()}
_COMMON_PLAN: Final = _plan(_COMMON)


def _clean_unknown(event: Event, names: Any, on_scrub: OnScrub) -> None:
    """Fields without a rule of their own are kept (producers may add fields), their
    strings cleaned as free text wherever they are, their nesting bounded."""
    stack: list[tuple[Any, int]] = [(event, 1)]
    while stack:
        container, depth = stack.pop()
        keys = names if container is event else (
            container.keys() if isinstance(container, dict) else range(len(container)))
        for key in keys:
            value = container[key]
            if isinstance(value, str):
                container[key] = clean_text(value, MAX_TEXT_BYTES, on_scrub)
            elif isinstance(value, dict | list):
                if depth >= MAX_DEPTH:
                    raise InvalidEvent("too_large", f"field {_shown(key)} nests deeper than "
                                                    f"{MAX_DEPTH} levels")
                stack.append((value, depth + 1))


def _shown(key: Any) -> str:
    return repr(key) if isinstance(key, int) else repr(scrub.truncate_utf8(str(key), 40))


def validate_event(obj: Any, on_scrub: OnScrub = None) -> Event:
    """Check one decoded JSON value against the v1 schema and return it as an event,
    its strings made safe to keep (in place).

    Unknown types pass (they are counted downstream, not rejected); known types must
    carry their own required fields with the right JSON types. Free text is scrubbed
    of personal data and cut to its byte cap (:mod:`detectors.scrub`), pages and URLs
    lose their query and fragment, a code that is not a code becomes null; an id over
    its cap, or nesting deeper than :data:`MAX_DEPTH`, is refused. ``on_scrub`` is
    called with the kind of each value scrubbed, cut or dropped.

    >>> validate_event({"session_id": "s", "type": "search", "ts": 5, "query": "q",
    ...                 "results": 0})["results"]
    0
    >>> validate_event({"session_id": "s", "type": "http_error", "ts": 5, "url": "/a"})
    Traceback (most recent call last):
    ...
    detectors.errors.InvalidEvent: missing_field: http_error needs field 'status'
    >>> e = validate_event({"session_id": "s", "type": "checkout_failed", "ts": 5,
    ...     "reason": "declined for jo@example.com", "code": "x" * 4000,
    ...     "page": "/checkout?email=jo@example.com#t", "note": {"why": "call +1 415 555 0134"}})
    >>> e["reason"], e["code"], e["page"], e["note"]
    (None, None, '/checkout', {'why': 'call [phone]'})
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"an event must be a JSON object, got {_type_name(obj)}")
    sid, name, ts = obj.get("session_id"), obj.get("type"), obj.get("ts")
    server = obj.get(_SERVER_FIELD)
    if not (type(sid) is str and type(name) is str and type(ts) is int
            and 0 < len(sid) <= 64 and 0 < len(name) <= 64 and 0 <= ts <= INT_MAX
            and (server is None or (type(server) is int and 0 <= server <= INT_MAX))):
        # Nearly every event passes the test above, which says that every check in
        # _check_base would pass (64 characters are at most 256 bytes of UTF-8).
        _check_base(obj)
    kind = obj["type"]
    _check_fields(obj, _PLANS.get(kind, _COMMON_PLAN), on_scrub)
    known = _KNOWN_NAMES.get(kind, _COMMON_NAMES)
    if not obj.keys() <= known:
        _clean_unknown(obj, list(obj.keys() - known), on_scrub)
    return obj


def _check_base(obj: Event) -> None:
    """The fields every event has: present, of their types, within their caps."""
    for name in ("session_id", "type", "ts"):
        if name not in obj:
            raise InvalidEvent("missing_field", f"every event needs field {name!r}")
    for name in ("session_id", "type"):
        value = obj[name]
        if not isinstance(value, str):
            raise InvalidEvent(
                "wrong_type", f"field {name!r} must be a string, got {_type_name(value)}"
            )
        if not value:
            raise InvalidEvent("bad_value", f"field {name!r} must not be empty")
        _check_id(name, value)
    _check_time(obj, "ts")
    for name in SERVER_FIELDS:
        if obj.get(name) is not None:
            _check_time(obj, name)


def decode_record(
    value: bytes, key: bytes | None, *, max_bytes: int = MAX_RECORD_BYTES, on_scrub: OnScrub = None
) -> tuple[list[Event], list[InvalidEvent]]:
    """Decode one record: a single event object or an array of one session's events.

    Returns the valid events (in order) and one :class:`InvalidEvent` per refused
    element, its ``index`` set, so that good events next to a bad one are not lost.
    Raises :class:`InvalidEvent` when the record as a whole is unusable. When ``key``
    is given it must be the events' ``session_id``: partitioning by session is what
    keeps a session's state on one worker.

    A refused element, however deep it nests, costs only itself: its dead letter is
    its own bytes cut out of the record, never a re-encoding (which orjson cannot do
    past 255 levels).
    """
    if len(value) > max_bytes:
        raise InvalidEvent("too_large", f"record is {len(value)} bytes, the cap is {max_bytes}")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)) from None
    if isinstance(decoded, dict):  # one event: its error is the record's
        event = validate_event(decoded, on_scrub)
        if key is not None and event["session_id"] != (own := key.decode("utf-8", "replace")):
            raise _key_mismatch(event, own)
        return [event], []
    if isinstance(decoded, list):
        items = decoded
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
            event = validate_event(item, on_scrub)
            if expected is not None and event["session_id"] != expected:
                raise _key_mismatch(event, expected)
            events.append(event)
        except InvalidEvent as exc:
            exc.index = index
            errors.append(exc)
    return events, errors


def _key_mismatch(event: Event, expected: str) -> InvalidEvent:
    return InvalidEvent(
        "key_mismatch", f"session_id {event['session_id']!r} differs from the record key {expected!r}")
