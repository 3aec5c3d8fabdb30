"""Online models with River: how much friction matters for this customer, now.

Rules say what went wrong; the models say how likely this session is to be abandoned
(``RiskModel``), whether it looks unlike any session seen so far (``AnomalyModel``),
which nudge wording works best for each kind of friction (``NudgeChooser``), and
whether an intervention is worth showing at all, and which
(:class:`~detectors.uplift_model.UpliftModel`). They learn while the stream runs,
always in prequential order: a session is scored before its outcome is learned, so
the rolling ROC AUC is an honest out-of-sample measure.

The features are a fixed, small dict computed from the session state at the moment of
decision, so a snapshot fits in the state (it is learned from when the outcome arrives,
possibly much later). They carry what makes a customer leave: the kind and amount of
friction (signals, errors, failed payments by class), how deep into the funnel they
got (``stage_*``: a product page, the cart, the checkout), how long they have been at
it and stuck, and what they were already shown.

>>> risk = RiskModel(learning_rate=0.05)
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

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from river import anomaly, bandit, linear_model, metrics, optim, preprocessing, proba

from detectors.config import build, check, check_field, setting
from detectors.uplift_model import PAYMENT_CLASSES, UpliftModel

Features = dict[str, float]

#: Event types whose counts describe a session's path and trouble.
COUNTED_TYPES = (
    "page_view", "click", "scroll", "search", "js_error", "http_error", "form_error",
    "checkout_attempt", "checkout_failed", "intervention_shown", "intervention_dismissed",
)


#: Funnel stages a page can show (see :func:`funnel_stage`); 0 is anything before.
STAGES = ("product", "cart", "checkout")
#: Default page path prefixes of the funnel stages, as ``[model] funnel`` sets them.
DEFAULT_FUNNEL: Mapping[str, float] = {"/p/": 1, "/product": 1, "/cart": 2, "/basket": 2,
                                       "/checkout": 3}


#: Funnel stages, deepest first, each with its page path prefixes (:func:`funnel_stages`).
FunnelStages = tuple[tuple[int, tuple[str, ...]], ...]


def funnel_stages(funnel: Mapping[str, float]) -> FunnelStages:
    """``{prefix: stage}`` as stages, deepest first, with their prefixes.

    >>> funnel_stages({"/p/": 1, "/cart": 2, "/basket": 2})
    ((2, ('/cart', '/basket')), (1, ('/p/',)))
    """
    stages = sorted({int(v) for v in funnel.values() if v >= 1}, reverse=True)
    return tuple((stage, tuple(p for p, v in funnel.items() if int(v) == stage)) for stage in stages)


DEFAULT_STAGES: FunnelStages = funnel_stages(DEFAULT_FUNNEL)


def funnel_stage(pages: Sequence[str], stages: FunnelStages = DEFAULT_STAGES) -> int:
    """The deepest funnel stage among ``pages`` (0 when none matches a prefix).

    >>> funnel_stage(["/", "/p/sho-1234", "/cart", "/p/bag-9"]), funnel_stage(["/help"])
    (2, 0)
    """
    for stage, prefixes in stages:
        for page in pages:
            if page.startswith(prefixes):
                return stage
    return 0


_COUNT_KEYS: Final = tuple((t, f"count_{t}") for t in COUNTED_TYPES)
_STAGE_KEYS: Final = tuple(f"stage_{name}" for name in STAGES)
_PAYMENT_KEYS: Final = tuple((name, f"payment_{name}") for name in PAYMENT_CLASSES)
_LOG1P: Final = tuple(math.log1p(n) for n in range(256))


def _log1p(n: int) -> float:
    """``math.log1p(n)``, looked up for the small counts sessions have.

    >>> _log1p(3) == math.log1p(3), _log1p(10**6) == math.log1p(10**6)
    (True, True)
    """
    return _LOG1P[n] if type(n) is int and 0 <= n < 256 else math.log1p(n)


def features(
    counts: Mapping[str, int],
    signal_counts: Mapping[str, int],
    *,
    friction: float,
    duration_ms: int,
    pages: int,
    interventions: int,
    stage: int = 0,
    payments: Iterable[str] = (),
    stuck_ms: int = 0,
    causes: bool = True,
) -> Features:
    """The model's view of a session: log-scaled counts, signals, score, progress.

    ``stage``: the deepest funnel stage reached (:func:`funnel_stage`); ``payments``:
    the classes of its failed payments (:data:`~detectors.uplift_model.PAYMENT_CLASSES`);
    ``stuck_ms``: time since its first signal. ``causes=False`` leaves these three out.

    >>> x = features({"click": 3}, {"rage_click": 1}, friction=0.7, duration_ms=60_000,
    ...              pages=2, interventions=0, stage=2, payments=["decline"])
    >>> x["signals_rage_click"], round(x["count_click"], 3), x["minutes"]
    (1.0, 1.386, 1.0)
    >>> x["stage_product"], x["stage_cart"], x["stage_checkout"], x["payment_decline"]
    (1.0, 1.0, 0.0, 1.0)
    """
    # Names made once (_COUNT_KEYS, ...): this runs on every scored or learned event.
    x: Features = {key: _log1p(counts.get(t, 0)) for t, key in _COUNT_KEYS}
    x.update({f"signals_{name}": float(n) for name, n in signal_counts.items()})
    x["friction"] = friction
    x["minutes"] = min(duration_ms / 60_000, 120.0)
    x["pages"] = math.log1p(pages)
    x["interventions"] = float(interventions)
    if not causes:
        return x
    for i, key in enumerate(_STAGE_KEYS, 1):
        x[key] = float(stage >= i)
    failed = set(payments)
    for name, key in _PAYMENT_KEYS:
        x[key] = float(name in failed)
    x["stuck_minutes"] = min(max(stuck_ms, 0) / 60_000, 120.0)
    return x


class RiskModel:
    """P(abandon) from session features: StandardScaler | LogisticRegression, twice.

    Sessions are scored at two moments that look nothing alike: at a decision (a
    signal on a session that can still get an intervention: the score the policy
    uses) and, for sessions never scored before, when the outcome arrives (by then the
    features give much away: whoever reached the payment step mostly bought). One
    learner for each, so what the outcome-time scores learn (a checkout attempt means
    a purchase) never blurs the decision-time ranking (where a checkout attempt may
    mean a failing card). ``score``/``learn`` take ``at_decision`` to say which.

    ``auc`` is the rolling ROC AUC over the last ``window`` outcomes, each scored
    before it was learned; ``auc_at_decision`` the same over the outcomes scored at a
    decision only.
    """

    def __init__(self, learning_rate: float = 0.01, window: int = 2000) -> None:
        check_field(Models, "learning_rate", learning_rate)
        check_field(Models, "auc_window", window)
        self.learning_rate = learning_rate
        self.window = window
        self._at_decision = self._learner()
        self._at_outcome = self._learner()
        self._auc = metrics.RollingROCAUC(window_size=window)
        self._auc_at_decision = metrics.RollingROCAUC(window_size=window)
        self.learned = 0
        self.learned_at_decision = 0

    def _learner(self) -> Any:
        return preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(self.learning_rate)
        )

    def score(self, x: Features, *, at_decision: bool = True) -> float:
        model = self._at_decision if at_decision else self._at_outcome
        return float(model.predict_proba_one(x).get(True, 0.5))

    def learn(self, x: Features, *, abandoned: bool, predicted: float,
              at_decision: bool = True) -> None:
        """Learn one outcome; ``predicted`` is the score given before the outcome, at a
        decision or (``at_decision=False``) when the outcome came."""
        self._auc.update(abandoned, predicted)
        if at_decision:
            self._auc_at_decision.update(abandoned, predicted)
            self.learned_at_decision += 1
            self._at_decision.learn_one(x, abandoned)
        else:
            self._at_outcome.learn_one(x, abandoned)
        self.learned += 1

    @property
    def auc(self) -> float:
        """Rolling ROC AUC over every outcome, however late it was scored."""
        return float(self._auc.get())

    @property
    def auc_at_decision(self) -> float:
        """Rolling ROC AUC over the outcomes scored at a decision: the scores the policy
        used."""
        return float(self._auc_at_decision.get())

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints pickled before the split: one learner, used for both from now on.
        if "_model" in state:
            old = state.pop("_model")
            state["_at_decision"], state["_at_outcome"] = old, copy.deepcopy(old)
        state.setdefault("_auc_at_decision", metrics.RollingROCAUC(window_size=state["window"]))
        state.setdefault("learned_at_decision", 0)
        self.__dict__.update(state)


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
    """The four models a worker keeps; pickled whole for checkpoints.

    >>> Models.from_config({"learnig_rate": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: unknown key model.learnig_rate (known: ..., uplift_warmup)
    """

    section: ClassVar[str] = "model"
    section_doc: ClassVar[str] = (
        "Online River models: risk of abandonment, odd sessions, nudge wording, uplift of "
        "interventions.")

    enabled: bool = setting(True, doc="online River models (risk, anomaly, nudge bandit, uplift)")
    learning_rate: float = setting(0.01, low=1e-5, high=1,
                                   doc="SGD step of the risk model's logistic regressions")
    auc_window: int = setting(2000, low=10, high=1_000_000, doc="outcomes in the rolling ROC AUC")
    anomaly_quantile: float = setting(0.999, low=0.5, high=0.99999,
                                      doc="flag sessions above this quantile of anomaly scores")
    anomaly_warmup: int = setting(500, low=0, high=10_000_000,
                                  doc="samples learned before anything is flagged")
    anomaly_strength: float = setting(0.2, low=0, high=1,
                                      doc="strength of the anomalous_session signal")
    anomaly_sample: int = setting(8, low=1, high=1_000_000,
                                  doc="learn from one milestone event in this many")
    seed: int = setting(42, doc="seed of the anomaly trees, the bandit and the uplift model")
    uplift_warmup: int = setting(
        300, low=0, high=10_000_000,
        doc="control and treated outcomes the uplift model learns before it decides anything "
            "(until then the rules decide alone; [policy] uplift_share says where it may)")
    uplift_confidence: float = setting(
        1.0, low=0, high=5,
        doc="standard deviations the uplift model must be sure by to override the rules: an "
            "action whose lower bound beats its cost, nothing where the upper bound of the "
            "rules' action is below its cost; 0: Thompson sampling")
    #: Page path prefix -> funnel stage (1 product, 2 cart, 3 checkout): features of risk
    #: and uplift.
    funnel: Mapping[str, float] = setting(
        dict(DEFAULT_FUNNEL), low=0, high=3,
        doc="page path prefix = funnel stage (1 product, 2 cart, 3 checkout); the deepest "
            "reached is a feature of the risk and uplift models")
    risk: RiskModel = field(init=False, repr=False)
    anomaly: AnomalyModel = field(init=False, repr=False)
    chooser: NudgeChooser = field(init=False, repr=False)
    uplift: UpliftModel = field(init=False, repr=False)
    stages: FunnelStages = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check(self)
        self.funnel = dict(self.funnel)
        self.stages = funnel_stages(self.funnel)
        self.risk = RiskModel(self.learning_rate, self.auc_window)
        self.anomaly = AnomalyModel(self.anomaly_quantile, self.anomaly_warmup, self.seed)
        self.chooser = NudgeChooser(self.seed)
        self.uplift = UpliftModel(self.uplift_warmup, self.seed,
                                  confidence=self.uplift_confidence)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints pickled before the uplift model existed get a fresh one.
        state.setdefault("uplift_warmup", 300)
        state.setdefault("uplift_confidence", 0.0)
        state.setdefault("funnel", dict(DEFAULT_FUNNEL))
        state.setdefault("stages", funnel_stages(state["funnel"]))
        if "uplift" not in state:
            state["uplift"] = UpliftModel(state["uplift_warmup"], state.get("seed", 42))
        self.__dict__.update(state)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> Models:
        """Build from the ``[model]`` table; unknown keys are errors, not ignored."""
        models: Models = build(cls, section)
        return models

    def summary(self) -> dict[str, Any]:
        return {
            "risk_auc": round(self.risk.auc, 4),
            "risk_auc_at_decision": round(self.risk.auc_at_decision, 4),
            "risk_learned": self.risk.learned,
            "anomaly_seen": self.anomaly.seen,
            **self.uplift.summary(),
        }


def snapshot(x: Features, predicted: float) -> dict[str, Any]:
    """What a session keeps until its outcome: the features and the score given.

    >>> snapshot({"friction": 0.5}, 0.12345678)
    {'features': {'friction': 0.5}, 'predicted': 0.123457}
    """
    return {"features": x, "predicted": round(predicted, 6)}


def learn_outcome(models: Models, snap: Mapping[str, Any], abandoned: bool,
                  *, at_decision: bool = True) -> None:
    """Teach the risk model one outcome from a :func:`snapshot` taken before it
    (``at_decision``: taken at a decision, not when the outcome came)."""
    models.risk.learn(dict(snap["features"]), abandoned=abandoned,
                      predicted=float(snap["predicted"]), at_decision=at_decision)


__all__: Sequence[str] = (
    "AnomalyModel", "Features", "Models", "NudgeChooser", "RiskModel", "UpliftModel", "features",
    "funnel_stage", "learn_outcome", "snapshot",
)
