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
from typing import Any

from river import anomaly, bandit, linear_model, metrics, optim, preprocessing, proba

from detectors.base import require

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
        require("model.learning_rate", learning_rate, 1e-5, 1)
        require("model.auc_window", window, 10, 1_000_000)
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
        require("model.anomaly_quantile", q, 0.5, 0.99999)
        require("model.anomaly_warmup", warmup, 0, 10_000_000)
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

    def score_and_learn(self, x: Features) -> tuple[float, bool]:
        """Prequential: the score comes before the sample is learned."""
        result = self.score(x)
        self.learn(x)
        return result


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


class Models:
    """The three models a worker keeps; pickled whole for checkpoints."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        learning_rate: float = 0.05,
        auc_window: int = 2000,
        anomaly_quantile: float = 0.999,
        anomaly_warmup: int = 500,
        anomaly_strength: float = 0.2,
        anomaly_sample: int = 8,
        seed: int = 42,
    ) -> None:
        require("model.anomaly_strength", anomaly_strength, 0, 1)
        require("model.anomaly_sample", anomaly_sample, 1, 1_000_000)
        self.anomaly_sample = anomaly_sample
        self.enabled = enabled
        self.anomaly_strength = anomaly_strength
        self.risk = RiskModel(learning_rate, auc_window)
        self.anomaly = AnomalyModel(anomaly_quantile, anomaly_warmup, seed)
        self.chooser = NudgeChooser(seed)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Models:
        from detectors.errors import ConfigError

        known = (
            "enabled", "learning_rate", "auc_window", "anomaly_quantile", "anomaly_warmup",
            "anomaly_strength", "anomaly_sample", "seed",
        )
        for key in section:
            if key not in known:
                raise ConfigError(f"unknown key model.{key} (known: {', '.join(known)})")
        if not isinstance(section.get("enabled", True), bool):
            raise ConfigError(f"model.enabled = {section['enabled']!r} must be true or false")
        return cls(**section)

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
