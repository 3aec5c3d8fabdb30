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

from typing import Any, ClassVar

from detectors.base import Signal, require, rising_edge
from detectors.events import Event, url_path


class HttpErrorBurst:
    name: ClassVar[str] = "http_error_burst"

    def __init__(self, min_errors: int = 3, window_ms: int = 30_000, min_status: int = 500) -> None:
        require("http_error_burst.min_errors", min_errors, 1, 100)
        require("http_error_burst.window_ms", window_ms, 1000, 3_600_000)
        require("http_error_burst.min_status", min_status, 400, 599)
        self.min_errors = min_errors
        self.window_ms = window_ms
        self.min_status = min_status

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
