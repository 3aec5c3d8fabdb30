"""Search struggle: the customer cannot find it with search.

Two patterns, one signal:

- **zero results**: ``min_zero_results`` (default 2) searches in a row that found
  nothing, each within ``window_ms`` (default 5 min) of the one before. One empty
  search followed by a good one is a typo fixed; two empty ones in a row are a
  catalogue or a search engine failing the customer.
- **rapid reformulations**: ``min_rapid_searches`` (default 3) searches, each within
  ``rapid_gap_ms`` (default 20 s) of the previous one, with no move away from the
  results in between. Refining a query once is normal; rewriting it twice more
  without opening a single result means the results are not what was asked for.
  Moving on from the results (a second page view after a search: the first is the
  results page itself) ends the run.

Once per episode: it fires when either pattern first holds and stays quiet while the
customer is still struggling; a search that holds neither pattern arms it again.

>>> detector = SearchStruggle()
>>> state = {}
>>> search = {"session_id": "s", "type": "search", "ts": 0, "query": "q", "results": 0}
>>> [detector.step(state, dict(search, ts=t)) is not None for t in (0, 30_000, 60_000)]
[False, True, False]
>>> typo = [dict(search, ts=0), dict(search, ts=9000, results=12)]
>>> [detector.step({}, s) for s in typo]  # one empty search, then a good one
[None, None]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal, rising_edge
from detectors.config import setting
from detectors.events import Event


@dataclass
class SearchStruggle(DetectorSettings):
    name: ClassVar[str] = "search_struggle"
    types: ClassVar[frozenset[str]] = frozenset({"page_view", "search"})
    section_doc: ClassVar[str] = (
        "Search keeps failing: searches with no results, or rapid reformulations.")

    min_zero_results: int = setting(2, low=1, high=100,
                                    doc="consecutive searches with no results...")
    window_ms: int = setting(300_000, low=1000, high=86_400_000,
                             doc="...each within this long of the one before")
    min_rapid_searches: int = setting(
        3, low=2, high=100, doc="or searches in quick succession, no result opened")
    rapid_gap_ms: int = setting(20_000, low=1, high=600_000,
                                doc="most time between two quick searches")

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        kind = event["type"]
        if kind == "page_view":
            if "last_ts" in state:
                state["views"] = state.get("views", 0) + 1
            return None
        if kind != "search":
            return None
        ts = event["ts"]
        gap = ts - state["last_ts"] if "last_ts" in state else None
        rapid = gap is not None and 0 <= gap <= self.rapid_gap_ms and state.get("views", 0) <= 1
        chain = state.get("chain", 0) + 1 if rapid else 1
        if event["results"] > 0:
            zeros = 0
        elif gap is not None and 0 <= gap <= self.window_ms:
            zeros = state.get("zeros", 0) + 1
        else:
            zeros = 1
        state.update(last_ts=ts, views=0, chain=chain, zeros=zeros)
        struggling = zeros >= self.min_zero_results or chain >= self.min_rapid_searches
        if not rising_edge(state, struggling):
            return None
        zero = zeros >= self.min_zero_results
        return Signal(
            self.name,
            strength=0.6,
            ts=ts,
            evidence={
                "pattern": "zero_results" if zero else "rapid_reformulations",
                "searches": zeros if zero else chain,
            },
        )
