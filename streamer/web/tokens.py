"""Session tokens: signed, expiring, bound to one session id (stdlib hmac, HMAC-SHA256).

Format: ``v1.<session id, base64url>.<expiry, unix seconds>.<signature, base64url>``,
the signature taken over ``v1``, the session id and the expiry. Nothing in it is
secret; it only proves that this server issued it for that session until then.

>>> signer = TokenSigner(b"k" * 32, ttl_s=60)
>>> token = signer.issue("s-1", now=1000)
>>> signer.verify(token, "s-1", now=1059)
1060
>>> signer.verify(token, "s-2", now=1000)
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 403 wrong_session: the token is for another session
>>> signer.verify(token, "s-1", now=1060)
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 401 expired_token: the token expired 0 s ago; ask POST ... for a new one
>>> signer.verify(token[:-2] + "xx", "s-1", now=1000)
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 403 bad_token: the signature does not match
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

VERSION = "v1"


class TokenError(Exception):
    """A token that does not open this stream: ``status`` 401 (ask again) or 403 (never)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_session_id() -> str:
    """A fresh, unguessable session id: sessions are created by the server, not chosen."""
    return "s_" + secrets.token_urlsafe(18)


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: float) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s = {ttl_s} must be > 0")
        self._key = secret
        self.ttl_s = ttl_s

    def _sign(self, session_id: str, expires: int) -> bytes:
        message = f"{VERSION}\x1f{session_id}\x1f{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, session_id: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expires = int(now + self.ttl_s)
        sig = self._sign(session_id, expires)
        return f"{VERSION}.{_b64(session_id.encode())}.{expires}.{_b64(sig)}"

    def expires(self, token: str) -> int:
        return int(token.split(".")[2])

    def verify(self, token: str | None, session_id: str, now: float | None = None,
               grace_s: float = 0.0) -> int:
        """The token's expiry (unix s) if it opens ``session_id``, else :class:`TokenError`.

        Signature first, then the session, then the time: a forged or foreign token is
        refused for good (403) whatever its expiry; only a genuine, expired one is 401.
        ``grace_s`` accepts a token that expired at most that long ago (for renewal).
        """
        if not token:
            raise TokenError(401, "missing_token", "pass ?token= (from POST /v1/sessions)")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
            raise TokenError(403, "bad_token", "not a v1 token")
        try:
            claimed = _unb64(parts[1]).decode()
            sig = _unb64(parts[3])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise TokenError(403, "bad_token", "not a v1 token") from None
        expires = int(parts[2])
        if not hmac.compare_digest(sig, self._sign(claimed, expires)):
            raise TokenError(403, "bad_token", "the signature does not match")
        if not hmac.compare_digest(claimed.encode(), session_id.encode()):
            raise TokenError(403, "wrong_session", "the token is for another session")
        now = time.time() if now is None else now
        if now >= expires + grace_s:
            raise TokenError(401, "expired_token",
                             f"the token expired {int(now - expires)} s ago; "
                             "ask POST /v1/sessions for a new one")
        return expires
