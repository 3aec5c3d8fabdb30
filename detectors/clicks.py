"""What a click target is, read from its selector.

The SDK sends the clicked element as a CSS selector (``target``). The element itself
is the last compound of it (``form#pay input#email`` -> ``input#email``): its tag and
attributes say whether a click there is *expected* to look like friction. Attribute
values are compared without quotes and case-insensitively, so ``a[target="_blank"]``,
``a[target=_blank]`` and ``A[TARGET='_blank']`` are the same thing.

>>> element('div.row > a.guide[target="_blank"]')
('a', {'target': '_blank'})
>>> is_text_entry("input#email"), is_text_entry("input[type=submit]"), is_text_entry("button")
(True, False, False)
>>> opens_elsewhere({"target": "a.invoice[download]"}), opens_elsewhere({"target": "a#home"})
(True, False)
>>> matches_any("div.carousel > button", (".carousel",))
True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from detectors.events import Event

_TAG = re.compile(r"[a-zA-Z][\w-]*")
_ATTR = re.compile(r"\[\s*([^\]=~|^$*\s]+)\s*(?:[~|^$*]?=\s*([^\]]*?)\s*)?(?:\s[is])?\s*\]")

#: Input types whose clicks select or edit text (a triple-click selects a line there).
TEXT_INPUT_TYPES = frozenset(
    {"", "text", "email", "search", "tel", "url", "password", "number", "date", "time",
     "datetime-local", "month", "week"}
)
#: Input types that are buttons: a click there is expected to do something visible.
BUTTON_INPUT_TYPES = frozenset({"submit", "button", "image", "reset"})


def _compounds(selector: str) -> list[str]:
    """Split a selector at its top-level combinators (space, ``>``, ``+``, ``~``)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in selector:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth = max(0, depth - 1)
        elif depth == 0 and (char.isspace() or char in ">+~"):
            if current:
                parts.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        parts.append("".join(current))
    return parts


def element(selector: str) -> tuple[str, dict[str, str]]:
    """The clicked element's tag (lower case, '' if the selector names none) and attributes.

    >>> element("INPUT#q[type='Search'][required]")
    ('input', {'type': 'search', 'required': ''})
    """
    parts = _compounds(selector)
    last = parts[-1] if parts else ""
    tag = _TAG.match(last)
    attrs = {
        name.lower(): (value or "").strip("\"'").strip().lower()
        for name, value in _ATTR.findall(last)
    }
    return (tag.group(0).lower() if tag else ""), attrs


@functools.lru_cache(maxsize=4096)  # a site has few distinct selectors; parsing is costly
def is_text_entry(selector: str) -> bool:
    """Text that repeated clicks select: textarea, contenteditable, text-like inputs."""
    tag, attrs = element(selector)
    if "contenteditable" in attrs and attrs["contenteditable"] != "false":
        return True
    return tag == "textarea" or (tag == "input" and attrs.get("type", "") in TEXT_INPUT_TYPES)


@functools.lru_cache(maxsize=4096)  # a site has few distinct selectors; parsing is costly
def is_form_control(selector: str) -> bool:
    """Controls whose click changes nothing the SDK sees as a reaction: every input that
    is not a button (text, checkbox, radio, file, range ...), select, textarea,
    contenteditable. Focus or a native picker is their reaction."""
    tag, attrs = element(selector)
    if tag == "input":
        return attrs.get("type", "") not in BUTTON_INPUT_TYPES
    return tag in ("select", "textarea") or is_text_entry(selector)


def opens_elsewhere(event: Event) -> bool:
    """A link that opens a new tab or starts a download: the page itself stays as it was.

    Told by the optional click fields ``opens_new_tab`` / ``download`` (true), or by the
    selector: ``[target=_blank]`` (any quoting) or a ``[download]`` attribute, on the
    element or an ancestor (a ``span`` inside such a link counts).
    """
    if event.get("opens_new_tab") is True or event.get("download") is True:
        return True
    return _links_elsewhere(str(event.get("target", "")))


@functools.lru_cache(maxsize=4096)  # asked on every click; parsing is costly
def _links_elsewhere(selector: str) -> bool:
    """The selector names a ``[target=_blank]`` or ``[download]`` element or ancestor."""
    for part in _compounds(selector):
        attrs = element(part)[1]
        if attrs.get("target") == "_blank" or "download" in attrs:
            return True
    return False


def matches_any(selector: str, patterns: Iterable[str]) -> bool:
    """Case-insensitive substring match: ``.carousel`` matches ``div.carousel > button``,
    and an exact selector or its prefix matches too."""
    if not patterns:  # the default: no generator, no lower-casing, on every click
        return False
    lowered = selector.lower()
    return any(pattern.lower() in lowered for pattern in patterns)

