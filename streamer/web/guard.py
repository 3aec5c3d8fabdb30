"""Who may call the browser endpoints, and how often: CORS, site keys, session tokens,
rate limits.

One :class:`Guard` per worker, built from settings. Each check returns ``None`` when
the request may go on, or a :class:`Refusal` (HTTP status, reason, detail, headers)
that the view answers as JSON and counts in ``frictionwatch_web_rejections_total``.
Reasons are a fixed set (:data:`REASONS`): they are metric labels.

The site key is a coarse filter (it is in every page's source); what a browser may do
to a session is decided by the session's token, which only the server issues
(:mod:`streamer.web.tokens`). Budgets are per client address: requests/s, events/s and
new sessions/min, and per session: events/s.

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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from streamer.metrics import WEB_ENDPOINTS, WEB_REASONS
from streamer.settings import Settings
from streamer.web.ratelimit import TokenBuckets
from streamer.web.tokens import TokenError, TokenSigner

#: Every reason a browser request is refused for, and the endpoints that count them:
#: bounded sets, defined with the metrics they label.
REASONS: Final = WEB_REASONS
ENDPOINTS: Final = WEB_ENDPOINTS

SITE_KEY_HEADER = "X-FW-Site-Key"
#: A beacon's session token: this header, or ``"token"`` in the body (sendBeacon cannot
#: set headers), or ``"tokens": {session id: token}`` for a beacon of several sessions.
TOKEN_HEADER = "X-FW-Token"
MAX_TOKENS_PER_BEACON = 8
#: How long after its expiry a token still carries events: a hidden page flushes its
#: last events with sendBeacon, which cannot renew the token first.
COLLECT_GRACE_S = 300.0


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
    #: Events per client address, across its sessions; new sessions per client.
    client_events: TokenBuckets = field(default_factory=lambda: TokenBuckets(200.0, 1000.0))
    new_sessions: TokenBuckets = field(default_factory=lambda: TokenBuckets(0.5, 30.0))
    #: Collect only events whose session's token comes with them.
    require_token: bool = True
    #: Open intervention streams per client address.
    streams_per_client: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        return cls(
            site_keys=_split(settings.site_keys),
            cors_origins=tuple(o.rstrip("/") for o in _split(settings.cors_origins)),
            trusted_proxies=_split(settings.trusted_proxies),
            clients=TokenBuckets(settings.rate_client_per_s, settings.rate_client_burst),
            sessions=TokenBuckets(settings.rate_session_per_s, settings.rate_session_burst),
            signer=TokenSigner(settings.secret.encode(), settings.token_ttl_s),
            client_events=TokenBuckets(settings.rate_client_events_per_s,
                                       settings.rate_client_events_burst),
            new_sessions=TokenBuckets(settings.new_sessions_per_min / 60,
                                      max(1.0, settings.new_sessions_per_min)),
            require_token=settings.collect_requires_token,
            streams_per_client=settings.sse_streams_per_client,
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
            "Access-Control-Allow-Headers": f"Content-Type, {SITE_KEY_HEADER}, {TOKEN_HEADER}",
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

    def check_new_session(self, client: str) -> Refusal | None:
        """One more new session for ``client`` (renewals are not new)."""
        wait = self.new_sessions.take(client, 1, self.clock())
        if wait == 0.0:
            return None
        return _too_many("rate_limited_new_sessions",
                         f"{client} starts sessions faster than "
                         f"{self.new_sessions.rate * 60:g} a minute", wait)

    # -- session tokens on collect ----------------------------------------------------
    def check_tokens(self, session_ids: Collection[str], token: object,
                     tokens: object) -> Refusal | None:
        """Every session of a beacon has its own genuine token: ``token`` (one session)
        or ``tokens`` (session id -> token). Without :attr:`require_token`, a beacon
        without any token passes; one that carries tokens is still checked.

        >>> from streamer.settings import Settings
        >>> g = Guard.from_settings(Settings(secret="k" * 32))
        >>> t = g.signer.issue("s_a")
        >>> g.check_tokens(["s_a"], t, None) is None, g.check_tokens(["s_b"], t, None).reason
        (True, 'wrong_session')
        >>> g.check_tokens(["s_a"], None, None).status, g.check_tokens(["s_a"], None, {"s_a": t})
        (401, None)
        """
        if token is None and tokens is None:
            if not self.require_token:
                return None
            return Refusal(401, "missing_token", f"send the session's token ({TOKEN_HEADER}, "
                           "\"token\" or \"tokens\"; from POST /v1/sessions)")
        if tokens is not None and (not isinstance(tokens, dict)
                                   or len(tokens) > MAX_TOKENS_PER_BEACON):
            return Refusal(400, "bad_token", "\"tokens\" must be an object of at most "
                           f"{MAX_TOKENS_PER_BEACON} session id: token pairs")
        for session_id in session_ids:
            given = tokens.get(session_id) if isinstance(tokens, dict) else None
            if given is None:
                given = token
            if given is None:
                return Refusal(403, "wrong_session", f"no token for session {session_id!r}")
            try:
                self.signer.verify(given, session_id, grace_s=COLLECT_GRACE_S)
            except TokenError as exc:
                return Refusal(exc.status, exc.reason, exc.detail)
        return None

    def check_beacon(self, client: str, counts: Iterable[tuple[str, int]]) -> Refusal | None:
        """A beacon's events fit the client's event budget, its sessions' budgets and
        (when tokens are not required, so that sessions are whatever a client names)
        the client's budget of new sessions; all are charged, or nothing is."""
        now = self.clock()
        counts = list(counts)
        total = sum(n for _, n in counts)
        wait = self.client_events.wait(client, total, now)
        if wait == math.inf:
            return Refusal(413, "too_large", f"{total} events in one request, more than a "
                           f"client's burst ({self.client_events.burst:g}); split the beacon")
        if wait > 0:
            return _too_many("rate_limited_events", f"{client} sends events faster than "
                             f"{self.client_events.rate:g}/s", wait)
        new = 0 if self.require_token else sum(1 for s, _ in counts if s not in self.sessions)
        if new:
            wait = self.new_sessions.wait(client, new, now)
            if wait > 0:
                return _too_many("rate_limited_new_sessions",
                                 f"{client} starts sessions faster than "
                                 f"{self.new_sessions.rate * 60:g} a minute", min(wait, 60.0))
        refusal = self.check_sessions(counts)
        if refusal:
            return refusal
        self.client_events.charge(client, total, now)
        if new:
            self.new_sessions.charge(client, new, now)
        return None

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
