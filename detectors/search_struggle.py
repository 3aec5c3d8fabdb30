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

from typing import Any, ClassVar

from detectors.base import Signal, require, rising_edge
from detectors.events import Event


class SearchStruggle:
    name: ClassVar[str] = "search_struggle"

    def __init__(
        self,
        min_zero_results: int = 2,
        window_ms: int = 300_000,
        min_rapid_searches: int = 3,
        rapid_gap_ms: int = 20_000,
    ) -> None:
        require("search_struggle.min_zero_results", min_zero_results, 1, 100)
        require("search_struggle.window_ms", window_ms, 1000, 86_400_000)
        require("search_struggle.min_rapid_searches", min_rapid_searches, 2, 100)
        require("search_struggle.rapid_gap_ms", rapid_gap_ms, 1, 600_000)
        self.min_zero_results = min_zero_results
        self.window_ms = window_ms
        self.min_rapid_searches = min_rapid_searches
        self.rapid_gap_ms = rapid_gap_ms

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
