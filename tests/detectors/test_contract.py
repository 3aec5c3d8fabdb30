"""The contract every detector keeps, run over every class in the registry.

A new detector added to ``REGISTRY`` is covered here without new test code: it must be
deterministic, never read the clock, leave its settings alone, keep its state plain
JSON and small, and never crash or emit an out-of-range strength on valid input.
"""

from __future__ import annotations

import copy
import datetime
import sys
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import events
from detectors.base import Signal
from detectors.events import validate_event
from detectors.registry import REGISTRY

DETECTORS = sorted(REGISTRY.items())
by_name = pytest.mark.parametrize(("name", "cls"), DETECTORS, ids=[n for n, _ in DETECTORS])


def event_factory(type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return validate_event({"session_id": "s1", "type": type_, "ts": ts, **fields})


def contract_events(n: int) -> list[dict[str, Any]]:
    """A deterministic session that exercises every known detector, ``n`` events long."""
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        ts = i * 400
        phase = i % 80
        if phase < 4:  # a burst of quick clicks on one spot, no reaction: rage and dead
            out.append(event_factory("click", ts, x=10 + phase, y=20, target=f"#btn{i % 7}"))
        elif phase < 8:
            out.append(
                event_factory(
                    "click", ts, x=phase * 100, y=5, target="#slow", reaction_ms=phase * 500
                )
            )
        elif phase < 12:
            out.append(event_factory("checkout_failed", ts, reason="declined", code=402 + phase))
        elif phase == 12:
            out.append(event_factory("purchase", ts, value=19.99))
        elif phase == 13:
            out.append(event_factory("help_request", ts, channel="chat"))
        elif phase < 20:
            out.append(event_factory("page_view", ts, page=f"/p/{i}", event_id=f"e{i}"))
        elif phase == 20:  # a click, then its error: error_click
            out.append(event_factory("click", ts, x=500, y=500, target="#apply", text="Apply"))
        elif phase == 21:
            out.append(event_factory("js_error", ts, message="TypeError: undefined"))
        elif phase < 25:  # one field failing again and again: form_struggle
            out.append(event_factory("form_error", ts, field=f"field{i // 80 % 3}"))
        elif phase < 29:  # A -> B -> A -> B: navigation_loop
            out.append(event_factory("page_view", ts, page="/cart" if phase % 2 else "/checkout"))
        elif phase < 31:  # two searches that found nothing: search_struggle
            out.append(event_factory("search", ts, query=f"q{phase}", results=0))
        elif phase < 34:  # three server errors: http_error_burst
            out.append(event_factory("http_error", ts, url="/api/cart?id=7", status=503))
        elif phase < 44:  # up and down one page: excessive_scroll
            out.append(event_factory("scroll", ts, y=600 * (phase % 2), page="/c/bags"))
        else:
            kind = sorted(events.KNOWN_TYPES)[i % len(events.KNOWN_TYPES)]
            out.append(event_factory(kind, ts, **_minimal_fields(kind, i)))
        i += 1
    return out


def _minimal_fields(kind: str, i: int) -> dict[str, Any]:
    values = {str: f"v{i % 5}", int: i % 600, float: float(i % 50)}
    return {
        name: values[kinds[-1]]  # str, int, or float for a number
        for name, (kinds, required, _) in events._FIELDS[kind].items()
        if required
    }


def run(detector: Any, stream: list[dict[str, Any]], state: dict[str, Any] | None = None):
    state = {} if state is None else state
    signals = [(e, detector.step(state, e)) for e in stream]
    return state, [(e, s) for e, s in signals if s is not None]


def check_signal(name: str, event: dict[str, Any], signal: Signal) -> None:
    assert isinstance(signal, Signal)
    assert signal.detector == name
    assert isinstance(signal.strength, int | float) and not isinstance(signal.strength, bool)
    assert 0.0 <= signal.strength <= 1.0, signal
    assert signal.action in ("nudge", "handoff")
    assert signal.ts == event["ts"]
    orjson.dumps(signal.as_dict())  # it goes into output records


@by_name
def test_contract_events_exercise_the_detector(name: str, cls: type) -> None:
    """Otherwise the checks below would pass vacuously: extend contract_events()."""
    _, signals = run(cls(), contract_events(400))
    assert signals, f"{name} never fired on contract_events(); add events that make it fire"


@by_name
def test_deterministic(name: str, cls: type) -> None:
    stream = contract_events(400)
    state_a, signals_a = run(cls(), copy.deepcopy(stream))
    state_b, signals_b = run(cls(), copy.deepcopy(stream))
    assert signals_a == signals_b
    assert orjson.dumps(state_a) == orjson.dumps(state_b)


@by_name
def test_does_not_modify_events_or_settings(name: str, cls: type) -> None:
    detector = cls()
    settings_before = copy.deepcopy(vars(detector))
    stream = contract_events(400)
    pristine = copy.deepcopy(stream)
    run(detector, stream)
    assert stream == pristine
    assert vars(detector) == settings_before


class ClockRead(AssertionError):
    pass


def _no_clock(*args: Any, **kwargs: Any) -> Any:
    raise ClockRead("a detector read the clock; time must come from event ts")


class _FrozenDatetime(datetime.datetime):
    now = utcnow = today = fromtimestamp = classmethod(_no_clock)  # type: ignore[assignment]


class _FrozenDate(datetime.date):
    today = classmethod(_no_clock)  # type: ignore[assignment]


_CLOCKS = (
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "process_time",
    "localtime",
    "gmtime",
    "sleep",
)


@by_name
def test_never_reads_the_clock(name: str, cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = cls()  # settings may be built any way; stepping must not look at the time
    replacements: dict[int, Any] = {id(getattr(time, c)): _no_clock for c in _CLOCKS}
    replacements[id(datetime.datetime)] = _FrozenDatetime
    replacements[id(datetime.date)] = _FrozenDate
    module = sys.modules[cls.__module__]
    for attr, value in list(vars(module).items()):  # `from time import time` and the like
        if id(value) in replacements:
            monkeypatch.setattr(module, attr, replacements[id(value)])
    for clock in _CLOCKS:
        monkeypatch.setattr(time, clock, _no_clock)
    monkeypatch.setattr(datetime, "datetime", _FrozenDatetime)
    monkeypatch.setattr(datetime, "date", _FrozenDate)
    with pytest.raises(ClockRead):
        time.time()  # the trap is armed
    run(detector, contract_events(400))


@by_name
def test_state_is_plain_json_and_bounded(name: str, cls: type) -> None:
    detector, state = cls(), {}
    stream = contract_events(5_000)
    run(detector, stream[:500], state)
    raw = orjson.dumps(state)
    assert orjson.loads(raw) == state  # no tuples, sets or objects that change on the way
    run(detector, stream[500:], state)
    raw = orjson.dumps(state)
    assert orjson.loads(raw) == state
    assert len(raw) < 4 * 1024, f"{name} state is {len(raw)} bytes after 5k events"


@by_name
def test_state_survives_a_move_between_workers(name: str, cls: type) -> None:
    stream = contract_events(400)
    state, _ = run(cls(), stream[:200])
    moved = orjson.loads(orjson.dumps(state))
    _, rest_here = run(cls(), stream[200:], state)
    _, rest_there = run(cls(), stream[200:], moved)
    assert rest_here == rest_there


@by_name
def test_signals_are_well_formed(name: str, cls: type) -> None:
    _, signals = run(cls(), contract_events(2_000))
    for event, signal in signals:
        check_signal(name, event, signal)


# -- arbitrary sequences of valid events ---------------------------------------------

_text = st.one_of(
    st.sampled_from(["#pay", "input#q", "textarea", "/checkout", ""]), st.text(max_size=12)
)
_number = st.one_of(
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
_integer = st.one_of(st.integers(-(2**31), 2**31), st.integers(-5, 5).map(float))
_OF_KIND = {str: _text, float: _number, int: _integer}
_TYPES = [*sorted(events.KNOWN_TYPES), "custom_event"]


#: Values that make detectors fire (5xx, zero results, one field, two pages, stepper
#: text, new-tab and file-picker targets), mixed with arbitrary ones of the right type.
_LIKELY: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from([500, 503, 599, 404, 200]),
    "results": st.integers(0, 2),
    "field": st.sampled_from(["email", "zip"]),
    "page": st.sampled_from(["/a", "/b", "/c?x=1"]),
    "y": st.integers(0, 1500),
    "text": st.sampled_from(["+", " Next ", "›", "Pay", ""]),
    "message": st.sampled_from(["TypeError: x"]),
}
_TARGETS = ["#pay", "#next", "input#q", "a[target=_blank]", "input[type=file]", "a[download]"]


@st.composite
def valid_event(draw: st.DrawFn, ts: int) -> dict[str, Any]:
    type_ = draw(st.sampled_from(_TYPES))
    obj: dict[str, Any] = {"session_id": "s1", "type": type_, "ts": ts}
    if type_ == "click" and draw(st.booleans()):  # often close together: bursts happen
        obj.update(
            x=draw(st.integers(0, 40)),
            y=draw(st.integers(0, 40)),
            target=draw(st.sampled_from(_TARGETS)),
        )
        for flag in ("opens_new_tab", "download"):  # optional click fields, when the SDK knows
            if draw(st.integers(0, 4)) == 0:
                obj[flag] = draw(st.one_of(st.booleans(), st.none(), _text))
    for name, (kinds, required, nullable) in {
        **events._COMMON,
        **events._FIELDS.get(type_, {}),
    }.items():
        if name in obj or not (required or draw(st.booleans())):
            continue
        if nullable and draw(st.integers(0, 3)) == 0:
            obj[name] = None
        elif name in _LIKELY and draw(st.booleans()):
            obj[name] = draw(_LIKELY[name])
        else:
            obj[name] = draw(st.one_of(*(_OF_KIND[k] for k in kinds)))
    return validate_event(obj)  # raises if the strategy ever makes an invalid event


@st.composite
def valid_sessions(draw: st.DrawFn) -> list[dict[str, Any]]:
    ts = draw(st.integers(0, 2**41))
    out = []
    for _ in range(draw(st.integers(0, 40))):
        ts = max(0, ts + draw(st.one_of(st.integers(0, 1500), st.integers(-5000, 10**7))))
        out.append(draw(valid_event(ts)))
    return out


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream=valid_sessions())
def test_arbitrary_valid_sessions_never_crash(stream: list[dict[str, Any]]) -> None:
    """Every registered detector, on the same arbitrary session (one draw serves them all)."""
    for name, cls in DETECTORS:
        state, signals = run(cls(), copy.deepcopy(stream))
        for event, signal in signals:
            check_signal(name, event, signal)
        assert orjson.loads(orjson.dumps(state)) == state
