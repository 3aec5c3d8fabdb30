"""Is an intervention worth showing this session now? An online uplift model.

The risk model says who is likely to leave; that is not who an intervention helps (a
browser with a dead button is likely to leave and a nudge will not change it). The
uplift of an action *a* for a session is ``P(convert | context, a) - P(convert |
context, nothing)``. :class:`UpliftModel` estimates it with a River ``AdPredictor``
(Bayesian online probit regression: a Gaussian belief over every weight, so each
estimate comes with its uncertainty) over indicators of the session's decision context
(:func:`context`) and, for a session an intervention reached, the same indicators
crossed with that action: the context's weights learn who converts anyway, from every
outcome; the crossed weights learn what the action changes.

What it learns from, once per session at its outcome (prequential: the estimate used
at the decision was made before), with the features of the decision that counted (the
first, replaced by a stronger intervention decided later):

- as the control (no action): sessions decided for but not shown (the policy's
  holdout: random, so it shows what happens to sessions like these without an
  intervention) and sessions where the model chose to do nothing;
- as a nudge or a handoff: sessions shown that intervention (the strongest one shown),
  in either arm: the rules arm's interventions teach it too.

A session decided for an intervention, shown or held out, is learned in that
intervention's *stratum*: its own baseline weights (``as:nudge``, and crossed with each
context indicator). The decision that counts is the strongest, so which one that is
depends on what happened later (a nudge is the strongest only for sessions the rules
never escalated), and the arms escalate differently: compared with one shared
baseline, the rules arm's nudged sessions, which the third failed payment never
reached, looked like a nudge's effect (+0.15 estimated for a nudge after a technical
payment failure that changes nothing). Within a stratum, treated and held-out sessions
went through the same decisions, so their difference is the action's.

Deciding (:meth:`UpliftModel.choose`), once warm, where the rules proposed an action:
with ``confidence`` k > 0 (``[model] uplift_confidence``, 1 by default) it overrides
the rules only where it is sure. It takes the action with the largest estimated uplift
less its cost among those whose lower bound (mean - k sd) beats their cost; failing
that, nothing where it is sure the rules' proposal does not pay (its upper bound, mean
+ k sd, is below its cost); where it is unsure either way, the rules' proposal stands.
The rules arm keeps showing every action where the rules would, so the model need not
explore to keep learning. With k = 0 it is Thompson sampling: draw each learner's
probability from its belief, and take the action whose drawn uplift, less its cost, is
largest, or nothing when none is positive; the draws are the same at each decision
point of one session, so a session asked five times is not five times as likely to
get an action the model doubts.

>>> model = UpliftModel(warmup=50, seed=1, confidence=1.0)
>>> import random
>>> rng = random.Random(3)
>>> helps = ["kind:checkout_failure", "payment:decline"]   # a nudge: 0.35 -> 0.60
>>> annoys = ["kind:dead_click", "stage:1"]                 # a nudge: 0.08 -> 0.05
>>> for _ in range(600):
...     model.learn(helps, "nudge", rng.random() < 0.60)
...     model.learn(helps, "none", rng.random() < 0.35)
...     model.learn(annoys, "nudge", rng.random() < 0.05)
...     model.learn(annoys, "none", rng.random() < 0.08)
>>> model.warm
True
>>> round(model.estimate(helps, "nudge")[0], 2), round(model.estimate(annoys, "nudge")[0], 2)
(0.25, -0.04)
>>> [sum(model.choose(c, ["nudge"])[0] == "nudge" for _ in range(100)) for c in (helps, annoys)]
[100, 0]

The contexts' own weights share what they have in common, and the treatment's are
crossed with each indicator: an action never tried in a context is uncertain there, so
Thompson sampling (k = 0) tries it now and then (exploration); with k > 0 the rules'
proposal stands there until the outcomes (the rules arm's too) settle it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from river import linear_model

ACTIONS: Final = ("none", "nudge", "handoff")
#: Failed payments by class: what another payment method can fix ("decline"), what an
#: address can ("address"), and what neither can ("technical").
PAYMENT_CLASSES: Final = ("decline", "address", "technical")
_PAYMENT_CODES: Final[Mapping[str, str]] = {
    "card_declined": "decline", "insufficient_funds": "decline", "3ds_failed": "decline",
    "do_not_honor": "decline", "expired_card": "decline", "declined": "decline",
    "authentication": "decline", "avs_mismatch": "address", "invalid_address": "address",
    "gateway_timeout": "technical", "timeout": "technical", "server_error": "technical",
}


def payment_class(value: Any) -> str | None:
    """The class of a failed payment's ``code`` or ``reason`` (None when unknown).

    >>> payment_class("card_declined"), payment_class(502), payment_class("avs_mismatch")
    ('decline', 'technical', 'address')
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return "technical" if value >= 500 else None
    return _PAYMENT_CODES.get(str(value).lower()) if value is not None else None


def context(x: Mapping[str, float], detector: str) -> list[str]:
    """The decision context: active indicators from the features at the decision.

    The friction kind that triggered the decision, the funnel stage and the two
    together, the classes of failed payments and how many failed, the friction score
    (bucketed) and whether something was shown already: what the outcome depends on,
    and what the rules' own choice depends on (so the model compares like with like).

    >>> context({"stage_product": 1.0, "stage_cart": 1.0, "payment_decline": 1.0,
    ...          "count_checkout_failed": math.log1p(2), "friction": 1.2}, "rage_click")
    ['kind:rage_click', 'stage:2', 'kind:rage_click/stage:2', 'payment:decline', 'failed:2', 'score:1']
    """
    stage = int(x.get("stage_product", 0) + x.get("stage_cart", 0) + x.get("stage_checkout", 0))
    keys = [f"kind:{detector}", f"stage:{stage}", f"kind:{detector}/stage:{stage}"]
    keys += [f"payment:{c}" for c in PAYMENT_CLASSES if x.get(f"payment_{c}")]
    failed = round(math.expm1(x.get("count_checkout_failed", 0.0)))
    if failed:
        keys.append(f"failed:{min(failed, 3)}")
    score = x.get("friction", 0.0)
    keys.append(f"score:{0 if score < 0.5 else 1 if score < 1.5 else 2}")
    if x.get("interventions"):
        keys.append("shown:before")
    return keys


#: The key of ``AdPredictor``'s always-active bias weight in its ``means``.
_BIAS: Final = "__bias__"


def _cost(action: str, handoff_cost: float) -> float:
    """What taking ``action`` costs before its uplift counts: a person's time for a handoff."""
    return handoff_cost if action == "handoff" else 0.0


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


class UpliftModel:
    """One ``AdPredictor`` over the context and the action (see the module docstring).

    ``warmup``: outcomes of the control, and of the interventions together, it learns
    before :attr:`warm` (until then the rules decide alone). ``noise``: the probit's
    label noise (``beta`` of ``AdPredictor``); every weight starts as N(0, 1), so a
    larger noise is also a tighter prior on what one indicator can change.
    ``prior``: P(convert) before anything is learned. ``confidence`` (k): how sure it
    must be to override the rules (see the module docstring); 0 is Thompson sampling.
    """

    #: For checkpoints pickled before the seed was kept.
    seed: int = 42
    #: Checkpoints pickled before it was kept decided by Thompson sampling alone.
    confidence: float = 0.0

    def __init__(self, warmup: int = 300, seed: int = 42, *, noise: float = 4.0,
                 prior: float = 0.3, confidence: float = 0.0) -> None:
        if warmup < 0:
            raise ValueError(f"model.uplift_warmup = {warmup} must be >= 0")
        if confidence < 0:
            raise ValueError(f"model.uplift_confidence = {confidence} must be >= 0")
        if not 0.0 < prior < 1.0 or noise <= 0:
            raise ValueError(f"prior = {prior} must be in (0, 1), noise = {noise} > 0")
        self.warmup = warmup
        self.noise = noise
        self._learner = linear_model.AdPredictor(beta=noise, prior_probability=prior, epsilon=0.0)
        self.seed = seed
        self.confidence = confidence
        self._rng = random.Random(seed)
        self.learned: dict[str, int] = dict.fromkeys(ACTIONS, 0)

    @property
    def warm(self) -> bool:
        """Has it learned enough to decide: ``warmup`` control and treated outcomes?"""
        n = self.learned
        return n["none"] >= self.warmup and n["nudge"] + n["handoff"] >= self.warmup

    @staticmethod
    def _treatment(keys: Iterable[str], action: str) -> list[str]:
        """The indicators of ``action`` in this context: its own, and crossed with each
        context indicator (the uplift's weights)."""
        if action == "none":
            return []
        return [action, *(f"{action}|{k}" for k in keys)]

    @staticmethod
    def _stratum(keys: Iterable[str], decided: str | None) -> list[str]:
        """The indicators of the sessions decided for ``decided`` in this context (shown or
        held out): their own baseline, so an action is compared with the holdout of the
        sessions decided for it, never with other sessions that merely share the context."""
        if decided is None or decided == "none":
            return []
        return [f"as:{decided}", *(f"as:{decided}|{k}" for k in keys)]

    def learn(self, keys: Sequence[str], action: str, converted: bool, *,
              decided: str | None = None) -> None:
        """One outcome: the session converted (or not) after ``action`` reached it.

        ``decided``: what the policy decided for it, shown or held out (a held-out
        session's ``action`` is "none"); None when nothing was decided or it is not
        known. A session decided for an intervention is learned in that intervention's
        stratum (see :meth:`_stratum`); once a stratum has outcomes, estimates use it."""
        x = dict.fromkeys((*keys, *self._stratum(keys, decided), *self._treatment(keys, action)), 1)
        self._learner.learn_one(x, converted)
        self.learned[action] += 1

    def _belief(self, keys: Iterable[str]) -> tuple[float, float]:
        """Mean and variance of the sum of these weights (unseen ones: the prior)."""
        means, variances = self._learner.means, self._learner.variances
        return (sum(means.get(k, 0.0) for k in keys),
                sum(variances.get(k, 1.0) for k in keys))

    def _parts(self, keys: Sequence[str], action: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """(mean, variance) of the baseline score (with the bias, and the stratum of the
        sessions decided for ``action`` once it has outcomes) and of the uplift's."""
        means = self._learner.means
        if _BIAS not in means:
            self._learner.predict_proba_one(dict.fromkeys(keys, 1))  # sets up the bias
        stratum = self._stratum(keys, action) if f"as:{action}" in means else []
        base = self._belief((*keys, _BIAS, *stratum))
        return base, self._belief(self._treatment(keys, action))

    def probability(self, keys: Sequence[str], action: str) -> float:
        """P(convert | context, action): the predictive probability."""
        (mb, vb), (mt, vt) = self._parts(keys, action)
        return _phi((mb + mt) / math.sqrt(vb + vt + self.noise**2))

    def estimate(self, keys: Sequence[str], action: str) -> tuple[float, float]:
        """The uplift of ``action`` over nothing, and (roughly) its standard deviation."""
        if action == "none":
            return 0.0, 0.0
        (mb, vb), (mt, vt) = self._parts(keys, action)
        treated = math.sqrt(vb + vt + self.noise**2)
        p1 = _phi((mb + mt) / treated)
        p0 = _phi(mb / math.sqrt(vb + self.noise**2))
        density = math.exp(-0.5 * ((mb + mt) / treated) ** 2) / math.sqrt(2 * math.pi)
        return p1 - p0, density * math.sqrt(vt) / treated

    def choose(
        self, keys: Sequence[str], allowed: Sequence[str], *, handoff_cost: float = 0.0,
        session: str | None = None, default: str | None = None,
    ) -> tuple[str | None, float | None]:
        """Nothing or one of the ``allowed`` actions: the action to take (None for
        nothing) and its estimated uplift (:meth:`estimate`'s mean). ``default``: what
        the rules proposed. With a ``confidence``, the bounds decide (see the module
        docstring); without, Thompson sampling.

        ``session``: the session's id. Its draws are then the same at each of its
        decision points (one belief per session, not one per event): a session asked
        five times is not five times as likely to get an action the model doubts."""
        if self.confidence > 0:
            return self._cautious(keys, allowed, handoff_cost, default)
        if session is None:
            draw = self._rng.gauss
        else:
            draw = random.Random(f"{self.seed}\x1f{session}").gauss
        noise = self.noise
        # The baseline's draw is shared by every action; each action has its own, drawn
        # in a fixed order so what is allowed now does not change a session's draws.
        shared, drawn = draw(0.0, 1.0), {a: draw(0.0, 1.0) for a in ACTIONS[1:]}
        best, value = None, 0.0
        for action in allowed:
            (mb, vb), (mt, vt) = self._parts(keys, action)
            base = mb + math.sqrt(vb) * shared
            gain = _phi((base + mt + math.sqrt(vt) * drawn[action]) / noise) - _phi(base / noise)
            gain -= _cost(action, handoff_cost)
            if gain > value:
                best, value = action, gain
        return best, (None if best is None else self.estimate(keys, best)[0])

    def _cautious(self, keys: Sequence[str], allowed: Sequence[str], handoff_cost: float,
                  default: str | None) -> tuple[str | None, float | None]:
        best, value, estimates = None, 0.0, {}
        for action in allowed:
            mean, sd = estimates[action] = self.estimate(keys, action)
            cost = _cost(action, handoff_cost)
            if mean - self.confidence * sd > cost and mean - cost > value:
                best, value = action, mean - cost
        if best is None and default in estimates:
            mean, sd = estimates[default]
            if mean + self.confidence * sd > _cost(default, handoff_cost):
                best = default  # unsure either way: the rules' choice stands
        return best, (None if best is None else estimates[best][0])

    def summary(self) -> dict[str, Any]:
        return {"uplift_learned": dict(self.learned), "uplift_warm": self.warm}
