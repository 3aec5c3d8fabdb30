"""The one contract every detector keeps.

A detector is a small object built from its settings (public, immutable, each declared
once as a dataclass field with :func:`detectors.config.setting` and checked when the
object is made) that looks at one event at a time together with its own slice of the
session's state, and may return a :class:`Signal`. The state is a plain dict the
detector owns: JSON-serializable, bounded in size, and the only thing it may remember,
so a session can move between workers with its changelog. Time is the events' ``ts``;
a detector never reads the clock.

>>> from detectors.help_request import HelpRequest
>>> state = {}
>>> HelpRequest().step(state, {"session_id": "s", "type": "help_request", "ts": 9})
Signal(detector='help_request', strength=1.0, ts=9, action='handoff', evidence={'channel': None})
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from detectors.config import check, setting
from detectors.events import Event

Action = Literal["nudge", "handoff"]


@dataclass(frozen=True, slots=True)
class Signal:
    """One finding: which detector, how strong (0..1), when, and what it saw.

    ``action`` is what the detector asks for at least; the policy may do less
    (cooldown, cap, holdout) but never turns a requested handoff into a nudge.
    """

    detector: str
    strength: float
    ts: int
    action: Action = "nudge"
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "strength": self.strength, "evidence": self.evidence}


class Detector(Protocol):
    """Looks at one event with its own state; returns a signal or None.

    A detector may also declare ``types: ClassVar[frozenset[str]]``, the event types
    its ``step`` reads (it returns None on every other type and leaves its state as it
    was): the engine then calls it on those types only. Without it, on every event.
    """

    name: ClassVar[str]

    def step(self, state: dict[str, Any], event: Event) -> Signal | None: ...


@dataclass
class DetectorSettings:
    """What every detector's config section takes; a detector derives from it.

    A detector is a dataclass: each of its settings is a field made with
    :func:`detectors.config.setting` (default, allowed range, doc), checked here when
    the detector is made, however it is made. ``enabled`` (keyword-only, after the
    detector's own settings) says whether :func:`detectors.registry.build` runs it.

    >>> from detectors.rage_click import RageClick
    >>> RageClick(min_clicks=4, enabled=False)  # doctest: +ELLIPSIS
    RageClick(enabled=False, min_clicks=4, max_interval_ms=1000, ...)
    >>> RageClick(min_clicks=1)
    Traceback (most recent call last):
    ...
    detectors.errors.ConfigError: rage_click.min_clicks = 1 is out of range: allowed 2 to 100
    """

    _: KW_ONLY
    enabled: bool = setting(True, doc="false: this detector does not run")

    def __post_init__(self) -> None:
        check(self)


def rising_edge(state: dict[str, Any], active: bool) -> bool:
    """True once when ``active`` turns on, then False until it has been off again.

    The "fires once per episode" rule of detectors whose condition stays true for a
    while (a burst of errors, a scrolling spree).

    >>> state = {}
    >>> [rising_edge(state, a) for a in (False, True, True, False, True)]
    [False, True, False, False, True]
    """
    if not active:
        state["fired"] = False
        return False
    if state.get("fired"):
        return False
    state["fired"] = True
    return True
