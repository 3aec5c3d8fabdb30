"""Behaviour of each detector, one event at a time, with time taken from ``ts``."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.base import Signal
from detectors.checkout_failure import CheckoutFailure
from detectors.dead_click import DeadClick
from detectors.errors import ConfigError
from detectors.help_request import HelpRequest
from detectors.rage_click import RageClick
from detectors.registry import build


def event_factory(type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"session_id": "s1", "type": type_, "ts": ts, **fields}


def click_factory(ts: int, x: float = 100, y: float = 100, target: str = "#pay", **fields: Any):
    return event_factory("click", ts, x=x, y=y, target=target, **fields)


def run(detector: Any, events: list[dict[str, Any]], state: dict[str, Any] | None = None):
    """Step every event; return the signal (or None) per event."""
    state = {} if state is None else state
    return [detector.step(state, e) for e in events]


def fired(signals: list[Signal | None]) -> list[int]:
    return [i for i, s in enumerate(signals) if s is not None]


# -- rage click ----------------------------------------------------------------------


def test_rage_click_fires_once_on_the_third_quick_close_click() -> None:
    signals = run(
        RageClick(), [click_factory(t, x=100 + t // 100) for t in (0, 300, 600, 900, 1200)]
    )
    assert fired(signals) == [2]
    signal = signals[2]
    assert signal is not None
    assert (signal.detector, signal.ts, signal.action) == ("rage_click", 600, "nudge")
    assert signal.evidence == {"target": "#pay", "clicks": 3, "span_ms": 600}
    assert 0 < signal.strength <= 1


def test_rage_click_fires_again_for_a_new_burst() -> None:
    burst = [0, 200, 400]
    events = [click_factory(t) for t in burst] + [click_factory(t + 5000) for t in burst]
    assert fired(run(RageClick(), events)) == [2, 5]


@pytest.mark.parametrize(
    ("third", "fires"),
    [
        ({"ts": 1400}, True),  # exactly max_interval_ms after the second
        ({"ts": 1401}, False),  # one ms too slow
        ({"ts": 1000, "x": 120, "y": 110}, True),  # Manhattan distance 30 from the second
        ({"ts": 1000, "x": 120, "y": 111}, False),  # 31: too far
    ],
)
def test_rage_click_interval_and_distance_boundaries(third: dict[str, Any], fires: bool) -> None:
    events = [click_factory(0), click_factory(400), click_factory(**{"ts": 0, **third})]
    assert fired(run(RageClick(), events)) == ([2] if fires else [])


def test_a_far_or_slow_click_breaks_the_run() -> None:
    far = [click_factory(0), click_factory(100), click_factory(200, x=500), click_factory(300)]
    assert fired(run(RageClick(), far)) == []
    slow = [click_factory(0), click_factory(100), click_factory(5000), click_factory(5100)]
    assert fired(run(RageClick(), slow)) == []
    # ... and the clicks after the break start a run of their own.
    assert fired(run(RageClick(), [*slow, click_factory(5200)])) == [4]


def test_double_clicks_never_fire() -> None:
    events = [click_factory(start + d) for start in range(0, 50_000, 5000) for d in (0, 150)]
    assert fired(run(RageClick(), events)) == []


def test_other_events_do_not_break_or_extend_a_run() -> None:
    events = [
        click_factory(0),
        event_factory("scroll", 50, y=10),
        click_factory(100),
        event_factory("page_view", 150, page="/a"),
        click_factory(200),
    ]
    assert fired(run(RageClick(), events)) == [4]


@pytest.mark.parametrize(
    "target", ["input#email", "textarea.comment", "INPUT[name=q]", "[contenteditable=true]"]
)
def test_text_inputs_never_fire(target: str) -> None:
    events = [click_factory(t, target=target) for t in range(0, 1000, 100)]
    assert fired(run(RageClick(), events)) == []


def test_rage_click_min_clicks_setting() -> None:
    events = [click_factory(t) for t in range(0, 600, 100)]
    assert fired(run(RageClick(min_clicks=5), events)) == [4]


# -- dead click ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reaction_ms", "dead"), [(0, False), (2499, False), (2500, True), (2500.0, True), (9000, True)]
)
def test_dead_click_threshold_boundary(reaction_ms: float, dead: bool) -> None:
    signal = DeadClick().step({}, click_factory(0, reaction_ms=reaction_ms))
    assert (signal is not None) is dead
    if signal is not None:
        assert signal.evidence["reaction_ms"] == reaction_ms


def test_dead_click_null_or_absent_reaction_is_dead() -> None:
    null = DeadClick().step({}, click_factory(7, reaction_ms=None))
    absent = DeadClick().step({}, click_factory(7))
    assert null is not None and absent is not None
    assert null == absent
    assert null.evidence == {"target": "#pay", "reaction_ms": None, "repeats": 1}
    assert (null.detector, null.ts, null.action) == ("dead_click", 7, "nudge")


def test_dead_click_repeats_on_one_target_raise_strength_up_to_one() -> None:
    signals = run(DeadClick(), [click_factory(t * 3000) for t in range(5)])
    strengths = [s.strength for s in signals if s is not None]
    assert strengths == [0.35, 0.7, 1.0, 1.0, 1.0]
    assert [s.evidence["repeats"] for s in signals if s is not None] == [1, 2, 3, 4, 5]


def test_dead_click_a_different_target_resets_the_count() -> None:
    events = [
        click_factory(0),
        click_factory(1),
        click_factory(2, target="#other"),
        click_factory(3),
    ]
    signals = run(DeadClick(), events)
    assert [s.evidence["repeats"] for s in signals if s is not None] == [1, 2, 1, 1]
    assert [s.strength for s in signals if s is not None] == [0.35, 0.7, 0.35, 0.35]


def test_dead_click_ignores_reacting_clicks_and_other_events() -> None:
    events = [click_factory(0, reaction_ms=100), event_factory("js_error", 1, message="boom")]
    assert fired(run(DeadClick(), events)) == []


# -- checkout failure ----------------------------------------------------------------


def fail_factory(ts: int, **fields: Any) -> dict[str, Any]:
    return event_factory("checkout_failed", ts, reason="declined", code="card_declined", **fields)


def test_checkout_failure_nudges_at_two_and_hands_off_from_three() -> None:
    signals = run(CheckoutFailure(), [fail_factory(t) for t in (1, 2, 3, 4)])
    assert [getattr(s, "action", None) for s in signals] == [None, "nudge", "handoff", "handoff"]
    nudge, handoff = signals[1], signals[2]
    assert nudge is not None and handoff is not None
    assert nudge.strength < handoff.strength == 1.0
    assert handoff.evidence == {"failures": 3, "reason": "declined", "code": "card_declined"}


def test_purchase_resets_the_count() -> None:
    events = [
        fail_factory(1),
        fail_factory(2),
        event_factory("purchase", 3),
        fail_factory(4),
        fail_factory(5),
    ]
    assert [getattr(s, "action", None) for s in run(CheckoutFailure(), events)] == [
        None,
        "nudge",
        None,
        None,
        "nudge",
    ]


def test_other_checkout_events_do_not_count() -> None:
    events = [event_factory("checkout_attempt", t, step="payment") for t in range(5)]
    assert fired(run(CheckoutFailure(), events)) == []


def test_checkout_failure_custom_thresholds() -> None:
    signals = run(CheckoutFailure(nudge_after=1, handoff_after=1), [fail_factory(1)])
    assert signals[0] is not None and signals[0].action == "handoff"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"nudge_after": 3, "handoff_after": 2}, "checkout_failure.handoff_after"),
        ({"nudge_after": 0}, "checkout_failure.nudge_after"),
        ({"handoff_after": 101}, "checkout_failure.handoff_after"),
        ({"nudge_after": "2"}, "checkout_failure.nudge_after"),
        ({"nudge_after": True}, "checkout_failure.nudge_after"),
    ],
)
def test_checkout_failure_bad_config_names_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        CheckoutFailure(**settings)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build({"checkout_failure": settings})


@pytest.mark.parametrize(
    ("cls", "settings", "key"),
    [
        (RageClick, {"min_clicks": 1}, "rage_click.min_clicks"),
        (RageClick, {"max_interval_ms": 0}, "rage_click.max_interval_ms"),
        (RageClick, {"max_distance_px": -1}, "rage_click.max_distance_px"),
        (DeadClick, {"threshold_ms": 0}, "dead_click.threshold_ms"),
        (DeadClick, {"strength_per_repeat": 1.5}, "dead_click.strength_per_repeat"),
    ],
)
def test_other_bad_configs_name_the_key(cls: type, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(**settings)


def test_unknown_config_keys_and_detectors_are_refused() -> None:
    with pytest.raises(ConfigError, match="dead_click.treshold_ms"):
        build({"dead_click": {"treshold_ms": 10}})
    with pytest.raises(ConfigError, match="'rage_clicks'"):
        build({"rage_clicks": {}})
    with pytest.raises(ConfigError, match="help_request.enabled"):
        build({"help_request": {"enabled": "no"}})


# -- help request --------------------------------------------------------------------


def test_help_request_always_asks_for_a_handoff() -> None:
    state: dict[str, Any] = {}
    signals = run(
        HelpRequest(), [event_factory("help_request", t, channel="chat") for t in (5, 6)], state
    )
    assert all(s is not None for s in signals)
    first = signals[0]
    assert first == Signal(
        "help_request", 1.0, ts=5, action="handoff", evidence={"channel": "chat"}
    )
    assert HelpRequest().step({}, event_factory("help_request", 9)).evidence == {"channel": None}


def test_help_request_ignores_everything_else() -> None:
    events = [click_factory(0), fail_factory(1), event_factory("session_end", 2)]
    assert fired(run(HelpRequest(), events)) == []
