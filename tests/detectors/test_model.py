"""The online models on their own: learning, honest AUC, anomalies, the bandit, pickling."""

from __future__ import annotations

import pickle
import random

import orjson
import pytest

from detectors.errors import ConfigError
from detectors.model import (
    AnomalyModel,
    Features,
    Models,
    NudgeChooser,
    RiskModel,
    features,
    learn_outcome,
    snapshot,
)


def session_factory(rng: random.Random, *, frictional: bool) -> Features:
    """A session's features: friction raises errors and signals, a little noise on all."""
    failures = rng.randint(2, 4) if frictional else rng.choice((0, 0, 0, 1))
    counts = {"page_view": rng.randint(2, 12), "click": rng.randint(3, 30),
              "checkout_attempt": rng.randint(0, 3), "checkout_failed": failures}
    signals = {"checkout_failure": failures - 1} if failures >= 2 else {}
    return features(counts, signals, friction=0.6 * len(signals) + rng.random() * 0.3,
                    duration_ms=rng.randint(30_000, 900_000), pages=counts["page_view"],
                    interventions=len(signals))


def _outcome(rng: random.Random, frictional: bool) -> bool:
    """Abandoned? Friction makes it likely, not certain."""
    return rng.random() < (0.85 if frictional else 0.3)


# -- RiskModel -------------------------------------------------------------------------
def test_risk_model_learns_who_abandons() -> None:
    rng = random.Random(3)
    risk = RiskModel()
    for _ in range(3000):
        frictional = rng.random() < 0.3
        x = session_factory(rng, frictional=frictional)
        risk.learn(x, abandoned=_outcome(rng, frictional), predicted=risk.score(x))
    assert risk.learned == 3000
    smooth = [risk.score(session_factory(rng, frictional=False)) for _ in range(200)]
    rough = [risk.score(session_factory(rng, frictional=True)) for _ in range(200)]
    assert sum(rough) / 200 > 0.7 > 0.4 > sum(smooth) / 200
    # The best possible AUC here is about 0.77 (the outcome is random given friction).
    assert 0.7 < risk.auc < 0.85


def test_a_fresh_risk_model_knows_nothing() -> None:
    rng = random.Random(5)
    risk = RiskModel()
    x = session_factory(rng, frictional=True)
    assert risk.score(x) == 0.5 == risk.score(session_factory(rng, frictional=False))
    assert risk.learned == 0


def test_prequential_auc_on_noise_stays_at_chance() -> None:
    """Scored before learned: a model cannot look good on labels it cannot predict."""
    for seed in range(3):
        rng = random.Random(seed)
        risk = RiskModel(window=2000)
        for _ in range(2000):
            x = session_factory(rng, frictional=rng.random() < 0.3)
            risk.learn(x, abandoned=rng.random() < 0.5, predicted=risk.score(x))
        assert risk.auc == pytest.approx(0.5, abs=0.05), seed


def test_auc_is_rolling_over_the_window() -> None:
    rng = random.Random(8)
    risk = RiskModel(window=100)
    for _ in range(300):  # a perfect ranking ...
        risk.learn({"f": 1.0}, abandoned=True, predicted=0.9)
        risk.learn({"f": 0.0}, abandoned=False, predicted=0.1)
    assert risk.auc == 1.0
    for _ in range(50):  # ... forgotten once the window holds only inverted ones
        risk.learn({"f": 1.0}, abandoned=True, predicted=0.1 + rng.random() * 0.01)
        risk.learn({"f": 0.0}, abandoned=False, predicted=0.9)
    assert risk.auc == 0.0


@pytest.mark.parametrize("kwargs", [{"learning_rate": 0.0}, {"learning_rate": 2.0}, {"window": 5}])
def test_risk_model_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="model\\."):
        RiskModel(**kwargs)  # type: ignore[arg-type]


def test_snapshot_survives_json_and_is_learned_later() -> None:
    """The session keeps the snapshot in its JSON state until the outcome arrives."""
    rng = random.Random(2)
    models = Models()
    x = session_factory(rng, frictional=True)
    snap = orjson.loads(orjson.dumps(snapshot(x, models.risk.score(x))))
    learn_outcome(models, snap, abandoned=True)
    assert models.risk.learned == 1
    assert models.risk.score(x) > 0.5


# -- AnomalyModel ----------------------------------------------------------------------
def _cluster(rng: random.Random) -> Features:
    return {"a": rng.gauss(0.5, 0.05), "b": rng.gauss(0.5, 0.05), "c": rng.gauss(0.5, 0.05)}


OUTLIER: Features = {"a": 0.95, "b": 0.05, "c": 0.9}


def test_anomaly_model_flags_an_outlier_only_after_warmup() -> None:
    rng = random.Random(0)
    model = AnomalyModel(q=0.99, warmup=300, seed=0)
    assert model.score(OUTLIER)[1] is False  # knows nothing yet: flags nothing
    for _ in range(299):
        model.learn(_cluster(rng))
    assert model.score(OUTLIER)[1] is False  # one sample short of the warmup
    flagged = scored = 0
    normal_scores = []
    for _ in range(2000):
        x = _cluster(rng)
        score, flag = model.score(x)
        model.learn(x)
        normal_scores.append(score)
        flagged += flag
        scored += 1
    score, flag = model.score(OUTLIER)
    assert flag is True
    assert score > sorted(normal_scores)[int(0.99 * scored)]
    # about 1 - q of ordinary sessions are flagged too: the price of the quantile rule
    assert flagged / scored < 0.03


def test_anomaly_model_learns_only_when_told() -> None:
    model = AnomalyModel(warmup=0)
    model.score(OUTLIER)
    model.score(OUTLIER)
    assert model.seen == 0
    model.score(OUTLIER)
    model.learn(OUTLIER)
    assert model.seen == 1


# -- NudgeChooser ----------------------------------------------------------------------
def test_nudge_chooser_converges_on_the_variant_that_works() -> None:
    rng = random.Random(4)
    chooser = NudgeChooser(seed=4)
    works = (0.2, 0.35, 0.6)  # chance each variant is accepted
    picks = []
    for _ in range(600):
        arm = chooser.choose("dead_click", 3)
        chooser.reward("dead_click", arm, rng.random() < works[arm])
        picks.append(arm)
    assert picks[-200:].count(2) > 180
    # friction types learn apart: a fresh one still explores
    assert len({chooser.choose("form_struggle", 3) for _ in range(60)}) == 3
    assert chooser.choose("form_struggle", 1) == 0


# -- Models ----------------------------------------------------------------------------
def _trained(seed: int = 7) -> tuple[Models, random.Random]:
    rng = random.Random(seed)
    models = Models(anomaly_warmup=50, seed=seed)
    for _ in range(400):
        frictional = rng.random() < 0.3
        x = session_factory(rng, frictional=frictional)
        models.risk.learn(x, abandoned=_outcome(rng, frictional), predicted=models.risk.score(x))
        models.anomaly.score(x)
        models.anomaly.learn(x)
        arm = models.chooser.choose("rage_click", 2)
        models.chooser.reward("rage_click", arm, rng.random() < 0.5)
    return models, rng


def test_models_pickle_and_unpickle_with_identical_predictions() -> None:
    models, rng = _trained()
    copy = pickle.loads(pickle.dumps(models))
    assert copy is not models and copy.summary() == models.summary()
    for _ in range(50):
        x = session_factory(rng, frictional=rng.random() < 0.5)
        assert copy.risk.score(x) == models.risk.score(x)
        assert copy.anomaly.score(x) == models.anomaly.score(x)
        copy.anomaly.learn(x)
        models.anomaly.learn(x)
        assert copy.chooser.choose("rage_click", 2) == models.chooser.choose("rage_click", 2)
    # and they keep learning alike
    x = session_factory(rng, frictional=True)
    for m in (models, copy):
        m.risk.learn(x, abandoned=True, predicted=m.risk.score(x))
    assert copy.risk.score(x) == models.risk.score(x) and copy.risk.auc == models.risk.auc


def test_models_from_config_names_unknown_keys_and_bad_values() -> None:
    assert Models.from_config({"enabled": False}).enabled is False
    with pytest.raises(ConfigError, match="unknown key model.learnig_rate"):
        Models.from_config({"learnig_rate": 0.1})
    with pytest.raises(ConfigError, match="model.enabled"):
        Models.from_config({"enabled": "yes"})
    with pytest.raises(ValueError, match="model.anomaly_strength"):
        Models.from_config({"anomaly_strength": 3})
