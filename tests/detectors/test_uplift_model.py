"""The uplift model on its own: the context, learning effects both ways, deciding with
its uncertainty (Thompson sampling), the warm-up, pickling."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.model import features
from detectors.uplift_model import ACTIONS, UpliftModel, context, payment_class

PAYMENT = ["kind:checkout_failure", "stage:3", "kind:checkout_failure/stage:3", "payment:decline"]
BROWSING = ["kind:dead_click", "stage:1", "kind:dead_click/stage:1"]
#: P(convert) by context and action: a nudge helps at a declined payment, a handoff more;
#: a nudge annoys a browser, a handoff does nothing for one.
TRUTH = {
    tuple(PAYMENT): {"none": 0.40, "nudge": 0.62, "handoff": 0.75},
    tuple(BROWSING): {"none": 0.08, "nudge": 0.04, "handoff": 0.08},
}


def trained_factory(seed: int = 1, rounds: int = 1500, *, warmup: int = 100) -> UpliftModel:
    """A model that saw every action in both contexts, as a holdout and the rules would
    show it them (interleaved, as outcomes arrive)."""
    rng = random.Random(seed)
    model = UpliftModel(warmup=warmup, seed=seed)
    for _ in range(rounds):
        for keys, p in TRUTH.items():
            action = rng.choice(ACTIONS)
            model.learn(list(keys), action, rng.random() < p[action])
    return model


def test_context_reads_the_decision_features() -> None:
    x = features({"checkout_failed": 2}, {"checkout_failure": 1}, friction=1.7, duration_ms=90_000,
                 pages=5, interventions=1, stage=3, payments=["decline", "technical"])
    assert context(x, "checkout_failure") == [
        "kind:checkout_failure", "stage:3", "kind:checkout_failure/stage:3", "payment:decline",
        "payment:technical", "failed:2", "score:2", "shown:before"]
    x = features({}, {}, friction=0.2, duration_ms=0, pages=1, interventions=0)
    assert context(x, "rage_click") == ["kind:rage_click", "stage:0", "kind:rage_click/stage:0",
                                        "score:0"]


@pytest.mark.parametrize(("value", "cls"), [("card_declined", "decline"), ("3ds_failed", "decline"),
                                            ("avs_mismatch", "address"), ("TIMEOUT", "technical"),
                                            (503, "technical"), (404, None), ("weird", None),
                                            (None, None), (True, None)])
def test_payment_classes(value: object, cls: str | None) -> None:
    assert payment_class(value) == cls


def test_it_learns_uplift_both_ways() -> None:
    model = trained_factory()
    for keys, p in TRUTH.items():
        for action in ("nudge", "handoff"):
            estimate, sd = model.estimate(list(keys), action)
            assert estimate == pytest.approx(p[action] - p["none"], abs=max(0.06, 2.5 * sd)), (keys, action)
            assert 0 < sd < 0.1
    assert model.estimate(PAYMENT, "none") == (0.0, 0.0)
    assert model.probability(PAYMENT, "none") == pytest.approx(0.40, abs=0.06)


def test_choosing_takes_the_best_action_and_leaves_harm_alone() -> None:
    model = trained_factory()
    at_payment = [model.choose(PAYMENT, ("nudge", "handoff"), handoff_cost=0.02)[0] for _ in range(200)]
    assert at_payment.count("handoff") > 160
    # only a nudge allowed (e.g. the handoff is not among the allowed actions): it nudges
    assert {model.choose(PAYMENT, ("nudge",))[0] for _ in range(50)} == {"nudge"}
    browsing = [model.choose(BROWSING, ("nudge", "handoff"), handoff_cost=0.02)[0] for _ in range(200)]
    assert browsing.count(None) > 150  # nothing: a nudge annoys, a handoff is no help
    chosen, estimate = model.choose(PAYMENT, ("handoff",))
    assert chosen == "handoff" and estimate == model.estimate(PAYMENT, "handoff")[0]
    assert model.choose(PAYMENT, ()) == (None, None)


def test_a_high_handoff_cost_prefers_the_nudge() -> None:
    model = trained_factory()
    picks = [model.choose(PAYMENT, ("nudge", "handoff"), handoff_cost=0.5)[0] for _ in range(100)]
    assert picks.count("nudge") > 90


def test_an_untried_action_is_uncertain_and_explored() -> None:
    rng = random.Random(2)
    model = UpliftModel(warmup=10, seed=2)
    for _ in range(800):
        action = rng.choice(("none", "nudge"))
        model.learn(PAYMENT, action, rng.random() < (0.6 if action == "nudge" else 0.4))
    assert model.estimate(PAYMENT, "handoff")[1] > 3 * model.estimate(PAYMENT, "nudge")[1]
    picks = [model.choose(PAYMENT, ("nudge", "handoff"))[0] for _ in range(300)]
    assert 10 < picks.count("handoff") < 290  # tried now and then, not always


def test_warm_needs_control_and_treated_outcomes() -> None:
    model = UpliftModel(warmup=3)
    for _ in range(5):
        model.learn(PAYMENT, "nudge", True)
    assert not model.warm  # no control yet: nothing to compare with
    for _ in range(3):
        model.learn(PAYMENT, "none", False)
    assert model.warm and model.learned == {"none": 3, "nudge": 5, "handoff": 0}
    assert UpliftModel(warmup=0).warm
    with pytest.raises(ValueError, match="uplift_warmup"):
        UpliftModel(warmup=-1)


def test_a_fresh_model_knows_nothing() -> None:
    model = UpliftModel()
    assert model.probability(PAYMENT, "none") == pytest.approx(0.3, abs=0.02)  # the prior
    estimate, sd = model.estimate(PAYMENT, "nudge")
    # unsure: several times less sure than after 1,500 rounds of outcomes
    assert abs(estimate) < 0.1 and sd > 0.12 and sd > 3 * trained_factory().estimate(PAYMENT, "nudge")[1]


def test_pickled_it_decides_and_learns_the_same() -> None:
    model = trained_factory(rounds=300)
    copy = pickle.loads(pickle.dumps(model))
    for _ in range(30):
        assert copy.choose(BROWSING, ("nudge", "handoff")) == model.choose(BROWSING, ("nudge", "handoff"))
    for m in (model, copy):
        m.learn(BROWSING, "handoff", True)
    assert copy.estimate(BROWSING, "handoff") == model.estimate(BROWSING, "handoff")
    assert copy.learned == model.learned
    assert all(math.isfinite(v) for v in copy.estimate(["never:seen"], "nudge"))


def test_an_action_is_compared_with_the_holdout_of_the_sessions_decided_for_it() -> None:
    """Which decision counts (the strongest) depends on what came later: here the
    sessions decided for a nudge are the ones that were never escalated, and convert
    more with or without it (0.6); those decided for a handoff convert less (0.2). The
    nudge changes nothing, the handoff adds 0.2. Against one baseline pooled over both
    holdouts (0.4) the nudge looked like +0.2 and the handoff like 0."""
    rng = random.Random(4)
    model = UpliftModel(warmup=10, seed=4)
    for _ in range(1500):
        for decided, p0, p1 in (("nudge", 0.6, 0.6), ("handoff", 0.2, 0.4)):
            held = rng.random() < 0.3
            model.learn(PAYMENT, "none" if held else decided,
                        rng.random() < (p0 if held else p1), decided=decided)
    assert model.estimate(PAYMENT, "nudge")[0] == pytest.approx(0.0, abs=0.05)
    assert model.estimate(PAYMENT, "handoff")[0] == pytest.approx(0.2, abs=0.06)


def test_one_session_draws_the_same_at_each_of_its_decision_points() -> None:
    """Thompson sampling draws once per session: asked again with nothing learned in
    between, a session gets the same answer; different sessions get different ones."""
    rng = random.Random(5)
    model = UpliftModel(warmup=10, seed=5)
    for _ in range(40):  # few outcomes: the handoff's uplift is uncertain
        action = rng.choice(ACTIONS)
        model.learn(PAYMENT, action, rng.random() < TRUTH[tuple(PAYMENT)][action])
    both = ("nudge", "handoff")
    for session in ("a", "b", "c", "d"):
        first = model.choose(PAYMENT, both, handoff_cost=0.02, session=session)
        assert all(model.choose(PAYMENT, both, handoff_cost=0.02, session=session) == first
                   for _ in range(20))
        # the allowed actions do not change the draws: the handoff alone is drawn alike
        alone = model.choose(PAYMENT, ("handoff",), handoff_cost=0.02, session=session)
        assert alone == model.choose(PAYMENT, ("handoff",), handoff_cost=0.02, session=session)
    answers = {model.choose(PAYMENT, both, handoff_cost=0.02, session=f"s{i}")[0] for i in range(200)}
    assert len(answers) > 1


def test_with_a_confidence_it_overrides_the_rules_only_where_it_is_sure() -> None:
    """It takes an action whose lower bound beats its cost; it leaves a session alone
    where the upper bound of what the rules proposed is below its cost; in between,
    the rules' proposal stands."""
    rng = random.Random(6)
    model = UpliftModel(warmup=10, seed=6, confidence=1.0)
    for _ in range(1500):
        for keys, p in TRUTH.items():
            action = rng.choice(ACTIONS)
            model.learn(list(keys), action, rng.random() < p[action])
    for i in range(30):  # a handful of outcomes in a third context: +0.05, unsure
        for action, p in (("none", 0.30), ("nudge", 0.35)):
            model.learn(["kind:search_struggle"], action, int((i + 1) * p) > int(i * p))
    unsure = ["kind:search_struggle"]
    mean, sd = model.estimate(unsure, "nudge")
    assert mean - sd <= 0 < mean + sd  # not sure it helps, nor that it does not
    assert model.choose(unsure, ("nudge",)) == (None, None)  # no proposal: nothing
    # the rules proposed a nudge: unsure either way, their choice stands
    assert model.choose(unsure, ("nudge", "handoff"), handoff_cost=0.02, default="nudge") == (
        "nudge", mean)
    assert {model.choose(PAYMENT, ("nudge", "handoff"), handoff_cost=0.02, default="nudge")[0]
            for _ in range(20)} == {"handoff"}  # sure a person helps more: overrides the rules
    # sure the nudge annoys (its upper bound is below 0) and the handoff does not pay
    assert model.choose(BROWSING, ("nudge", "handoff"), handoff_cost=0.02, default="nudge") == (
        None, None)
    assert model.choose(PAYMENT, ("nudge", "handoff"), handoff_cost=0.5)[0] == "nudge"
    with pytest.raises(ValueError, match="uplift_confidence"):
        UpliftModel(confidence=-1)
