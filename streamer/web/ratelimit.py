"""Token buckets per key (a client address, a session id) in bounded memory.

At most ``max_keys`` buckets are kept, least recently used first out; a bucket that
falls out was either idle (and would be full again) or belongs to a flood of keys
that the per-client bucket already limits. Time is passed in, so tests never sleep.

>>> buckets = TokenBuckets(rate=2.0, burst=3.0, max_keys=100)
>>> [buckets.take("ip", 1, now=0.0) for _ in range(4)]
[0.0, 0.0, 0.0, 0.5]
>>> buckets.take("ip", 1, now=0.5)  # half a second refilled one token
0.0
>>> buckets.take("ip", 5, now=0.5)  # more than the burst can ever hold
inf
"""

from __future__ import annotations

import math
from collections import OrderedDict


class TokenBuckets:
    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate = {rate} must be > 0 and burst = {burst} >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # key -> (tokens, at); OrderedDict keeps the LRU order for eviction.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a bucket (was charged lately; evicted keys are new again)."""
        return key in self._buckets

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def wait(self, key: str, cost: float, now: float) -> float:
        """Seconds until ``cost`` tokens are there (0: now; inf: never), taking nothing."""
        if cost > self.burst:
            return math.inf
        missing = cost - self._level(key, now)
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, key: str, cost: float, now: float) -> float:
        """Take ``cost`` tokens if there; else take nothing and return the wait."""
        wait = self.wait(key, cost, now)
        if wait == 0.0:
            self.charge(key, cost, now)
        return wait

    def charge(self, key: str, cost: float, now: float) -> None:
        self._buckets[key] = (self._level(key, now) - cost, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
