"""What every browser endpoint does before its own work: CORS, client limits, refusals.

Every refusal is a JSON ``{"error": reason, "detail": ...}`` with a status a client
can act on (403 never, 401 ask again, 413 split, 429 wait ``Retry-After`` s), counted
in ``frictionwatch_web_rejections_total{endpoint, reason}``.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from streamer.metrics import Metrics
from streamer.web.guard import Guard, Refusal
from streamer.web.tokens import TokenError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the CORS headers their answer needs, whether they may, and the
    client address their budgets are kept under."""

    cors: dict[str, str]
    refusal: Refusal | None
    client: str = "unknown"


def admit(guard: Guard, request: Request, *, limit: bool = True) -> Caller:
    """Check the origin (and, with ``limit``, the client's request budget)."""
    origin, host = request.headers.get("Origin"), request.headers.get("Host")
    refusal = guard.check_origin(origin, host)
    peer = request.remote  # type: ignore[attr-defined]
    client = guard.client_address(peer, request.headers.get("X-Forwarded-For"))
    if refusal is None and limit:
        refusal = guard.check_client(client)
    return Caller(guard.cors_headers(origin, host), refusal, client)


def preflight(guard: Guard, view: View, request: Request, metrics: Metrics,
              endpoint: str) -> Response:
    """The answer to a CORS preflight (OPTIONS)."""
    origin, host = request.headers.get("Origin"), request.headers.get("Host")
    refusal = guard.check_origin(origin, host)
    if refusal:
        return refuse(view, metrics, endpoint, refusal, {})
    return view.bytes(b"", status=204, headers=guard.preflight_headers(origin, host))


def refuse(view: View, metrics: Metrics, endpoint: str, refusal: Refusal | TokenError,
           cors: dict[str, str]) -> Response:
    """Answer a refusal as JSON, counted by endpoint and reason."""
    metrics.web_rejections.labels(endpoint, refusal.reason).inc()
    headers = {**cors, **getattr(refusal, "headers", {})}
    return view.json({"error": refusal.reason, "detail": refusal.detail},
                     status=refusal.status, headers=headers or None)


def unexpected(endpoint: str, exc: Exception) -> Refusal:
    """The refusal for an exception a view did not expect: still JSON with a reason.
    The broker being away is ``503 unavailable`` (retry); anything else is a bug,
    ``500 internal_error``, logged by type and place only: the message of an exception
    may quote the request, and the request may hold personal data."""
    if isinstance(exc, KafkaError):
        return Refusal(503, "unavailable", "the event broker is not reachable; retry",
                       {"Retry-After": "5"})
    where = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    log.error("%s failed with %s\n%s", endpoint, type(exc).__name__, where)
    return Refusal(500, "internal_error", "the request could not be handled; it was logged")
