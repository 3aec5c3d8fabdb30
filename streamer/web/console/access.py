"""Who may open the console: an operator token, or, without one, this machine only.

- ``FW_CONSOLE_TOKEN`` unset: the console and its stream answer only when the TCP peer
  is a loopback address (127.0.0.0/8, ::1). The peer is the socket's, never a
  forwarded header: a proxy on the same machine makes every client local, so a worker
  behind one must set a token.
- ``FW_CONSOLE_TOKEN`` set: every request needs it, local or not, as
  ``Authorization: Bearer <token>`` or ``?token=<token>`` (an EventSource cannot set
  headers). Compared in constant time.

Refusals are :class:`~streamer.web.guard.Refusal` answered by
:func:`streamer.web.http.refuse` (JSON, counted under endpoint ``console``).

>>> local = ConsoleAccess("")
>>> local.check("127.0.0.1", None, None) is None, local.check("::1", None, None) is None
(True, True)
>>> local.check("192.0.2.7", None, None).reason
'local_only'
>>> guarded = ConsoleAccess("s3cret-operator-token")
>>> guarded.check("127.0.0.1", None, None).status, guarded.check("127.0.0.1", None, "nope").status
(401, 403)
>>> guarded.check("192.0.2.7", "Bearer s3cret-operator-token", None) is None
True
>>> guarded.check("192.0.2.7", None, "s3cret-operator-token") is None
True
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

from streamer.web.guard import Refusal


def is_loopback(peer: str | None) -> bool:
    """Whether a socket peer address is this machine's loopback (IPv4-mapped included).

    >>> is_loopback("127.0.0.1"), is_loopback("::ffff:127.0.0.1"), is_loopback("10.0.0.1")
    (True, True, False)
    >>> is_loopback(None), is_loopback("not an address")
    (False, False)
    """
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True)
class ConsoleAccess:
    """The console's door: ``token`` empty means loopback clients only."""

    token: str = field(default="", repr=False)

    def check(self, peer: str | None, authorization: str | None,
              query_token: str | None) -> Refusal | None:
        if not self.token:
            if is_loopback(peer):
                return None
            return Refusal(403, "local_only",
                           "the console answers only on 127.0.0.1 and ::1 unless "
                           "FW_CONSOLE_TOKEN is set on the worker")
        presented = _bearer(authorization) or query_token
        if not presented:
            return Refusal(401, "missing_token",
                           "send the operator token as Authorization: Bearer, or ?token=",
                           {"WWW-Authenticate": 'Bearer realm="frictionwatch console"'})
        if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"),
                                   self.token.encode("utf-8", "surrogatepass")):
            return Refusal(403, "bad_token", "that is not the console's operator token")
        return None


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive).

    >>> _bearer("Bearer abc"), _bearer("bearer  abc "), _bearer("Basic abc"), _bearer(None)
    ('abc', 'abc', None, None)
    """
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
