"""The simulated world's causal model: why a shopper buys, and what an intervention changes.

This module is the one place where the simulator's outcomes are decided; everything
else in :mod:`streamer.tools.simulate` only generates behaviour. Nothing here is learned
or estimated: these are the true mechanisms, which the models have to find from events.

**What a shopper did** (a :class:`Shopper`, read off the generated session before its
outcome): how deep into the funnel they got (:data:`STAGES`: landing or category page,
a product page, the cart, the checkout), how many items are in the cart (not visible in
the events: an add-to-cart is a click like any other), and each friction episode met
(:class:`Friction`: its kind, a severity in [0, 1], whether it recovered by itself, how
many minutes it took, and for failed payments the class of the failure).

**Conversion without an intervention** (``p0``), on the logit scale::

    logit p0 = INTENT + STAGE_LOGIT[stage] + CART_LOGIT * min(items, 3)
               - sum over frictions of FRICTION_LOGIT[kind]
                   * (SEVERITY_BASE + SEVERITY * severity) * (RECOVERED if it recovered else 1)
               - TIME_LOGIT * min(minutes lost to friction, MAX_MINUTES)

with INTENT = -3.5 and STAGE_LOGIT = 0, 1.5, 4.5, 7.5 (landing, product, cart,
checkout): intent, read as how deep into the funnel the shopper got, matters most, and
what is in the cart a little (0.15 an item). Friction lowers it by its kind (from 3.6
for failed payments and 2.6 for a burst of server errors down to 0.8 for hunting up
and down a page: a declined card at payment costs far more than one empty search) and
severity (times 0.75 to 1.25), by 30% less when it recovered by itself (a slow button
that did react, a retry that worked, a search that found something in the end), and
more the longer it went on (0.15 a minute). Without friction: about a quarter of the
shoppers buy, nearly all who reach the checkout; with friction while browsing, a few
percent; with friction at the checkout, about half.

**The effect of an intervention** (``tau``, in probability points, added to ``p0``
and clipped to [0.01, 0.99]) with ``effects="heterogeneous"`` (:func:`effect`), by the
first friction met (what the intervention addresses) and the stage:

- a nudge at a failed payment suggests another payment method: +0.22 after a declined
  card, +0.12 after an address mismatch, nothing after a technical failure (another
  card does not fix a gateway timeout); at a form struggle it explains the field:
  +0.08; at a search struggle it helps little: +0.02; for click, error, scrolling and
  navigation friction it helps a shopper who got to the cart (+0.05) and annoys a
  low-intent browser (-0.03);
- a handoff to a person helps a high-intent customer stuck at checkout most: +0.35
  after a payment or form problem there, +0.15 for other friction at checkout, +0.08
  in the cart, and a browser who never got that far does not want a call: -0.02; a
  customer who asked for help gains +0.25;
- with ``effects="uniform"`` every intervention, of either kind, adds the same
  ``uniform_effect`` to everyone (no heterogeneity; 0 means interventions do nothing).

**Potential outcomes.** One uniform draw ``fate`` per session (its own seeded generator)
decides every outcome at once: ``converted with action a = fate < p_a``, for a in
:data:`ACTIONS`. The same draw for all actions makes the outcomes coupled (a shopper
who buys without help also buys with a helpful nudge), so ``y_a - y_none`` is the
session's own causal effect and its mean over sessions is the true uplift.

>>> browsing = Shopper(stage=1, items=0, frictions=(Friction("rage_click", 1.0, False, 0, 30_000),))
>>> paying = Shopper(stage=3, items=2, frictions=(
...     Friction("checkout_failure", 0.5, False, 0, 60_000, payment="decline"),))
>>> round(conversion_probability(browsing, "none"), 3), round(conversion_probability(paying, "none"), 3)
(0.013, 0.634)
>>> round(effect(browsing, "nudge"), 2), round(effect(paying, "nudge"), 2), effect(paying, "handoff")
(-0.03, 0.22, 0.35)
>>> po = potential_outcomes(paying, fate=0.7)
>>> po.y, po.realised("handoff")
({'none': False, 'nudge': True, 'handoff': True}, True)
>>> potential_outcomes(paying, fate=0.7, effects="uniform", uniform_effect=0.0).y["handoff"]
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: What a policy can do for a session; "none" is the control.
ACTIONS: Final = ("none", "nudge", "handoff")
#: Kinds of true effects: the same for everyone, or depending on the session.
EFFECTS: Final = ("uniform", "heterogeneous")
#: Funnel depth: 0 landing or category page, 1 a product page, 2 the cart, 3 the checkout.
STAGES: Final = ("browse", "product", "cart", "checkout")

# -- conversion without an intervention (logit scale) ----------------------------------
INTENT: Final = -3.5
STAGE_LOGIT: Final = (0.0, 1.5, 4.5, 7.5)
CART_LOGIT: Final = 0.15
#: What one episode of each kind costs at severity 0.5 (times 0.5 + severity).
FRICTION_LOGIT: Final[Mapping[str, float]] = {
    "checkout_failure": 3.6,
    "http_error_burst": 2.6,
    "form_struggle": 2.2,
    "error_click": 2.0,
    "rage_click": 1.8,
    "dead_click": 1.6,
    "search_struggle": 1.6,
    "navigation_loop": 1.4,
    "help_request": 1.2,
    "excessive_scroll": 0.8,
}
#: A friction that recovered by itself costs this share of its price.
RECOVERED: Final = 0.7
#: An episode costs its kind's price times (SEVERITY_BASE + SEVERITY * severity).
SEVERITY_BASE: Final = 0.75
SEVERITY: Final = 0.5
TIME_LOGIT: Final = 0.15
MAX_MINUTES: Final = 5.0

# -- heterogeneous effects (probability points) ----------------------------------------
NUDGE_AT_PAYMENT: Final[Mapping[str, float]] = {"decline": 0.22, "address": 0.12, "technical": 0.0}
NUDGE_AT_FORM: Final = 0.08
NUDGE_AT_SEARCH: Final = 0.02
NUDGE_WITH_CART: Final = 0.05
NUDGE_ANNOYS: Final = -0.03
HANDOFF_STUCK_AT_CHECKOUT: Final = 0.35
HANDOFF_AT_CHECKOUT: Final = 0.15
HANDOFF_WITH_CART: Final = 0.08
HANDOFF_UNWANTED: Final = -0.02
HANDOFF_ASKED: Final = 0.25
#: Friction that happens at the checkout itself.
CHECKOUT_KINDS: Final = frozenset({"checkout_failure", "form_struggle"})

P_MIN, P_MAX = 0.01, 0.99


@dataclass(frozen=True, slots=True)
class Friction:
    """One friction episode as the world sees it (the generator knows all of it)."""

    kind: str
    #: How bad, in [0, 1] within its kind (more failed payments, more dead clicks ...).
    severity: float
    #: It resolved by itself: the slow button did react, a retry worked, a search found.
    recovered: bool
    start_ts: int
    end_ts: int
    #: For a failed payment: "decline", "address" or "technical" (the last failure's).
    payment: str | None = None

    @property
    def minutes(self) -> float:
        return max(0, self.end_ts - self.start_ts) / 60_000


@dataclass(frozen=True, slots=True)
class Shopper:
    """What happened in a session before its outcome: the causes of it."""

    stage: int
    items: int
    frictions: tuple[Friction, ...] = ()

    @property
    def primary(self) -> Friction | None:
        """The first friction met: the one an intervention addresses."""
        return self.frictions[0] if self.frictions else None


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _clip(p: float) -> float:
    return min(P_MAX, max(P_MIN, p))


def baseline_logit(shopper: Shopper) -> float:
    """``logit p0``: intent minus what the friction cost (see the module docstring)."""
    z = INTENT + STAGE_LOGIT[shopper.stage] + CART_LOGIT * min(shopper.items, 3)
    minutes = 0.0
    for f in shopper.frictions:
        price = FRICTION_LOGIT.get(f.kind, 1.6) * (SEVERITY_BASE + SEVERITY * f.severity)
        z -= price * (RECOVERED if f.recovered else 1.0)
        minutes += f.minutes
    return z - TIME_LOGIT * min(minutes, MAX_MINUTES)


def effect(shopper: Shopper, action: str) -> float:
    """The true heterogeneous effect of ``action`` on this shopper's P(convert)."""
    if action == "none":
        return 0.0
    primary = shopper.primary
    kind = primary.kind if primary is not None else None
    stage = shopper.stage
    if action == "nudge":
        if kind == "checkout_failure":
            assert primary is not None
            return NUDGE_AT_PAYMENT.get(primary.payment or "technical", NUDGE_AT_PAYMENT["technical"])
        if kind == "form_struggle":
            return NUDGE_AT_FORM
        if kind == "search_struggle":
            return NUDGE_AT_SEARCH
        if kind == "help_request":
            return 0.0
        return NUDGE_WITH_CART if stage >= 2 else NUDGE_ANNOYS
    if action == "handoff":
        if kind == "help_request":
            return HANDOFF_ASKED
        if stage >= 3:
            return HANDOFF_STUCK_AT_CHECKOUT if kind in CHECKOUT_KINDS else HANDOFF_AT_CHECKOUT
        return HANDOFF_WITH_CART if stage == 2 else HANDOFF_UNWANTED
    raise ValueError(f"action = {action!r}: allowed {', '.join(ACTIONS)}")


def conversion_probability(
    shopper: Shopper, action: str, *, effects: str = "heterogeneous", uniform_effect: float = 0.0
) -> float:
    """P(convert) if ``action`` is what reached the shopper."""
    if effects not in EFFECTS:
        raise ValueError(f"effects = {effects!r}: allowed {', '.join(EFFECTS)}")
    p0 = _clip(_sigmoid(baseline_logit(shopper)))
    if action == "none":
        return p0
    if effects == "uniform":
        if action not in ACTIONS:
            raise ValueError(f"action = {action!r}: allowed {', '.join(ACTIONS)}")
        return _clip(p0 + uniform_effect)
    return _clip(p0 + effect(shopper, action))


@dataclass(frozen=True, slots=True)
class PotentialOutcomes:
    """P(convert) and the outcome under each action, from one shared draw."""

    p: dict[str, float]
    y: dict[str, bool]

    def realised(self, action: str | None) -> bool:
        """The outcome if ``action`` (None: nothing) was what reached the shopper."""
        return self.y[action or "none"]

    @property
    def varies(self) -> bool:
        """Does what the policy does change this session's outcome?"""
        return len(set(self.y.values())) > 1

    def as_dict(self) -> dict[str, dict[str, float] | dict[str, bool]]:
        return {"p": {a: round(v, 6) for a, v in self.p.items()}, "y": dict(self.y)}


def potential_outcomes(
    shopper: Shopper, fate: float, *, effects: str = "heterogeneous", uniform_effect: float = 0.0
) -> PotentialOutcomes:
    """Every action's P(convert) and outcome; ``fate`` is the session's uniform draw."""
    p = {a: conversion_probability(shopper, a, effects=effects, uniform_effect=uniform_effect)
         for a in ACTIONS}
    return PotentialOutcomes(p, {a: fate < pa for a, pa in p.items()})
