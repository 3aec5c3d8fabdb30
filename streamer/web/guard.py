"""Who may call the browser endpoints, and how often: CORS, site keys, rate limits.

One :class:`Guard` per worker, built from settings. Each check returns ``None`` when
the request may go on, or a :class:`Refusal` (HTTP status, reason, detail, headers)
that the view answers as JSON and counts in ``frictionwatch_web_rejections_total``.
Reasons are a fixed set (:data:`REASONS`): they are metric labels.

>>> from streamer.settings import Settings
>>> guard = Guard.from_settings(Settings(site_keys="pk_a,pk_b", cors_origins="https://shop.example"))
>>> guard.check_origin("https://shop.example", "api.example:443") is None
True
>>> guard.check_origin("https://evil.example", "api.example:443").reason
'origin_not_allowed'
>>> guard.check_origin(None, "api.example:443") is None  # not a browser: no CORS
True
>>> guard.check_site_key("pk_b") is None, guard.check_site_key("pk_x").reason
(True, 'bad_site_key')
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from streamer.metrics import WEB_ENDPOINTS, WEB_REASONS
from streamer.settings import Settings
from streamer.web.ratelimit import TokenBuckets
from streamer.web.tokens import TokenSigner

#: Every reason a browser request is refused for, and the endpoints that count them:
#: bounded sets, defined with the metrics they label.
REASONS: Final = WEB_REASONS
ENDPOINTS: Final = WEB_ENDPOINTS

SITE_KEY_HEADER = "X-FW-Site-Key"


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Guard:
    site_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    clients: TokenBuckets
    sessions: TokenBuckets
    signer: TokenSigner
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        return cls(
            site_keys=_split(settings.site_keys),
            cors_origins=tuple(o.rstrip("/") for o in _split(settings.cors_origins)),
            trusted_proxies=_split(settings.trusted_proxies),
            clients=TokenBuckets(settings.rate_client_per_s, settings.rate_client_burst),
            sessions=TokenBuckets(settings.rate_session_per_s, settings.rate_session_burst),
            signer=TokenSigner(settings.secret.encode(), settings.token_ttl_s),
        )

    # -- CORS -------------------------------------------------------------------------
    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """No Origin (not a browser), the worker's own origin, or one on the allow-list."""
        if not origin:
            return True
        origin = origin.rstrip("/")
        if host and origin.split("://", 1)[-1] == host:
            return True
        return "*" in self.cors_origins or origin in self.cors_origins

    def check_origin(self, origin: str | None, host: str | None) -> Refusal | None:
        if self.origin_allowed(origin, host):
            return None
        return Refusal(403, "origin_not_allowed",
                       f"origin {origin!r} is not in the CORS allow-list (FW_CORS_ORIGINS)")

    def cors_headers(self, origin: str | None, host: str | None) -> dict[str, str]:
        """What an allowed cross-origin caller needs to read our answer (and Retry-After)."""
        if not origin or not self.origin_allowed(origin, host):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin",
        }

    def preflight_headers(self, origin: str | None, host: str | None) -> dict[str, str]:
        return {
            **self.cors_headers(origin, host),
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": f"Content-Type, {SITE_KEY_HEADER}",
            "Access-Control-Max-Age": "600",
        }

    # -- site keys --------------------------------------------------------------------
    def check_site_key(self, key: object) -> Refusal | None:
        if not self.site_keys:
            return None
        if not key:
            return Refusal(403, "missing_site_key",
                           f"send the site key as {SITE_KEY_HEADER}, ?site_key= or \"site_key\"")
        if not isinstance(key, str) or not any(
            hmac.compare_digest(key.encode(), k.encode()) for k in self.site_keys
        ):
            return Refusal(403, "bad_site_key", "the site key is not one of this worker's")
        return None

    # -- rate limits ------------------------------------------------------------------
    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The peer, or the last hop a trusted proxy names in X-Forwarded-For."""
        address = peer or "unknown"
        if forwarded_for and address in self.trusted_proxies:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            if hops:
                return hops[-1]
        return address

    def check_client(self, client: str) -> Refusal | None:
        wait = self.clients.take(client, 1, self.clock())
        if wait == 0.0:
            return None
        return _too_many("rate_limited_client", f"too many requests from {client}", wait)

    def check_sessions(self, counts: Iterable[tuple[str, int]]) -> Refusal | None:
        """All of a beacon's sessions have room for their events, or nothing is taken."""
        now = self.clock()
        counts = list(counts)
        worst, who = 0.0, ""
        for session_id, n in counts:
            wait = self.sessions.wait(session_id, n, now)
            if wait > worst:
                worst, who = wait, session_id
        if worst == math.inf:
            return Refusal(413, "too_large",
                           f"more events for session {who!r} in one request than its burst "
                           f"({self.sessions.burst:g}); split the beacon")
        if worst > 0:
            return _too_many("rate_limited_session",
                             f"session {who!r} sends events faster than "
                             f"{self.sessions.rate:g}/s", worst)
        for session_id, n in counts:
            self.sessions.charge(session_id, n, now)
        return None


def _too_many(reason: str, detail: str, wait: float) -> Refusal:
    retry = max(1, math.ceil(wait))
    return Refusal(429, reason, f"{detail}; retry after {retry} s", {"Retry-After": str(retry)})
