"""HTTP error burst: the site's backend keeps failing the customer.

Fires when ``min_errors`` (default 3) ``http_error`` events with ``status >=
min_status`` (default 500) arrive within ``window_ms`` (default 30 s). Stricter than
OpenReplay's "bad request" (every response >= 400, one at a time) because a single
5xx is usually retried away unnoticed and 4xx are mostly the client's business (a
missing image, an expired token); three server errors in half a minute are an outage
the customer is living through.

Once per episode: it fires when the burst reaches ``min_errors`` and stays quiet while
errors keep coming; once the errors thin out below the threshold within the window it
is armed again. The evidence carries the last URL's path (no query string: PII).

>>> detector = HttpErrorBurst()
>>> state = {}
>>> error = {"session_id": "s", "type": "http_error", "ts": 0, "url": "/api/cart?u=1",
...          "status": 503}
>>> signals = [detector.step(state, dict(error, ts=t)) for t in (0, 5000, 9000, 12_000)]
>>> [s is not None for s in signals]
[False, False, True, False]
>>> signals[2].evidence
{'errors': 3, 'span_ms': 9000, 'status': 503, 'url': '/api/cart'}
>>> [detector.step({}, dict(error, ts=t, status=404)) for t in (0, 1, 2)]  # 4xx: not ours
[None, None, None]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from detectors.base import DetectorSettings, Signal, rising_edge
from detectors.config import setting
from detectors.events import Event, url_path


@dataclass
class HttpErrorBurst(DetectorSettings):
    name: ClassVar[str] = "http_error_burst"
    types: ClassVar[frozenset[str]] = frozenset({"http_error"})
    section_doc: ClassVar[str] = "The site's backend keeps failing the customer."

    min_errors: int = setting(3, low=1, high=100,
                              doc="responses with status >= min_status...")
    window_ms: int = setting(30_000, low=1000, high=3_600_000, doc="...within this window")
    min_status: int = setting(500, low=400, high=599, doc="lowest HTTP status that counts")

    def step(self, state: dict[str, Any], event: Event) -> Signal | None:
        if event["type"] != "http_error" or event["status"] < self.min_status:
            return None
        ts = event["ts"]
        recent = [t for t in state.get("ts", []) if 0 <= ts - t <= self.window_ms]
        recent.append(ts)
        state["ts"] = recent[-self.min_errors :]
        if not rising_edge(state, len(state["ts"]) >= self.min_errors):
            return None
        return Signal(
            self.name,
            strength=0.8,
            ts=ts,
            evidence={
                "errors": len(state["ts"]),
                "span_ms": ts - state["ts"][0],
                "status": event["status"],
                "url": url_path(event["url"]),
            },
        )
