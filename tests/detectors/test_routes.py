"""Page routes: a bounded label set whatever the URLs, configurable, never a raw URL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.errors import ConfigError
from detectors.routes import DEFAULT_PATTERNS, OTHER, Routes
from detectors.session import Engine, SessionState


@pytest.mark.parametrize(("page", "route"), [
    ("/", "/"),
    ("", OTHER),
    ("/?utm_source=mail", "/"),
    ("/search?q=rain+jacket", "/search"),
    ("/c/shoes", "/c/*"),
    ("/c/shoes/running", OTHER),
    ("/p/sho-1234", "/p/*"),
    ("/p/sho-1234/", "/p/*"),
    ("//p//sho-1234", "/p/*"),
    ("/product/red-shoe/42", "/product/**"),
    ("/cart#items", "/cart"),
    ("/checkout", "/checkout"),
    ("/checkout/payment/3ds", "/checkout/**"),
    ("/order/confirmed", "/order/**"),
    ("/account/reset-password?email=a@b.c", "/account/**"),
    ("/help", "/help/**"),
    ("https://shop.example/CART", "/cart"),
    ("/admin/users/42", OTHER),
])
def test_default_shop_routes(page: str, route: str) -> None:
    assert Routes().route(page) == route


def test_first_match_wins_and_globs_stay_in_one_segment() -> None:
    routes = Routes(["/p/special", "/p/*", "/docs/v?/**", "/img/*.jpg"])
    assert routes.route("/p/special") == "/p/special"
    assert routes.route("/p/other") == "/p/*"
    assert routes.route("/docs/v2/intro/setup") == "/docs/v?/**"
    assert routes.route("/docs/v10/intro") == OTHER
    assert routes.route("/img/12.jpg") == "/img/*.jpg"
    assert routes.route("/img/a/12.jpg") == OTHER
    assert routes.labels == ("/p/special", "/p/*", "/docs/v?/**", "/img/*.jpg", OTHER)


@pytest.mark.parametrize(("section", "message"), [
    ({"patterns": "/cart"}, "must be a list"),
    ({"patterns": []}, "allowed 1 to 64"),
    ({"patterns": [f"/p{i}" for i in range(65)]}, "allowed 1 to 64"),
    ({"patterns": ["cart"]}, "must start with '/'"),
    ({"patterns": ["/a//b"]}, "empty segment"),
    ({"patterns": ["/a/"]}, "empty segment"),
    ({"patterns": ["/**/x"]}, "only as the last segment"),
    ({"patterns": ["/a**"]}, "whole segment"),
    ({"patterns": ["/a|b"]}, "no '|'"),
    ({"patterns": ["/cart", "/cart"]}, "only once"),
    ({"patterns": [3]}, "must be a string"),
    ({"pattern": ["/"]}, "unknown key routes.pattern"),
])
def test_bad_config_names_the_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="routes") as info:
        Routes.from_config(section)
    assert message in str(info.value)


def test_engine_reads_the_routes_section() -> None:
    with pytest.raises(ConfigError, match="routes.patterns"):
        Engine.from_config({"routes": {"patterns": ["nope"]}})
    engine = Engine.from_config({"routes": {"patterns": ["/pay"]}})
    assert engine.routes.patterns == ("/pay",)


def test_signal_records_carry_the_route_of_the_page() -> None:
    engine = Engine.from_config({"model": {"enabled": False}})
    state = SessionState("s1")
    fail = {"session_id": "s1", "type": "checkout_failed", "ts": 1, "page": "/checkout?x=1"}
    engine.step(state, fail)
    records = engine.step(state, dict(fail, ts=2)).records()
    signal = records[0]
    assert signal["kind"] == "signal" and signal["route"] == "/checkout"
    assert {"session_id", "ts", "detector", "strength", "evidence"} <= set(signal)
    # An event without a page: the session's current page.
    state = SessionState("s2")
    engine.step(state, {"session_id": "s2", "type": "page_view", "ts": 1, "page": "/p/abc"})
    help_ = engine.step(state, {"session_id": "s2", "type": "help_request", "ts": 2}).records()
    assert help_[0]["route"] == "/p/*"


@given(st.text(max_size=300))
def test_any_page_maps_to_a_label(page: str) -> None:
    routes = Routes()
    assert routes.route(page) in (*DEFAULT_PATTERNS, OTHER)
