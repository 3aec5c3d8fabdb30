"""Navigation loop: going round in circles between pages.

Two patterns, both Microsoft Clarity's idea of lost navigation, one signal:

- **ping-pong**: the last ``loop_views`` page views (default 4) alternate between two
  pages, A -> B -> A -> B, within ``window_ms`` (default 120 s): the customer keeps
  checking one page against another (cart and checkout, two sign-in pages) because
  neither gets them on.
- **quick backs**: a page left for the one before it after less than
  ``quick_back_ms`` (default 3 s; Clarity uses the page's usual dwell, we have no
  history, and 3 s is too short to read anything), ``min_quick_backs`` times
  (default 2) within ``window_ms``: pogo-sticking out of results that are not what
  was promised.

What keeps legitimate quick navigation quiet: one quick back is normal (a glance at
the cart from a product page and straight back: product -> cart -> product); so is
moving on quickly without returning (category -> product -> another product), and a
single return to a page (A -> B -> A, then elsewhere) however fast. Reloads (the same
path twice in a row) are not navigation. Pages are compared by path: query strings and
fragments are dropped (they carry filters, sort orders and PII).

Once per episode: after firing it stays quiet until a page view that is neither a
quick back nor a step of the ping-pong; quick backs are then counted afresh.

>>> detector = NavigationLoop()
>>> state = {}
>>> views = [{"session_id": "s", "type": "page_view", "ts": t * 10_000, "page": p}
...          for t, p in enumerate(["/cart", "/checkout", "/cart", "/checkout", "/cart"])]
>>> [detector.step(state, v) is not None for v in views]
[False, False, False, True, False]
>>> peek = [dict(views[0], page="/p/1"), dict(views[1], page="/cart", ts=10_000),
...         dict(views[2], page="/p/1", ts=11_500)]
>>> [detector.step({}, v) for v in peek]  # product -> cart -> product, quickly: normal
[None, None, None]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal
from detectors.config import setting
from detectors.events import Event, url_path


@dataclass
class NavigationLoop(DetectorSettings):
    name: ClassVar[str] = "navigation_loop"
    types: ClassVar[frozenset[str]] = frozenset({"page_view"})
    section_doc: ClassVar[str] = (
        "Going round in circles: ping-pong between two pages, or quick backs.")

    loop_views: int = setting(4, low=4, high=20,
                              doc="page views alternating between two pages: A->B->A->B")
    quick_back_ms: int = setting(
        3000, low=1, high=60_000,
        doc="a page left for the previous one this fast is a quick back")
    min_quick_backs: int = setting(2, low=1, high=20, doc="quick backs that make a loop")
    window_ms: int = setting(120_000, low=1000, high=3_600_000,
                             doc="...within this window (both patterns)")

    def _ping_pong(self, trail: list[list[Any]]) -> bool:
        if len(trail) < self.loop_views:
            return False
        last = trail[-self.loop_views :]
        a, b = last[0][0], last[1][0]
        if a == b:
            return False
        for i in range(2, len(last)):  # a plain loop: this runs on every page view
            if last[i][0] != (b if i % 2 else a):
                return False
        return bool(0 <= last[-1][1] - last[0][1] <= self.window_ms)

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "page_view":
            return None
        ts, page = event["ts"], url_path(event["page"])
        trail: list[list[Any]] = state.setdefault("trail", [])  # [[path, arrival ts], ...]
        if trail and trail[-1][0] == page:
            return None  # a reload
        quick_back = (
            len(trail) >= 2 and trail[-2][0] == page and 0 <= ts - trail[-1][1] < self.quick_back_ms
        )
        trail.append([page, ts])
        del trail[: -max(self.loop_views, 2)]
        backs = [t for t in state.get("backs", []) if 0 <= ts - t <= self.window_ms]
        if quick_back:
            backs.append(ts)
        state["backs"] = backs[-self.min_quick_backs :]
        ping_pong = self._ping_pong(trail)
        if state.get("fired"):
            if not (quick_back or ping_pong):
                state.update(fired=False, backs=[])
            return None
        if not ping_pong and len(state["backs"]) < self.min_quick_backs:
            return None
        state.update(fired=True, backs=[])
        pattern = "ping_pong" if ping_pong else "quick_backs"
        return Signal(
            self.name,
            strength=0.6,
            ts=ts,
            evidence={
                "pattern": pattern,
                "pages": [view[0] for view in trail[-self.loop_views :]]
                if ping_pong
                else [view[0] for view in trail[-3:]],
            },
        )
