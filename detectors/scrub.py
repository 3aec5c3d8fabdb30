"""Personal data out of free text, once, at the decode boundary.

Every string a browser or a foreign producer sends is untrusted and may carry what a
customer typed or what a page put in a URL: e-mail addresses, card numbers, phone
numbers, session or password-reset tokens. :func:`detectors.events.validate_event`
passes each free-text field through :func:`clean_text` (and each code through
:func:`clean_code`) before the event reaches session state, detectors, outputs, logs
or metrics, so no later stage needs to think about it. Pure: no I/O, no clock, no
state; ``frictionwatch.js`` ports the same patterns to scrub error messages before
they leave the browser (``frictionwatch.scrub``).

>>> scrub("card 4111 1111 1111 1111 declined for jane.doe@example.com")
'card [card] declined for [email]'
>>> scrub("GET /cb?code=abc123&state=x#access_token=eyJhbGciOi.eyJzdWIi.c2lnbmF0 failed")
'GET /cb?code=[token]&state=[token]#access_token=[token] failed'
>>> clean_code("card_declined"), clean_code("x" * 41), clean_code("call me: +1 415 555 0134")
('card_declined', None, None)
>>> url_path("https://shop.example/checkout?email=a@b.c#pay")
'/checkout'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Final

#: Called once per value scrubbed, cut or dropped, with its kind (:data:`KINDS`).
OnScrub = Callable[[str], None] | None

#: What a removed value becomes: a placeholder that says what kind of thing was there.
EMAIL: Final = "[email]"
CARD: Final = "[card]"
PHONE: Final = "[phone]"
TOKEN: Final = "[token]"
#: What each rule counts as (for an ``on_scrub`` callback): bounded, safe as a label.
KINDS: Final = ("email", "card", "phone", "token", "truncated", "code_dropped")

#: Codes and reasons (``checkout_failed.code``, ``help_request.channel``, ...) are
#: machine words, never prose: anything else is dropped, not refused.
CODE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,40}")

#: A key=value in a URL's query string or fragment. The value is what a site puts
#: there (OAuth codes, ``access_token``, password-reset and magic-link tokens,
#: ``email=``); the name is kept, it says what went wrong without saying who. Names are
#: plain words: ``input#upload[type=file]`` is a CSS selector, not a fragment.
_PARAM = re.compile(r"([?#&;][A-Za-z0-9_.%+-]{1,64}=)(?!\[token\])[^\s&#;\"'<>\])}]+")
#: A JSON Web Token: three base64url parts, the first an encoded ``{"``.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: A run of 32+ base64url/hex characters mixing letters and digits: API keys, bearer
#: and reset tokens, signed ids. (The leftmost match of a run is the whole run.)
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,}")
#: An e-mail address, also URL-encoded (``%40``), Unicode letters allowed. Starts only
#: at the start of a run of local-part characters, so a long word costs one pass.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")
#: Groups of digits with single spaces or dashes between them; a card is 13 to 19 of
#: those digits, whole groups, passing the Luhn check (:func:`_card`): order numbers
#: mostly do not, and "4111 1111 1111 1111 2" still holds one.
_CARD = re.compile(r"(?<![0-9+])[0-9]+(?:[ -][0-9]+)*")
_DIGIT_RUN = re.compile(r"[0-9]+")
#: Phone numbers as people write them: international (+, 7 to 15 digits), national
#: with a trunk 0 and a separator (030 1234567, 0171-1234567, 0151/12345678) and North
#: American (415) 555-0134 / 415-555-0134; 7 to 15 digits in all (E.164). A bare
#: digit run is an id, not a phone: /p/1234567890 must keep telling products apart.
_PHONE = re.compile(
    r"(?<![A-Za-z0-9_+])(?:"
    r"\+[0-9](?:[ .()/-]{0,2}[0-9]){6,14}"
    r"|\(?0[0-9]{1,4}\)?[ /-][0-9]{2,8}(?:[ -][0-9]{2,8}){0,3}"
    r"|\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}"
    r")(?![A-Za-z0-9_])"
)
#: (Digits are ASCII digits throughout: the Luhn check and the JS port count those.)
_DIGITISH = "0123456789()+-./"
_SPACES = " \t\n\r\f\v"
_NO_DIGITS = str.maketrans("", "", "0123456789")


def luhn(digits: str) -> bool:
    """The Luhn check every payment card number passes (ISO/IEC 7812).

    >>> luhn("4111111111111111"), luhn("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scrub(text: str, on_scrub: OnScrub = None) -> str:
    """``text`` with e-mail addresses, cards, phones and tokens replaced by placeholders.

    Why each rule exists, in the order they run:

    >>> scrub("https://shop.example/reset?token=s3cr3t&email=a%40b.co")  # query values
    'https://shop.example/reset?token=[token]&email=[token]'
    >>> scrub("/account#access_token=ya29.a0Af&expires_in=3599")  # OAuth implicit flow
    '/account#access_token=[token]&expires_in=[token]'
    >>> scrub('input#photo-upload[type=file] > a[href="/r?t=abc"]')  # selectors stay
    'input#photo-upload[type=file] > a[href="/r?t=[token]"]'
    >>> scrub("Authorization failed: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc")  # a JWT
    'Authorization failed: [token]'
    >>> scrub("key sk_live_4eC39HqLyjWDarjtT1zdp7dc rejected")  # an API key
    'key [token] rejected'
    >>> scrub("no account for Jörg.Müller@bücher.de or x%40y.org")  # Unicode, URL-encoded
    'no account for [email] or [email]'
    >>> scrub("card 4111-1111-1111-1111 / 5555555555554444 / order 1234567890123")
    'card [card] / [card] / order 1234567890123'
    >>> scrub("paid 2 x 12 4111 1111 1111 1111 99 times")  # digits around it are not it
    'paid 2 x 12 [card] 99 times'
    >>> scrub("call +49 151 12345678, (415) 555-0134, 030 1234567 or (030) 12 34 56")
    'call [phone], [phone], [phone] or [phone]'
    >>> scrub("/p/1234567890 on 2024-01-15 at 10:30, v1.2.3, 192.168.0.1, exp 01/2027")
    '/p/1234567890 on 2024-01-15 at 10:30, v1.2.3, 192.168.0.1, exp 01/2027'

    ``on_scrub`` is called once per replacement with its kind (see :data:`KINDS`).
    """
    if not text:
        return text
    # Each rule runs only where its pattern can be: most strings are short selectors
    # and paths, and a scan of the string with str methods costs far less than a regex.
    digits = len(text) - len(text.translate(_NO_DIGITS))
    if "=" in text:
        text = _PARAM.sub(partial(_param, on_scrub), text)
    if "eyJ" in text:
        text = _JWT.sub(partial(_counted, on_scrub, "token", TOKEN), text)
    if digits and len(text) >= 32:
        text = _SECRET.sub(partial(_secret, on_scrub), text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(partial(_counted, on_scrub, "email", EMAIL), text)
    if digits >= 13:
        text = _CARD.sub(partial(_card, on_scrub), text)
    if digits >= 7:
        text = _PHONE.sub(partial(_phone, on_scrub), text)
    return text


def _counted(on_scrub: OnScrub, kind: str, placeholder: str, match: re.Match[str]) -> str:
    if on_scrub is not None:
        on_scrub(kind)
    return placeholder


def _param(on_scrub: OnScrub, match: re.Match[str]) -> str:
    return match.group(1) + _counted(on_scrub, "token", TOKEN, match)


def _secret(on_scrub: OnScrub, match: re.Match[str]) -> str:
    run = match.group(0)
    if run.translate(_NO_DIGITS) == run or run.lower() == run.upper():
        return run  # all letters, or digits and dashes only: a word, a number
    return _counted(on_scrub, "token", TOKEN, match)


def _card(on_scrub: OnScrub, match: re.Match[str]) -> str:
    """Each longest run of whole digit groups that is a card number, replaced."""
    span = match.group(0)
    if len(span) < 13:
        return span
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(span)]
    out, done, first = [], 0, 0
    while first < len(groups):
        digits, last = "", -1
        for i in range(first, len(groups)):
            digits += span[groups[i][0]:groups[i][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn(digits):
                last = i
        if last < 0:
            first += 1
            continue
        out += [span[done:groups[first][0]], _counted(on_scrub, "card", CARD, match)]
        done, first = groups[last][1], last + 1
    return "".join(out) + span[done:] if out else span


def _phone(on_scrub: OnScrub, match: re.Match[str]) -> str:
    span = match.group(0)
    if not 7 <= len(span) - len(span.translate(_NO_DIGITS)) <= 15:
        return span  # "01/2025" is an expiry date, not a number to call
    return _counted(on_scrub, "phone", PHONE, match)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, cut at a character boundary.

    Bytes, not characters: one emoji is 4 bytes, and it is bytes that fill records,
    state and frames.

    >>> truncate_utf8("naïve", 3), truncate_utf8("😀😀", 5), truncate_utf8("ok", 5)
    ('na', '😀', 'ok')
    """
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def _cut(text: str, at: int, *, scrubbed: bool) -> str:
    """``text[:at]``, without leaving half of something a rule would have caught.

    Before scrubbing (``scrubbed=False``), a word cut in two goes: half an e-mail
    address or token is no longer recognizable. After it, only a number cut in two
    goes: the first digits of a longer run can form a valid card number. Either way
    a number cut in two takes the digit groups before it along (cards come in groups).

    >>> _cut("a 4111 1111 1111 1111 b", 18, scrubbed=False)
    'a'
    >>> _cut("mail jane@example.com", 12, scrubbed=False), _cut("#a-long-id", 5, scrubbed=True)
    ('mail', '#a-lo')
    """
    if at >= len(text):
        return text
    head = text[:at]
    if text[at].isspace():
        return head.rstrip(_SPACES)
    start = max(head.rfind(c) for c in _SPACES) + 1  # 0 if no space
    numeric = not head[start:].strip(_DIGITISH)
    if numeric:
        return head[:start].rstrip(_SPACES + _DIGITISH)
    return head if scrubbed else head[:start].rstrip(_SPACES)


def clean_text(text: str, max_bytes: int, on_scrub: OnScrub = None) -> str:
    """Free text made safe to keep: scrubbed, then at most ``max_bytes`` of UTF-8.

    Scrubbing runs before the cut (a cut e-mail address is no longer recognizable);
    a string far over the cap is first cut to ``4 * max_bytes`` characters, so the
    work per field is bounded whatever arrives (see :func:`_cut` for where it cuts).

    >>> clean_text("mail jane@example.com now", 12)
    'mail [email]'
    >>> clean_text("card 4111 1111 1111 1111 " + "x" * 3000, 500)
    'card [card]'
    >>> clean_text("Ünïcödé " * 100, 20)
    'Ünïcödé Ünïcö'
    >>> len(clean_text("word " * 100_000, 512).encode()) <= 512
    True
    """
    cut = False
    if len(text) > 4 * max_bytes:
        text, cut = _cut(text, 4 * max_bytes, scrubbed=False), True
    text = scrub(text, on_scrub)
    if len(text) > max_bytes // 4 and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        text, cut = _cut(text, len(truncate_utf8(text, max_bytes)), scrubbed=True), True
    if cut and on_scrub is not None:
        on_scrub("truncated")
    return text


def clean_code(value: object, on_scrub: OnScrub = None) -> str | int | None:
    """A code or reason if it is one (:data:`CODE_RE`, and nothing to scrub in it),
    else None: a longer or other value is dropped, not refused.

    >>> clean_code(402), clean_code("ERR_PAYMENT.declined:51"), clean_code(4111111111111111)
    (402, 'ERR_PAYMENT.declined:51', None)
    >>> clean_code("<script>"), clean_code("415-555-0134"), clean_code(None), clean_code(True)
    (None, None, None, None)
    """
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if CODE_RE.fullmatch(text) is not None and scrub(text) == text:
            return value
    if on_scrub is not None:
        on_scrub("code_dropped")
    return None


def url_path(url: str, limit: int = 200, *, keep_origin: bool = False) -> str:
    """A page or URL without its query string and fragment: they carry personal data
    (``?email=``, ``#access_token=``) and never say which page it was.

    The one place URLs are stripped. Without ``keep_origin`` (the default) only the
    path is left; with it, ``scheme://host`` stays in front (a failing third-party
    API is worth naming). The result is at most ``limit`` UTF-8 bytes and never empty.

    >>> url_path("https://shop.example/checkout?email=a@b.c#pay")
    '/checkout'
    >>> url_path("https://pay.example/v1/charge?card=4111#x", keep_origin=True)
    'https://pay.example/v1/charge'
    >>> url_path("/#/spa-route"), url_path("?q=1"), url_path("HTTPS://x.example")
    ('/', '/', '/')
    """
    cut = len(url)
    for mark in "?#":
        at = url.find(mark)
        if 0 <= at < cut:
            cut = at
    path = url[:cut]
    if "://" in path:
        origin, _, rest = path.partition("://")
        host, slash, rest = rest.partition("/")
        path = "/" + rest
        if keep_origin and host:
            path = f"{origin}://{host}{path}"
    return truncate_utf8(path, limit) or "/"
