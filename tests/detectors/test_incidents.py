"""Fleet-wide incident rules on synthetic observation streams (no simulator, no Kafka).

The traffic here is Poisson per key, with sessions that sometimes signal twice; the
simulator-driven scenarios (outage, clean runs) are in tests/streamer/test_incidents.py.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator

import orjson
import pytest

from detectors.errors import ConfigError
from detectors.incidents import DAY_MS, IncidentBook, IncidentDetector, poisson_sf
from detectors.session import Engine

MIN = 60_000
HOUR = 60 * MIN
#: Affected sessions per minute of a shop's usual friction, by (route, failure).
USUAL = {
    ("/p/*", "dead_click"): 12.0,
    ("/checkout", "checkout_failure"): 4.0,
    ("/p/*", "error_click"): 3.0,
    ("/search", "search_struggle"): 2.0,
    ("/checkout", "form_struggle"): 2.0,
    ("/c/*", "navigation_loop"): 1.5,
    ("/cart", "dead_click"): 0.5,
    ("/help/**", "help_request"): 0.3,
    ("/", "rage_click"): 0.05,
}

Obs = tuple[int, str, str, str]


def traffic_factory(
    seed: int, hours: float, rates: dict[tuple[str, str], float] = USUAL, *,
    start: int = 0, surge: tuple[tuple[str, str], int, int, float] | None = None,
) -> list[Obs]:
    """Poisson sessions per key; 30% of them signal again a few seconds later.

    ``surge`` = (key, t0, t1, rate per minute) adds an outage's sessions on one key.
    """
    rng = random.Random(seed)
    out: list[Obs] = []
    end = start + int(hours * HOUR)

    def sessions(key: tuple[str, str], t0: int, t1: int, per_min: float, tag: str) -> None:
        t, n = float(t0), 0
        while True:
            t += rng.expovariate(per_min / MIN)
            if t >= t1:
                return
            sid = f"{tag}-{key[1]}-{n}"
            n += 1
            out.append((int(t), key[0], key[1], sid))
            if rng.random() < 0.3:  # the same customer again: must count once
                out.append((int(t) + rng.randint(1000, 20_000), key[0], key[1], sid))

    for key, per_min in rates.items():
        sessions(key, start, end, per_min, f"u{seed}")
    if surge is not None:
        key, t0, t1, per_min = surge
        sessions(key, t0, t1, per_min, f"o{seed}")
    # Partitions are consumed at different speeds: a few seconds out of order.
    out.sort(key=lambda o: o[0] + rng.randint(0, 3000))
    return out


def run(observations: list[Obs], detector: IncidentDetector | None = None,
        until: int | None = None) -> tuple[list[dict], IncidentBook]:
    book = IncidentBook(detector or IncidentDetector())
    changes = [c for ts, route, failure, sid in observations
               for c in book.observe(ts, route, failure, sid)]
    if until is not None:
        changes += book.advance(until)
    return changes, book


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_outage_opens_one_incident_within_two_minutes_and_closes_after(seed: int) -> None:
    t0, t1 = 2 * HOUR, 2 * HOUR + 10 * MIN
    key = ("/checkout", "checkout_failure")
    obs = traffic_factory(seed, 3, surge=(key, t0, t1, 40.0))
    changes, book = run(obs, until=3 * HOUR)
    assert [(c["kind"], c["key"]) for c in changes] == [
        ("incident_open", "/checkout|checkout_failure"),
        ("incident_close", "/checkout|checkout_failure"),
    ]
    opened, closed = changes
    assert t0 <= opened["ts"] <= t0 + 2 * MIN
    assert opened["rule"] == "rate" and opened["count"] > opened["baseline"] * 2
    assert t1 < closed["ts"] <= t1 + 15 * MIN
    assert closed["incident_id"] == opened["incident_id"] and closed["opened_ts"] == opened["ts"]
    assert book.open_keys() == []


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_ordinary_noise_opens_nothing(seed: int) -> None:
    changes, _ = run(traffic_factory(seed, 8))
    assert changes == []


def test_nothing_opens_while_learning() -> None:
    # A fresh detector knows no baseline: the first traffic it sees is not an incident.
    changes, _ = run(traffic_factory(5, 0.5, {k: r * 5 for k, r in USUAL.items()}))
    assert changes == []


def test_a_failure_never_seen_opens_when_it_bursts() -> None:
    obs = traffic_factory(6, 2)
    burst = [(90 * MIN + i * 7000, "/cart", "http_error_burst", f"b{i}") for i in range(8)]
    changes, _ = run(sorted(obs + burst), until=3 * HOUR)
    assert [(c["kind"], c["key"]) for c in changes] == [
        ("incident_open", "/cart|http_error_burst"), ("incident_close", "/cart|http_error_burst")]
    # min_count = 5 sessions "in the last minute": 5 or 6 of them within seconds.
    assert burst[4][0] <= changes[0]["ts"] <= burst[5][0]


def test_one_customer_retrying_is_not_an_incident() -> None:
    obs = traffic_factory(7, 2)
    retries = [(90 * MIN + i * 2000, "/checkout", "checkout_failure", "the-same-one")
               for i in range(50)]
    changes, _ = run(sorted(obs + retries))
    assert changes == []


def _quiet_days(seed: int, days: int) -> list[Obs]:
    """A small shop: a few signals of three kinds a day."""
    rng = random.Random(seed)
    return sorted(
        (d * DAY_MS + rng.randrange(DAY_MS), route, failure, f"q{d}-{failure}-{n}")
        for d in range(days)
        for route, failure in (("/p/*", "rage_click"), ("/c/*", "dead_click"), ("/search", "search_struggle"))
        for n in range(rng.randint(10, 30))
    )


def test_sparse_a_new_failure_four_times_in_a_day_opens_one() -> None:
    quiet = _quiet_days(8, 11)
    new = [(8 * DAY_MS + h * HOUR, "/checkout", "http_error_burst", f"n{h}") for h in (2, 7, 13, 19)]
    changes, _ = run(sorted(quiet + new), until=11 * DAY_MS)
    assert [(c["kind"], c["key"], c["rule"]) for c in changes] == [
        ("incident_open", "/checkout|http_error_burst", "sparse"),
        ("incident_close", "/checkout|http_error_burst", "sparse"),
    ]
    opened, closed = changes
    assert opened["ts"] == new[-1][0] and opened["count"] == 4
    assert closed["ts"] == new[-1][0] + DAY_MS  # a day without it


def test_sparse_three_times_or_a_usual_rate_opens_nothing() -> None:
    quiet = _quiet_days(9, 11)
    three = [(8 * DAY_MS + h * HOUR, "/checkout", "http_error_burst", f"n{h}") for h in (2, 9, 19)]
    assert run(sorted(quiet + three))[0] == []
    # The same four a day, every day since the start: that is this shop's normal.
    usual = [(d * DAY_MS + h * HOUR, "/checkout", "http_error_burst", f"u{d}-{h}")
             for d in range(11) for h in (2, 7, 13, 19)]
    assert run(sorted(quiet + usual))[0] == []


def test_sparse_needs_a_week_of_history() -> None:
    # Four on the seventh day: six days were watched, less than a week before the window.
    quiet = _quiet_days(10, 8)
    new = [(6 * DAY_MS + h * HOUR, "/checkout", "http_error_burst", f"n{h}") for h in (2, 7, 13, 19)]
    assert run(sorted(quiet + new))[0] == []


def test_close_time_does_not_depend_on_when_time_is_advanced() -> None:
    t0, t1 = 2 * HOUR, 2 * HOUR + 10 * MIN
    key = ("/checkout", "checkout_failure")
    obs = [o for o in traffic_factory(3, 2.5, {key: 4.0}, surge=(key, t0, t1, 40.0))
           if o[0] < t1]
    coarse, _ = run(obs, until=4 * HOUR)
    book = IncidentBook(IncidentDetector())
    fine = [c for ts, r, f, s in obs for c in book.observe(ts, r, f, s)]
    for ts in range(t1, 4 * HOUR, 1000):
        fine += book.advance(ts)
    assert coarse == fine and [c["kind"] for c in fine] == ["incident_open", "incident_close"]


def test_state_is_small_plain_json_and_deterministic() -> None:
    obs = traffic_factory(4, 6, {k: r * 4 for k, r in USUAL.items()},
                          surge=(("/checkout", "checkout_failure"), 3 * HOUR, 3 * HOUR + 20 * MIN, 80.0))
    changes, book = run(obs)
    again, other = run(obs)
    assert changes == again and changes  # same input, same records and ids
    for key, state in book.states.items():
        raw = orjson.dumps(state)
        assert len(raw) < 1200, (key, len(raw))
        assert orjson.loads(raw) == state == other.states[key]


def test_observing_does_not_touch_settings_and_late_observations_are_weighed() -> None:
    detector = IncidentDetector()
    before = copy.deepcopy(vars(detector))
    a = detector.new_state("/", "rage_click", 0)
    b = detector.new_state("/", "rage_click", 0)
    times = [10_000, 40_000, 25_000, 70_000, 65_000]
    for i, ts in enumerate(times):
        detector.observe(a, ts, f"s{i}")
    for i, ts in sorted(enumerate(times), key=lambda it: it[1]):
        detector.observe(b, ts, f"s{i}")
    assert a["short"] == pytest.approx(b["short"]) and a["history"] == pytest.approx(b["history"])
    assert vars(detector) == before


def test_ignored_failures_are_not_observed() -> None:
    book = IncidentBook(IncidentDetector())
    assert book.observe(0, "/", "anomalous_session", "s") == [] and book.states == {}


@pytest.mark.parametrize(("section", "key"), [
    ({"short_ms": 10}, "incidents.short_ms"),
    ({"short_ms": 60_000.5}, "incidents.short_ms"),
    ({"min_count": 0}, "incidents.min_count"),
    ({"ratio": 0.5}, "incidents.ratio"),
    ({"alpha": 0.5}, "incidents.alpha"),
    ({"alpha": "small"}, "incidents.alpha"),
    ({"floor_per_day": 0}, "incidents.floor_per_day"),
    ({"sparse_count": 1}, "incidents.sparse_count"),
    ({"sparse_count": 17}, "incidents.sparse_count"),
    ({"learn_ms": True}, "incidents.learn_ms"),
    ({"baseline_ms": 60_000, "short_ms": 60_000}, "short_ms"),
    ({"ignore": "anomalous_session"}, "incidents.ignore"),
    ({"treshold": 3}, "incidents.treshold"),
])
def test_bad_settings_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        IncidentDetector.from_config(section)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Engine.from_config({"incidents": section})  # so a worker fails at start


def test_engine_builds_the_incident_rules_from_config() -> None:
    engine = Engine.from_config({"incidents": {"min_count": 3, "ignore": []}})
    assert engine.incidents.min_count == 3 and engine.incidents.ignore == frozenset()


def test_poisson_tail() -> None:
    assert poisson_sf(1, 2.0) == pytest.approx(1 - 0.1353352832366127)
    assert poisson_sf(15, 3.0) == pytest.approx(6.70386e-7, rel=1e-5)
    assert poisson_sf(5000, 4000.0) < 1e-40
    values = [poisson_sf(k, 7.5) for k in range(40)]
    assert values == sorted(values, reverse=True)


def _pairs(items: list[Obs]) -> Iterator[tuple[Obs, Obs]]:
    return zip(items, items[1:], strict=False)
