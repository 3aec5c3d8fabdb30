"""The uplift-targeted policy against the rules, in the closed loop, at small scale.

Seeded and deterministic: the same sessions, engine and decisions on every run, so the
assertions are about the mechanism (what each arm does, and the truth of it from the
simulator's potential outcomes), not about a timed or lucky figure. The full
experiment, with its intervals, is ``python -m benchmarks.uplift_policy``.
"""

from __future__ import annotations

import pytest

from detectors.session import Engine
from streamer.tools import experiment
from streamer.tools.experiment import SessionResult
from streamer.tools.simulate import generate

SESSIONS = 6000
CONFIG = {"policy": {"holdout_share": 0.2, "uplift_share": 0.5}, "model": {"uplift_warmup": 100}}


def run_factory(effects: str, effect: float = 0.0) -> list[SessionResult]:
    sessions = list(generate(seed=7, sessions=SESSIONS, effects=effects, nudge_effect=effect,
                             holdout_share=0.2))
    return experiment.run(sessions, Engine.from_config(CONFIG))


@pytest.fixture(scope="module")
def heterogeneous() -> list[SessionResult]:
    return run_factory("heterogeneous")


@pytest.fixture(scope="module")
def uniform() -> list[SessionResult]:
    return run_factory("uniform", 0.1)


def _arm(results: list[SessionResult], arm: str) -> list[SessionResult]:
    return [r for r in results if r.arm == arm]


def _gained_per_intervention(results: list[SessionResult]) -> float:
    """True conversions gained (potential outcomes) per intervention shown."""
    return sum(r.p[r.shown] - r.p["none"] for r in results if r.p) / sum(r.interventions for r in results)


@pytest.mark.parametrize("which", ["heterogeneous", "uniform"])
def test_help_requests_are_handed_off_in_every_session_of_both_arms(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Issue 13, acceptance 3: holdout on, targeting on, a person for everyone who asks."""
    results: list[SessionResult] = request.getfixturevalue(which)
    for arm in ("rules", "targeted"):
        asked = [r for r in _arm(results, arm) if r.asked_for_help]
        assert len(asked) > 50
        assert all(r.shown == "handoff" for r in asked), arm
    held_and_asked = [r for r in results if r.asked_for_help and r.holdout]
    assert held_and_asked and all(r.shown == "handoff" for r in held_and_asked)


def test_the_world_answers_what_reached_the_customer(heterogeneous: list[SessionResult]) -> None:
    assert len(heterogeneous) == SESSIONS
    assert {r.arm for r in heterogeneous} == {"rules", "targeted"}
    for r in heterogeneous:
        assert r.converted == r.y[r.shown], r.session_id
        if r.holdout and not r.asked_for_help:
            assert r.shown == "none" and r.interventions == 0
    # the arms are the same traffic: as many sessions the rules would act on in each
    rules, targeted = (sum(r.eligible for r in _arm(heterogeneous, a)) for a in ("rules", "targeted"))
    assert abs(rules - targeted) < 0.1 * (rules + targeted)


def test_targeting_avoids_what_does_not_help_and_gains_more_per_intervention(
    heterogeneous: list[SessionResult],
) -> None:
    rules, targeted = _arm(heterogeneous, "rules"), _arm(heterogeneous, "targeted")
    assert sum(r.avoided for r in rules) == 0 < sum(r.avoided for r in targeted)
    assert sum(r.interventions for r in targeted) < sum(r.interventions for r in rules)
    # the truth, from the potential outcomes: its decisions help more, per session decided
    # for and per intervention shown
    report = experiment.compare(heterogeneous)
    assert report["arms"]["targeted"]["true_uplift"] > report["arms"]["rules"]["true_uplift"] + 0.01
    assert _gained_per_intervention(targeted) > _gained_per_intervention(rules)
    # it learned where: browsers with click trouble are left alone more than the rules do
    def left_alone(results: list[SessionResult]) -> float:
        browsing = [r for r in results if r.eligible and not r.holdout and not r.asked_for_help
                    and r.p and r.p["nudge"] < r.p["none"]]
        return sum(r.shown == "none" for r in browsing) / len(browsing)

    # (at this size it is sure of little there, so the rules' nudge mostly stands: it
    # overrides the rules only where it is sure; Thompson sampling left >10% alone)
    assert left_alone(targeted) > left_alone(rules)
    assert report["arms"]["targeted"]["estimated_sessions"] > 100


def test_without_heterogeneity_targeting_decides_like_the_rules(uniform: list[SessionResult]) -> None:
    """Everyone gains the same from any intervention: nothing to target, nothing lost."""
    report = experiment.compare(uniform)
    rules, targeted = report["arms"]["rules"], report["arms"]["targeted"]
    assert targeted["true_uplift"] == pytest.approx(rules["true_uplift"], abs=0.01)
    assert targeted["decided_for"] > 0.9 * targeted["eligible"]
    text = experiment.format_comparison(report)
    assert "conversion targeted - rules, eligible not held out" in text


# -- the all-sessions difference: post-stratified and diluted -----------------------------
def _result(arm: str, stratum: str, converted: bool, *, eligible: bool = True,
            holdout: bool = False, shown: str = "none") -> SessionResult:
    return SessionResult("s", arm, holdout, shown=shown, eligible=eligible, converted=converted,
                         stratum=stratum)


def _sessions(arm: str, stratum: str, n: int, converted: int, **kw: object) -> list[SessionResult]:
    return [_result(arm, stratum, i < converted, **kw) for i in range(n)]  # type: ignore[arg-type]


def test_the_strata_are_read_before_anything_was_done(heterogeneous: list[SessionResult]) -> None:
    for r in heterogeneous:
        assert r.stratum.startswith("acts/" if r.eligible else "quiet/"), r
        if r.eligible:
            assert r.stratum.split("/")[1] == ("held" if r.holdout else "shown")


def test_outside_the_trigger_both_arms_do_the_same(
    heterogeneous: list[SessionResult], uniform: list[SessionResult]
) -> None:
    """The premise of the diluted difference, in the closed loop: a session the rules
    would not act on, or held out, gets nothing (or the handoff it asked for) in either
    arm, so only the triggered sessions can differ."""
    for results in (heterogeneous, uniform):
        outside = [r for r in results if not (r.eligible and not r.holdout)]
        assert len(outside) > SESSIONS // 2
        assert all(experiment.untouched(r) for r in outside)
        assert experiment.compare(results)["difference_diluted"]["outside_differs"] == 0


def test_post_stratification_takes_out_the_luck_of_the_split() -> None:
    """The targeted arm got more of a stratum that converts anyway: the plain difference
    credits it; within each stratum there is no difference, and the post-stratified
    estimate says so."""
    arms = {
        "rules": _sessions("rules", "quiet/stage:3/paid:1", 100, 90, eligible=False)
        + _sessions("rules", "quiet/stage:0/paid:0", 300, 30, eligible=False),
        "targeted": _sessions("targeted", "quiet/stage:3/paid:1", 200, 180, eligible=False)
        + _sessions("targeted", "quiet/stage:0/paid:0", 200, 20, eligible=False),
    }
    plain = (200 / 400) - (120 / 400)
    assert plain == pytest.approx(0.2)
    adjusted = experiment.stratified_difference(arms)
    assert adjusted["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert adjusted["low"] < 0 < adjusted["high"] and adjusted["strata"] == 2


def test_the_diluted_difference_is_the_triggered_one_times_its_share() -> None:
    arms = {
        "rules": _sessions("rules", "acts/shown/stage:3/checkout_failure", 200, 100)
        + _sessions("rules", "quiet/stage:1/paid:0", 600, 50, eligible=False),
        "targeted": _sessions("targeted", "acts/shown/stage:3/checkout_failure", 200, 140)
        + _sessions("targeted", "quiet/stage:1/paid:0", 600, 90, eligible=False),
    }
    diluted = experiment.diluted_difference(arms)
    assert diluted["share"] == pytest.approx(0.25)
    assert diluted["estimate"] == pytest.approx(0.25 * 0.2)  # the quiet ones' luck is ignored
    inside = experiment.stratified_difference({a: rs[:200] for a, rs in arms.items()})
    assert diluted["low"] == pytest.approx(0.25 * inside["low"], abs=1e-6)
    assert diluted["outside_differs"] == 0
    # a session outside the trigger that got something breaks the premise, and it shows
    arms["targeted"].append(_result("targeted", "quiet/stage:1/paid:0", True, eligible=False,
                                    shown="nudge"))
    assert experiment.diluted_difference(arms)["outside_differs"] == 1


def test_small_strata_are_pooled_with_their_family_then_with_everything_small() -> None:
    arms = {
        arm: _sessions(arm, "acts/shown/stage:3/form_struggle", 80, 40)
        + _sessions(arm, "acts/shown/stage:1/rage_click", 20, 2)
        + _sessions(arm, "acts/shown/stage:1/dead_click", 40, 4)
        + _sessions(arm, "acts/held/stage:1/dead_click", 10, 1)
        for arm in ("rules", "targeted")
    }
    into = experiment._pooled(arms, 50)
    assert into["acts/shown/stage:3/form_struggle"] == "acts/shown/stage:3/form_struggle"
    assert into["acts/shown/stage:1/rage_click"] == into["acts/shown/stage:1/dead_click"] == "acts/shown"
    assert into["acts/held/stage:1/dead_click"] == "small"


def test_the_estimate_is_compared_where_the_holdout_holds() -> None:
    """A help request in the holdout hash is handed off all the same: counted as held
    out it would pull the realised uplift down by its own gain. The model's estimate,
    the truth and the realised uplift are compared without those sessions."""
    p = {"none": 0.4, "nudge": 0.5, "handoff": 0.65}

    def decided(holdout: bool, converted: bool, *, helped: bool = False) -> SessionResult:
        shown = "handoff" if helped or not holdout else "none"
        return SessionResult("s", "targeted", holdout, decided="handoff", shown=shown,
                             converted=converted, p=p, estimate=0.25, asked_for_help=helped)

    results = ([decided(False, i < 65) for i in range(100)] + [decided(True, i < 40) for i in range(100)]
               + [decided(True, True, helped=True) for _ in range(100)])
    report = experiment.arm_report(results)
    assert report["estimated_sessions"] == 200
    assert report["realised_uplift_where_estimated"]["estimate"] == pytest.approx(0.25)
    assert report["true_uplift_where_estimated"] == pytest.approx(0.25)
