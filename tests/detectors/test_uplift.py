"""Newcombe's hybrid score interval, checked against the paper's own worked examples."""

from __future__ import annotations

import math

import pytest

from detectors.uplift import uplift, wilson

# Newcombe RG (1998), "Interval estimation for the difference between independent
# proportions: comparison of eleven methods", Stat Med 17:873-890, Table II, method 10
# (score interval for each proportion, no continuity correction): (a), (b), (d)-(h).
NEWCOMBE_TABLE_II = [
    ((56, 70), (48, 80), 0.0524, 0.3339),
    ((9, 10), (3, 10), 0.1705, 0.8090),
    ((5, 56), (0, 29), -0.0381, 0.1926),
    ((0, 10), (0, 20), -0.1611, 0.2775),
    ((0, 10), (0, 10), -0.2775, 0.2775),
    ((10, 10), (0, 20), 0.6791, 1.0000),
    ((10, 10), (0, 10), 0.6075, 1.0000),
]


@pytest.mark.parametrize(("treated", "holdout", "low", "high"), NEWCOMBE_TABLE_II)
def test_newcombe_1998_table_ii(
    treated: tuple[int, int], holdout: tuple[int, int], low: float, high: float
) -> None:
    result = uplift(treated=treated, holdout=holdout)
    assert result["low"] == pytest.approx(low, abs=5e-5)
    assert result["high"] == pytest.approx(high, abs=5e-5)
    assert result["estimate"] == pytest.approx(treated[0] / treated[1] - holdout[0] / holdout[1], abs=1e-6)
    assert result["low"] <= result["estimate"] <= result["high"]


def test_wilson_single_proportion_newcombe_1998b() -> None:
    # Newcombe (1998b) "Two-sided confidence intervals for the single proportion",
    # Table I, method 3: 81/263 -> 0.2553 to 0.3662.
    low, high = wilson(81, 263, 1.959964)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_counts_and_rates_are_reported() -> None:
    result = uplift(treated=(56, 70), holdout=(48, 80))
    assert result["treated"] == {"converted": 56, "sessions": 70, "rate": 0.8}
    assert result["holdout"] == {"converted": 48, "sessions": 80, "rate": 0.6}
    assert result["confidence"] == 0.95


def test_a_lower_confidence_gives_a_narrower_interval() -> None:
    wide = uplift(treated=(56, 70), holdout=(48, 80), confidence=0.99)
    narrow = uplift(treated=(56, 70), holdout=(48, 80), confidence=0.90)
    assert wide["low"] < narrow["low"] < narrow["estimate"] < narrow["high"] < wide["high"]


def test_the_interval_is_symmetric_under_swapping_the_groups() -> None:
    ab = uplift(treated=(30, 110), holdout=(12, 90))
    ba = uplift(treated=(12, 90), holdout=(30, 110))
    assert ab["estimate"] == -ba["estimate"]
    assert ab["low"] == pytest.approx(-ba["high"]) and ab["high"] == pytest.approx(-ba["low"])


@pytest.mark.parametrize("empty", ["treated", "holdout"])
def test_an_empty_group_gives_nulls_not_nan(empty: str) -> None:
    groups = {"treated": (3, 10), "holdout": (4, 10), empty: (0, 0)}
    result = uplift(treated=groups["treated"], holdout=groups["holdout"])
    assert result["estimate"] is None and result["low"] is None and result["high"] is None
    assert result[empty]["rate"] is None


def test_bounds_stay_within_minus_one_and_one() -> None:
    for treated in ((0, 1), (1, 1), (0, 3), (3, 3)):
        for holdout in ((0, 1), (1, 1), (2, 5)):
            result = uplift(treated=treated, holdout=holdout)
            assert -1.0 <= result["low"] <= result["estimate"] <= result["high"] <= 1.0
            assert all(math.isfinite(result[k]) for k in ("low", "high", "estimate"))
