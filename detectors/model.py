"""Online models with River: how much friction matters for this customer, now.

Rules say what went wrong; the models say how likely this session is to be abandoned
(``RiskModel``), whether it looks unlike any session seen so far (``AnomalyModel``),
and which nudge wording works best for each kind of friction (``NudgeChooser``). They
learn while the stream runs, always in prequential order: a session is scored before
its outcome is learned, so the rolling ROC AUC is an honest out-of-sample measure.

The features are a fixed, small dict computed from the session state, so a snapshot
fits in the state (it is learned from when the outcome arrives, possibly much later).

>>> risk = RiskModel()
>>> frictional = {"signals_checkout_failure": 3.0, "friction": 2.0}
>>> smooth = {"signals_checkout_failure": 0.0, "friction": 0.0}
>>> for _ in range(200):
...     risk.learn(frictional, abandoned=True, predicted=risk.score(frictional))
...     risk.learn(smooth, abandoned=False, predicted=risk.score(smooth))
>>> risk.score(frictional) > 0.9 > 0.1 > risk.score(smooth)
True
>>> risk.auc > 0.99
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from river import anomaly, bandit, linear_model, metrics, optim, preprocessing, proba

from detectors.config import build, check, check_field, setting

Features = dict[str, float]

#: Event types whose counts describe a session's path and trouble.
COUNTED_TYPES = (
    "page_view", "click", "scroll", "search", "js_error", "http_error", "form_error",
    "checkout_attempt", "checkout_failed", "intervention_shown", "intervention_dismissed",
)


def features(
    counts: Mapping[str, int],
    signal_counts: Mapping[str, int],
    *,
    friction: float,
    duration_ms: int,
    pages: int,
    interventions: int,
) -> Features:
    """The model's view of a session: log-scaled counts, signals, score, progress.

    >>> x = features({"click": 3}, {"rage_click": 1}, friction=0.7, duration_ms=60_000,
    ...              pages=2, interventions=0)
    >>> x["signals_rage_click"], round(x["count_click"], 3), x["minutes"]
    (1.0, 1.386, 1.0)
    """
    x: Features = {f"count_{t}": math.log1p(counts.get(t, 0)) for t in COUNTED_TYPES}
    x.update({f"signals_{name}": float(n) for name, n in signal_counts.items()})
    x["friction"] = friction
    x["minutes"] = min(duration_ms / 60_000, 120.0)
    x["pages"] = math.log1p(pages)
    x["interventions"] = float(interventions)
    return x


class RiskModel:
    """P(abandon) from session features: StandardScaler | LogisticRegression.

    ``auc`` is the rolling ROC AUC over the last ``window`` outcomes, each scored
    before it was learned.
    """

    def __init__(self, learning_rate: float = 0.05, window: int = 2000) -> None:
        check_field(Models, "learning_rate", learning_rate)
        check_field(Models, "auc_window", window)
        self.learning_rate = learning_rate
        self.window = window
        self._model = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate)
        )
        self._auc = metrics.RollingROCAUC(window_size=window)
        self.learned = 0

    def score(self, x: Features) -> float:
        return float(self._model.predict_proba_one(x).get(True, 0.5))

    def learn(self, x: Features, *, abandoned: bool, predicted: float) -> None:
        """Learn one outcome; ``predicted`` is the score given before the outcome."""
        self._auc.update(abandoned, predicted)
        self._model.learn_one(x, abandoned)
        self.learned += 1

    @property
    def auc(self) -> float:
        return float(self._auc.get())


class AnomalyModel:
    """HalfSpaceTrees over min-max scaled features; flags the top ``1 - q`` of scores.

    Scoring and learning are separate, because they run on different events: it
    learns what normal looks like from a sample of all sessions, and scores only
    where a flag could change a decision. Nothing is flagged before it has learned
    from ``warmup`` samples.
    """

    def __init__(self, q: float = 0.999, warmup: int = 500, seed: int = 42) -> None:
        check_field(Models, "anomaly_quantile", q)
        check_field(Models, "anomaly_warmup", warmup)
        self.q = q
        self.warmup = warmup
        self._model = anomaly.QuantileFilter(
            preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=seed), q=q
        )
        self.seen = 0

    def score(self, x: Features) -> tuple[float, bool]:
        score = float(self._model.score_one(x))
        return score, self.seen >= self.warmup and bool(self._model.classify(score))

    def learn(self, x: Features) -> None:
        self._model.learn_one(x)
        self.seen += 1


class NudgeChooser:
    """A Thompson-sampling bandit per friction type over its message variants.

    Reward 1 when the customer accepts the nudge or buys afterwards, 0 when they
    dismiss it or leave.

    >>> chooser = NudgeChooser(seed=1)
    >>> for _ in range(300):
    ...     arm = chooser.choose("rage_click", 2)
    ...     chooser.reward("rage_click", arm, arm == 1)  # variant 1 always works
    >>> sum(chooser.choose("rage_click", 2) for _ in range(100)) > 90
    True
    """

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed
        self._policies: dict[str, Any] = {}

    def _policy(self, friction: str) -> Any:
        if friction not in self._policies:
            self._policies[friction] = bandit.ThompsonSampling(
                reward_obj=proba.Beta(), seed=self.seed
            )
        return self._policies[friction]

    def choose(self, friction: str, variants: int) -> int:
        if variants <= 1:
            return 0
        return int(self._policy(friction).pull(range(variants)))

    def reward(self, friction: str, arm: int, reward: bool) -> None:
        self._policy(friction).update(arm, 1.0 if reward else 0.0)


@dataclass(kw_only=True, eq=False)
class Models:
    """The three models a worker keeps; pickled whole for checkpoints.

    >>> Models.from_config({"learnig_rate": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: unknown key model.learnig_rate (known: ..., enabled, learning_rate, seed)
    """

    section: ClassVar[str] = "model"
    section_doc: ClassVar[str] = "Online River models: risk of abandonment, odd sessions, nudge wording."

    enabled: bool = setting(True, doc="online River models (risk, anomaly, nudge bandit)")
    learning_rate: float = setting(0.05, low=1e-5, high=1,
                                   doc="SGD step of the risk model's logistic regression")
    auc_window: int = setting(2000, low=10, high=1_000_000, doc="outcomes in the rolling ROC AUC")
    anomaly_quantile: float = setting(0.999, low=0.5, high=0.99999,
                                      doc="flag sessions above this quantile of anomaly scores")
    anomaly_warmup: int = setting(500, low=0, high=10_000_000,
                                  doc="samples learned before anything is flagged")
    anomaly_strength: float = setting(0.2, low=0, high=1,
                                      doc="strength of the anomalous_session signal")
    anomaly_sample: int = setting(8, low=1, high=1_000_000,
                                  doc="learn from one milestone event in this many")
    seed: int = setting(42, doc="seed of the anomaly trees and the bandit")
    risk: RiskModel = field(init=False, repr=False)
    anomaly: AnomalyModel = field(init=False, repr=False)
    chooser: NudgeChooser = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check(self)
        self.risk = RiskModel(self.learning_rate, self.auc_window)
        self.anomaly = AnomalyModel(self.anomaly_quantile, self.anomaly_warmup, self.seed)
        self.chooser = NudgeChooser(self.seed)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> Models:
        """Build from the ``[model]`` table; unknown keys are errors, not ignored."""
        models: Models = build(cls, section)
        return models

    def summary(self) -> dict[str, Any]:
        return {
            "risk_auc": round(self.risk.auc, 4),
            "risk_learned": self.risk.learned,
            "anomaly_seen": self.anomaly.seen,
        }


def snapshot(x: Features, predicted: float) -> dict[str, Any]:
    """What a session keeps until its outcome: the features and the score given.

    >>> snapshot({"friction": 0.5}, 0.12345678)
    {'features': {'friction': 0.5}, 'predicted': 0.123457}
    """
    return {"features": x, "predicted": round(predicted, 6)}


def learn_outcome(models: Models, snap: Mapping[str, Any], abandoned: bool) -> None:
    """Teach the risk model one outcome from a :func:`snapshot` taken before it."""
    models.risk.learn(dict(snap["features"]), abandoned=abandoned,
                      predicted=float(snap["predicted"]))


__all__: Sequence[str] = (
    "AnomalyModel", "Features", "Models", "NudgeChooser", "RiskModel", "features",
    "learn_outcome", "snapshot",
)
