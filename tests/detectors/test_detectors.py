"""Behaviour of each detector, one event at a time, with time taken from ``ts``."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.base import Signal
from detectors.checkout_failure import CheckoutFailure
from detectors.dead_click import DeadClick
from detectors.error_click import ErrorClick
from detectors.errors import ConfigError
from detectors.excessive_scroll import ExcessiveScroll
from detectors.form_struggle import MAX_FIELDS, FormStruggle
from detectors.help_request import HelpRequest
from detectors.http_error_burst import HttpErrorBurst
from detectors.navigation_loop import NavigationLoop
from detectors.rage_click import RageClick
from detectors.registry import REGISTRY, build
from detectors.search_struggle import SearchStruggle


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
    "target",
    [
        "input#email",
        "textarea.comment",
        "INPUT[name=q]",
        "[contenteditable=true]",
        "form#address input[type='search']",
        "div.note > textarea",
    ],
)
def test_text_inputs_never_fire(target: str) -> None:
    """Triple-click selects a line in a text field: suppressed (PostHog, Datadog)."""
    events = [click_factory(t, target=target) for t in range(0, 1000, 100)]
    assert fired(run(RageClick(), events)) == []
    # the same burst on a button-like input or a plain button is rage: suppression did it
    for twin in ("input[type=submit]", "button#save"):
        assert fired(run(RageClick(), [dict(e, target=twin) for e in events])) == [2]


def burst_factory(**fields: Any) -> list[dict[str, Any]]:
    """Five quick clicks on one spot: rage unless suppressed."""
    return [click_factory(t, **fields) for t in (0, 200, 400, 600, 800)]


@pytest.mark.parametrize("text", ["+", " + ", "-", "−", "–"])
def test_rage_click_ignores_number_steppers(text: str) -> None:
    assert fired(run(RageClick(), burst_factory(target="button.qty", text=text))) == []
    assert fired(run(RageClick(), burst_factory(target="button.qty", text="Add"))) == [2]
    # removing the suppression (an empty text list) makes the stepper fire
    unsuppressed = RageClick(ignore_texts=[])
    assert fired(run(unsuppressed, burst_factory(target="button.qty", text=text))) == [2]


@pytest.mark.parametrize("text", ["Next", " next ", "PREV", "Previous", "<", ">", "›", "‹"])
def test_rage_click_ignores_pagination_and_carousel_controls(text: str) -> None:
    assert fired(run(RageClick(), burst_factory(target="button.carousel-arrow", text=text))) == []
    assert fired(run(RageClick(), burst_factory(target="button.carousel-arrow"))) == [2]
    unsuppressed = RageClick(ignore_texts=[])
    assert fired(run(unsuppressed, burst_factory(target="button.carousel-arrow", text=text))) == [2]


def test_rage_click_ignore_texts_are_configurable_and_replace_the_defaults() -> None:
    detector = RageClick(ignore_texts=["Load more"])
    assert fired(run(detector, burst_factory(text=" LOAD MORE "))) == []
    assert fired(run(detector, burst_factory(text="+"))) == [2]


@pytest.mark.parametrize(
    ("pattern", "target"),
    [
        ("div.carousel > button", "div.carousel > button"),  # exact
        ("div.carousel", "div.carousel > button.arrow"),  # prefix
        (".toggle", "label.switch span.toggle"),  # substring
        ("#QTY", "input#qty-widget button"),  # case-insensitive
    ],
)
def test_rage_click_ignore_selectors(pattern: str, target: str) -> None:
    assert fired(run(RageClick(ignore_selectors=[pattern]), burst_factory(target=target))) == []
    assert fired(run(RageClick(), burst_factory(target=target))) == [2]
    assert fired(run(RageClick(ignore_selectors=["#other"]), burst_factory(target=target))) == [2]


def test_an_ignored_click_ends_a_run_without_counting() -> None:
    events = [
        click_factory(0),
        click_factory(200),
        click_factory(300, text="+"),  # a stepper right next to it
        click_factory(400),
        click_factory(600),
    ]
    assert fired(run(RageClick(), events)) == []
    assert fired(run(RageClick(), [*events, click_factory(800)])) == [5]


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (RageClick, "ignore_texts", "+"),
        (RageClick, "ignore_texts", ["+", 3]),
        (RageClick, "ignore_selectors", ".carousel"),
        (RageClick, "ignore_selectors", [""]),
        (RageClick, "ignore_selectors", {".carousel": True}),
        (DeadClick, "ignore_selectors", ".promo"),
        (DeadClick, "ignore_selectors", [None]),
    ],
)
def test_list_settings_must_be_lists_of_strings(cls: type, key: str, value: Any) -> None:
    name = f"{cls.name}.{key}".replace(".", r"\.")
    with pytest.raises(ConfigError, match=name):
        cls(**{key: value})
    with pytest.raises(ConfigError, match=name):
        build({cls.name: {key: value}})


def test_build_accepts_list_settings() -> None:
    rage, dead = build({"rage_click": {"ignore_selectors": [".carousel"], "ignore_texts": ["+"]},
                        "dead_click": {"ignore_selectors": ["#promo"]}})[:2]
    assert isinstance(rage, RageClick) and isinstance(dead, DeadClick)
    assert rage.ignore_selectors == (".carousel",) and rage.ignore_texts == ("+",)
    assert dead.ignore_selectors == ("#promo",)


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


def assert_dead_click_suppressed(target: str, twin: str, detector: Any = None, **fields: Any):
    """No reaction on ``target`` is expected; the same click on ``twin`` is a dead click."""
    detector = detector or DeadClick()
    assert detector.step({}, click_factory(0, target=target, **fields)) is None
    assert DeadClick().step({}, click_factory(0, target=twin)) is not None


@pytest.mark.parametrize(
    "target",
    [
        "a[target=_blank]",
        'a.partner[target="_blank"]',
        "A.Partner[TARGET='_BLANK']",
        "a[target=_blank] > span.label",  # the span inside the link was clicked
    ],
)
def test_dead_click_ignores_links_opening_a_new_tab(target: str) -> None:
    assert_dead_click_suppressed(target, twin="a.partner")


def test_dead_click_ignores_new_tab_and_download_flags_from_the_sdk() -> None:
    assert_dead_click_suppressed("a.partner", twin="a.partner", opens_new_tab=True)
    assert_dead_click_suppressed("a.invoice", twin="a.invoice", download=True)
    # only a real true counts: a sloppy "false" string is not a flag
    assert DeadClick().step({}, click_factory(0, target="a.x", opens_new_tab="false")) is not None


@pytest.mark.parametrize("target", ["a[download]", "a.manual[download='manual.pdf']"])
def test_dead_click_ignores_downloads(target: str) -> None:
    assert_dead_click_suppressed(target, twin="a.manual")


@pytest.mark.parametrize(
    "target", ["input[type=file]", "input#photo[type='file']", "form.upload input[type=FILE]"]
)
def test_dead_click_ignores_file_pickers(target: str) -> None:
    assert_dead_click_suppressed(target, twin="button#upload")


@pytest.mark.parametrize(
    "target",
    [
        "input#email",
        "input[type=text]",
        "input[type=checkbox]",
        "select#country",
        "textarea",
        "div[contenteditable]",
        "form#checkout > input[name=postcode]",
    ],
)
def test_dead_click_ignores_text_inputs_and_form_controls(target: str) -> None:
    assert_dead_click_suppressed(target, twin="input[type=submit]")


def test_dead_click_ignore_selectors() -> None:
    assert_dead_click_suppressed(
        "div#promo-banner", twin="div#promo-banner", detector=DeadClick(ignore_selectors=["#promo"])
    )
    assert DeadClick(ignore_selectors=["#promo"]).step({}, click_factory(0, target="#pay"))


def test_dead_click_skipped_clicks_leave_the_repeat_count_alone() -> None:
    events = [click_factory(0), click_factory(3000, target="input#q"), click_factory(6000)]
    signals = run(DeadClick(), events)
    assert [s.evidence["repeats"] for s in signals if s is not None] == [1, 2]


def test_dead_click_threshold_is_configurable() -> None:
    detector = DeadClick(threshold_ms=5000)
    assert detector.step({}, click_factory(0, reaction_ms=4999)) is None
    assert detector.step({}, click_factory(0, reaction_ms=5000)) is not None


# -- error click ---------------------------------------------------------------------


def error_factory(ts: int, message: str = "TypeError: x is undefined") -> dict[str, Any]:
    return event_factory("js_error", ts, message=message)


@pytest.mark.parametrize(("delay", "fires"), [(0, True), (1000, True), (1001, False)])
def test_error_click_fires_on_an_error_within_a_second_of_a_click(delay: int, fires: bool) -> None:
    signals = run(ErrorClick(), [click_factory(5000, target="#apply"), error_factory(5000 + delay)])
    assert fired(signals) == ([1] if fires else [])
    if fires:
        signal = signals[1]
        assert signal is not None
        assert (signal.detector, signal.ts, signal.action) == ("error_click", 5000 + delay, "nudge")
        assert signal.evidence == {
            "target": "#apply", "delay_ms": delay, "message": "TypeError: x is undefined",
            "repeats": 1,
        }


def test_error_click_fires_once_per_click_and_not_for_errors_without_a_click() -> None:
    events = [
        error_factory(0),  # on load: no click
        click_factory(5000),
        error_factory(5100),
        error_factory(5200),  # the same click's second error
        error_factory(9000),  # later, no click just before
    ]
    assert fired(run(ErrorClick(), events)) == [2]


def test_error_click_repeats_on_one_target_raise_the_strength() -> None:
    events = [e for t in (0, 5000, 10_000, 15_000) for e in (click_factory(t), error_factory(t + 50))]
    strengths = [s.strength for s in run(ErrorClick(), events) if s is not None]
    assert strengths == [0.6, 0.8, 1.0, 1.0]
    other = [click_factory(0), error_factory(50), click_factory(5000, target="#b"), error_factory(5050)]
    assert [s.strength for s in run(ErrorClick(), other) if s is not None] == [0.6, 0.6]


def test_error_click_window_is_configurable() -> None:
    events = [click_factory(0), error_factory(2500)]
    assert fired(run(ErrorClick(), events)) == []
    assert fired(run(ErrorClick(max_delay_ms=3000), events)) == [1]


# -- form struggle -------------------------------------------------------------------


def form_error_factory(ts: int, field: str = "postcode") -> dict[str, Any]:
    return event_factory("form_error", ts, field=field, message="bob@example is not valid")


def test_form_struggle_fires_once_on_the_third_error_of_one_field() -> None:
    signals = run(FormStruggle(), [form_error_factory(t) for t in (0, 10_000, 20_000, 30_000, 40_000)])
    assert fired(signals) == [2]
    signal = signals[2]
    assert signal is not None and signal.action == "nudge"
    assert signal.evidence == {"field": "postcode", "errors": 3, "span_ms": 20_000}  # no message


def test_form_struggle_a_typo_or_two_and_other_fields_do_not_fire() -> None:
    events = [
        form_error_factory(0, "email"),
        form_error_factory(5000, "postcode"),
        form_error_factory(9000, "email"),
        form_error_factory(12_000, "phone"),
    ]
    assert fired(run(FormStruggle(), events)) == []


def test_form_struggle_window_boundary_and_rearming() -> None:
    spread = [form_error_factory(t) for t in (0, 60_000, 120_001)]
    assert fired(run(FormStruggle(), spread)) == []
    assert fired(run(FormStruggle(), [*spread[:2], form_error_factory(120_000)])) == [2]
    # a new burst after the first has thinned out fires again
    again = [form_error_factory(t) for t in (0, 1, 2, 500_000, 500_001, 500_002)]
    assert fired(run(FormStruggle(), again)) == [2, 5]


def test_form_struggle_settings_and_bounded_fields() -> None:
    assert fired(run(FormStruggle(min_errors=2), [form_error_factory(t) for t in (0, 1)])) == [1]
    state: dict[str, Any] = {}
    run(FormStruggle(), [form_error_factory(t, field=f"f{t}") for t in range(50)], state)
    assert len(state["fields"]) == MAX_FIELDS


# -- navigation loop -----------------------------------------------------------------


def views_factory(*steps: tuple[int, str]) -> list[dict[str, Any]]:
    return [event_factory("page_view", ts, page=page) for ts, page in steps]


def test_navigation_loop_ping_pong_fires_once_on_the_fourth_view() -> None:
    events = views_factory(
        (0, "/cart"), (10_000, "/checkout"), (20_000, "/cart"), (30_000, "/checkout"),
        (40_000, "/cart"), (50_000, "/checkout"),
    )
    signals = run(NavigationLoop(), events)
    assert fired(signals) == [3]
    signal = signals[3]
    assert signal is not None
    assert signal.evidence == {"pattern": "ping_pong", "pages": ["/cart", "/checkout"] * 2}


def test_navigation_loop_slow_ping_pong_is_not_a_loop() -> None:
    events = views_factory((0, "/a"), (50_000, "/b"), (100_000, "/a"), (150_000, "/b"))
    assert fired(run(NavigationLoop(), events)) == []
    assert fired(run(NavigationLoop(window_ms=150_000), events)) == [3]


def test_navigation_loop_legit_quick_navigation_is_quiet() -> None:
    # product -> cart -> product once, quickly; then on through new pages
    glance = views_factory((0, "/p/1"), (5000, "/cart"), (6500, "/p/1"), (8000, "/c/bags"),
                           (9000, "/p/2"), (10_000, "/p/3"))
    assert fired(run(NavigationLoop(), glance)) == []
    # A -> B -> A -> C however fast, reloads, and query strings changing on one page
    other = views_factory((0, "/a"), (500, "/b"), (1000, "/a"), (1500, "/c"), (1600, "/c"),
                          (1700, "/c?sort=price"), (1800, "/c#reviews"))
    assert fired(run(NavigationLoop(), other)) == []


def test_navigation_loop_two_quick_backs_fire() -> None:
    events = views_factory((0, "/c/shoes"), (4000, "/p/1"), (5500, "/c/shoes"), (8000, "/p/2"),
                           (9000, "/c/shoes"))
    signals = run(NavigationLoop(), events)
    assert fired(signals) == [4]
    signal = signals[4]
    assert signal is not None and signal.evidence["pattern"] == "quick_backs"
    # the same moves, reading each product for 3 s: not quick
    slow = views_factory((0, "/c/shoes"), (4000, "/p/1"), (7000, "/c/shoes"), (8000, "/p/2"),
                         (11_000, "/c/shoes"))
    assert fired(run(NavigationLoop(), slow)) == []
    assert fired(run(NavigationLoop(quick_back_ms=3001), slow)) == [4]


def test_navigation_loop_rearms_after_a_new_page() -> None:
    loop = [(0, "/a"), (1, "/b"), (2, "/a"), (3, "/b"), (4, "/a")]
    events = views_factory(*loop, (10_000, "/c"), *[(20_000 + t, p) for t, p in loop])
    assert fired(run(NavigationLoop(), events)) == [3, 9]


# -- search struggle -----------------------------------------------------------------


def search_factory(ts: int, results: int, query: str = "shoes") -> dict[str, Any]:
    return event_factory("search", ts, query=query, results=results)


def test_search_struggle_two_empty_searches_in_a_row() -> None:
    signals = run(SearchStruggle(), [search_factory(0, 0), search_factory(60_000, 0)])
    assert fired(signals) == [1]
    signal = signals[1]
    assert signal is not None
    assert signal.evidence == {"pattern": "zero_results", "searches": 2}  # no query: PII


def test_search_struggle_one_empty_search_then_a_good_one_is_a_typo() -> None:
    events = [search_factory(0, 0), search_factory(8000, 12), search_factory(400_000, 0)]
    assert fired(run(SearchStruggle(), events)) == []
    # empty searches far apart are not in a row
    assert fired(run(SearchStruggle(), [search_factory(0, 0), search_factory(300_001, 0)])) == []


def test_search_struggle_rapid_reformulations() -> None:
    quick = [search_factory(t, 5, f"q{t}") for t in (0, 8000, 20_000, 30_000)]
    signals = run(SearchStruggle(), quick)
    assert fired(signals) == [2]
    signal = signals[2]
    assert signal is not None and signal.evidence["pattern"] == "rapid_reformulations"
    # the results page between searches is fine; going on from it breaks the run
    with_results = [quick[0], event_factory("page_view", 1000, page="/search"), *quick[1:3]]
    assert fired(run(SearchStruggle(), with_results)) == [3]
    engaged = [
        quick[0],
        event_factory("page_view", 1000, page="/search"),
        event_factory("page_view", 5000, page="/p/1"),
        *quick[1:3],
    ]
    assert fired(run(SearchStruggle(), engaged)) == []
    slow = [search_factory(t, 5) for t in (0, 20_001, 40_002)]
    assert fired(run(SearchStruggle(), slow)) == []


def test_search_struggle_fires_once_per_episode() -> None:
    events = [search_factory(t, 0) for t in (0, 5000, 10_000, 15_000)]
    events += [search_factory(600_000, 9), search_factory(700_000, 0), search_factory(710_000, 0)]
    assert fired(run(SearchStruggle(), events)) == [1, 6]


# -- http error burst ----------------------------------------------------------------


def http_factory(ts: int, status: int = 503, url: str = "/api/cart?user=42") -> dict[str, Any]:
    return event_factory("http_error", ts, url=url, status=status)


def test_http_error_burst_fires_once_on_the_third_5xx_within_30s() -> None:
    signals = run(HttpErrorBurst(), [http_factory(t) for t in (0, 10_000, 30_000, 31_000, 40_000)])
    assert fired(signals) == [2]
    signal = signals[2]
    assert signal is not None
    assert signal.evidence == {"errors": 3, "span_ms": 30_000, "status": 503, "url": "/api/cart"}


def test_http_error_burst_ignores_4xx_single_5xx_and_slow_errors() -> None:
    assert fired(run(HttpErrorBurst(), [http_factory(t, 404) for t in range(10)])) == []
    assert fired(run(HttpErrorBurst(), [http_factory(0), http_factory(1, 404), http_factory(2, 499)])) == []
    assert fired(run(HttpErrorBurst(), [http_factory(t) for t in (0, 20_000, 40_000)])) == []
    assert fired(run(HttpErrorBurst(min_status=400), [http_factory(t, 404) for t in (0, 1, 2)])) == [2]


def test_http_error_burst_rearms_after_the_burst() -> None:
    events = [http_factory(t) for t in (0, 1, 2, 3, 100_000, 100_001, 100_002)]
    assert fired(run(HttpErrorBurst(), events)) == [2, 6]


# -- excessive scroll ----------------------------------------------------------------


def scrolls_factory(ys: list[int], gap: int = 1000, page: str = "/c/bags") -> list[dict[str, Any]]:
    return [event_factory("scroll", i * gap, y=y, page=page) for i, y in enumerate(ys)]


ZIGZAG = [0, 800, 300, 900, 200, 1000, 100, 700, 150, 900, 100]


def test_excessive_scroll_fires_once_on_the_sixth_reversal() -> None:
    signals = run(ExcessiveScroll(), scrolls_factory(ZIGZAG))
    assert fired(signals) == [7]
    signal = signals[7]
    assert signal is not None
    assert signal.evidence == {"reversals": 6, "span_ms": 5000, "page": "/c/bags"}


def test_excessive_scroll_reading_with_a_couple_of_reversals_is_quiet() -> None:
    reading = [0, 600, 1200, 900, 1500, 2100, 1800, 2600, 3200]
    assert fired(run(ExcessiveScroll(), scrolls_factory(reading))) == []


def test_excessive_scroll_ignores_jitter_and_slow_reversals() -> None:
    jitter = [0, 1000, 950, 1010, 960, 1020, 970, 1030, 980, 1040, 990]
    assert fired(run(ExcessiveScroll(), scrolls_factory(jitter))) == []
    assert fired(run(ExcessiveScroll(min_travel_px=40), scrolls_factory(jitter))) != []
    assert fired(run(ExcessiveScroll(), scrolls_factory(ZIGZAG, gap=7000))) == []


def test_excessive_scroll_counts_per_page() -> None:
    half = len(ZIGZAG) // 2
    first = scrolls_factory(ZIGZAG[:half])
    second = [dict(e, page="/c/shoes", ts=e["ts"] + 10_000) for e in scrolls_factory(ZIGZAG[half:])]
    assert fired(run(ExcessiveScroll(), first + second)) == []
    view = event_factory("page_view", 5500, page="/c/bags")  # a reload starts afresh too
    same_page = [dict(e, ts=e["ts"] + 6000) for e in scrolls_factory(ZIGZAG[half:])]
    assert fired(run(ExcessiveScroll(), [*first, view, *same_page])) == []
    assert fired(run(ExcessiveScroll(), [*first, *same_page])) == [half + 2]


# -- settings of the new detectors ---------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "settings", "key"),
    [
        (ErrorClick, {"max_delay_ms": 0}, "error_click.max_delay_ms"),
        (ErrorClick, {"strength": 1.5}, "error_click.strength"),
        (FormStruggle, {"min_errors": 1}, "form_struggle.min_errors"),
        (FormStruggle, {"window_ms": "2m"}, "form_struggle.window_ms"),
        (NavigationLoop, {"loop_views": 3}, "navigation_loop.loop_views"),
        (NavigationLoop, {"quick_back_ms": 0}, "navigation_loop.quick_back_ms"),
        (NavigationLoop, {"min_quick_backs": 0}, "navigation_loop.min_quick_backs"),
        (NavigationLoop, {"window_ms": 10}, "navigation_loop.window_ms"),
        (SearchStruggle, {"min_zero_results": 0}, "search_struggle.min_zero_results"),
        (SearchStruggle, {"min_rapid_searches": 1}, "search_struggle.min_rapid_searches"),
        (SearchStruggle, {"rapid_gap_ms": -1}, "search_struggle.rapid_gap_ms"),
        (SearchStruggle, {"window_ms": True}, "search_struggle.window_ms"),
        (HttpErrorBurst, {"min_errors": 0}, "http_error_burst.min_errors"),
        (HttpErrorBurst, {"min_status": 600}, "http_error_burst.min_status"),
        (HttpErrorBurst, {"window_ms": 999}, "http_error_burst.window_ms"),
        (ExcessiveScroll, {"min_reversals": 1}, "excessive_scroll.min_reversals"),
        (ExcessiveScroll, {"window_ms": 0}, "excessive_scroll.window_ms"),
        (ExcessiveScroll, {"min_travel_px": -1}, "excessive_scroll.min_travel_px"),
    ],
)
def test_new_detectors_bad_config_names_the_key(cls: type, settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(**settings)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build({cls.name: settings})


def test_registry_order() -> None:
    assert list(REGISTRY) == [
        "rage_click", "dead_click", "error_click", "form_struggle", "navigation_loop",
        "search_struggle", "http_error_burst", "excessive_scroll", "checkout_failure",
        "help_request",
    ]


def test_new_detectors_ask_for_nudges_with_strengths_in_range() -> None:
    cases = {
        ErrorClick: [click_factory(0), error_factory(10)],
        FormStruggle: [form_error_factory(t) for t in range(3)],
        NavigationLoop: views_factory((0, "/a"), (1, "/b"), (2, "/a"), (3, "/b")),
        SearchStruggle: [search_factory(0, 0), search_factory(1, 0)],
        HttpErrorBurst: [http_factory(t) for t in range(3)],
        ExcessiveScroll: scrolls_factory(ZIGZAG),
    }
    for cls, events in cases.items():
        signals = [s for s in run(cls(), events) if s is not None]
        assert len(signals) == 1, cls
        assert signals[0].action == "nudge" and 0 < signals[0].strength <= 1


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
