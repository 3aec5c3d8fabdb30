"""Uplift of interventions on conversion: treated versus holdout, with an interval.

The holdout is random (a hash of the session id), so the difference of conversion
rates between sessions that were shown an intervention and sessions that would have
been but were held out estimates the causal effect. The interval is Newcombe's
hybrid score interval for a difference of two proportions (method 10 of Newcombe
1998): it behaves at small counts and rates near 0 or 1, where the Wald interval
does not.

>>> result = uplift(treated=(300, 1000), holdout=(240, 1000))
>>> result["estimate"], result["low"] < 0.06 < result["high"], result["low"] > 0
(0.06, True, True)
>>> uplift(treated=(0, 0), holdout=(5, 10))["estimate"] is None
True
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of one proportion."""
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return (centre - margin) / scale, (centre + margin) / scale


def uplift(
    *, treated: tuple[int, int], holdout: tuple[int, int], confidence: float = 0.95
) -> dict[str, Any]:
    """``treated`` and ``holdout`` are (conversions, sessions)."""
    (c1, n1), (c2, n2) = treated, holdout
    out: dict[str, Any] = {
        "treated": {"converted": c1, "sessions": n1, "rate": c1 / n1 if n1 else None},
        "holdout": {"converted": c2, "sessions": n2, "rate": c2 / n2 if n2 else None},
        "confidence": confidence,
        "estimate": None,
        "low": None,
        "high": None,
    }
    if not n1 or not n2:
        return out
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p1, p2 = c1 / n1, c2 / n2
    l1, u1 = wilson(c1, n1, z)
    l2, u2 = wilson(c2, n2, z)
    d = p1 - p2
    out.update(
        estimate=round(d, 6),
        low=round(d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), 6),
        high=round(d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2), 6),
    )
    return out
