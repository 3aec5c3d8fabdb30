"""Session tokens: signed, expiring, bound to one session id (stdlib hmac, HMAC-SHA256).

Format, strict ASCII, one canonical spelling per token (anything else is ``bad_token``,
never an exception):

    v1.<session id: base64url, no padding>.<expiry: unix seconds, 1-12 digits, no
    leading zero>.<signature: HMAC-SHA256, base64url, exactly 43 characters>

the signature taken over ``v1``, the session id and the expiry. Nothing in it is
secret; it only proves that this server issued it for that session until then. The
format is checked before anything is decoded: ``int()`` and base64 decoding accept far
more than we write (other scripts' digits, ``²``, thousands of digits, characters
dropped from inside a signature), and a token must not have two spellings.

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
>>> signer.verify(token[:-2] + "AA", "s-1", now=1000)
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 403 bad_token: the signature does not match
>>> signer.verify(token[:-1] + "J", "s-1", now=1000)  # the same bytes, spelled otherwise
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 403 bad_token: not a v1 token
>>> signer.verify(token.replace(".1060.", ".١٠٦٠."), "s-1", now=1000)  # Arabic-Indic digits
Traceback (most recent call last):
...
streamer.web.tokens.TokenError: 403 bad_token: not a v1 token
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time

VERSION = "v1"
#: The longest session id a token may name (the events' cap on ids), and so the token.
MAX_SESSION_BYTES = 256
_MAX_CLAIM = (MAX_SESSION_BYTES * 4 + 2) // 3  # base64 of the longest id, unpadded
MAX_TOKEN_CHARS = len(VERSION) + 3 + _MAX_CLAIM + 12 + 43
#: The whole grammar, ASCII only (``[0-9]``, never ``\d``, which matches any script's
#: digits). The session and signature parts must also re-encode to themselves.
_FORMAT = re.compile(
    rf"v1\.([A-Za-z0-9_-]{{2,{_MAX_CLAIM}}})\.([1-9][0-9]{{0,11}})\.([A-Za-z0-9_-]{{43}})"
)


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
        if not session_id or len(session_id.encode()) > MAX_SESSION_BYTES:
            raise ValueError(f"a session id is 1 to {MAX_SESSION_BYTES} bytes")
        now = time.time() if now is None else now
        expires = int(now + self.ttl_s)
        sig = self._sign(session_id, expires)
        return f"{VERSION}.{_b64(session_id.encode())}.{expires}.{_b64(sig)}"

    def expires(self, token: str) -> int:
        return int(token.split(".")[2])

    def verify(self, token: object, session_id: object, now: float | None = None,
               grace_s: float = 0.0) -> int:
        """The token's expiry (unix s) if it opens ``session_id``, else :class:`TokenError`.

        Signature first, then the session, then the time: a forged or foreign token is
        refused for good (403) whatever its expiry; only a genuine, expired one is 401.
        ``grace_s`` accepts a token that expired at most that long ago (for renewal).
        Whatever ``token`` and ``session_id`` are, nothing but :class:`TokenError` is
        raised.
        """
        if token is None or token == "":
            raise TokenError(401, "missing_token", "pass ?token= (from POST /v1/sessions)")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise TokenError(403, "bad_token", "not a v1 token")
        match = _FORMAT.fullmatch(token)
        if match is None:
            raise TokenError(403, "bad_token", "not a v1 token")
        claim, expiry, signature = match.groups()
        try:
            claimed_raw, sig = _unb64(claim), _unb64(signature)
            claimed = claimed_raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise TokenError(403, "bad_token", "not a v1 token") from None
        if _b64(claimed_raw) != claim or _b64(sig) != signature:
            raise TokenError(403, "bad_token", "not a v1 token")  # a second spelling
        expires = int(expiry)
        if not hmac.compare_digest(sig, self._sign(claimed, expires)):
            raise TokenError(403, "bad_token", "the signature does not match")
        wanted = session_id.encode("utf-8", "surrogatepass") if isinstance(session_id, str) else b""
        if not wanted or not hmac.compare_digest(claimed_raw, wanted):
            raise TokenError(403, "wrong_session", "the token is for another session")
        now = time.time() if now is None else now
        if now >= expires + grace_s:
            raise TokenError(401, "expired_token",
                             f"the token expired {int(now - expires)} s ago; "
                             "ask POST /v1/sessions for a new one")
        return expires
