"""Page paths reduced to a bounded set of routes, for metric labels and incident keys.

A raw URL is never a label: it carries ids, search terms and personal data, and its
values are unbounded. :class:`Routes` maps any page (path or full URL) to the first
configured pattern that matches it, or to ``"other"``; so the label set is the
patterns plus one, whatever the traffic.

Patterns are paths matched segment by segment, case-insensitively: a literal segment
matches itself, a segment with ``*``, ``?`` or ``[...]`` matches as a shell glob within
that one segment (``*`` never crosses a ``/``), and ``**`` as the last segment matches
any number of further segments, none included. Query strings, fragments, scheme, host,
repeated and trailing slashes are ignored. Config section ``[routes]``::

    [routes]
    patterns = ["/", "/search", "/c/*", "/p/*", "/cart", "/checkout", "/checkout/**"]

>>> routes = Routes()
>>> [routes.route(p) for p in ("/", "/p/sho-1234?ref=mail", "https://shop.example/cart/",
...                            "/checkout", "/checkout/payment", "/admin/users/7", None)]
['/', '/p/*', '/cart', '/checkout', '/checkout/**', 'other', 'other']
>>> Routes(["/product/*", "/docs/**"]).route("/Product/42")
'/product/*'
>>> Routes.from_config({"patterns": ["/p/**/x"]})
Traceback (most recent call last):
...
detectors.errors.ConfigError: routes.patterns: '/p/**/x': '**' is allowed only as the last segment
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Final

from detectors.config import build, check, setting
from detectors.errors import ConfigError
from detectors.scrub import url_path

OTHER: Final = "other"
#: The label set is the patterns plus "other": keep it small enough for Prometheus.
MAX_PATTERNS: Final = 64
MAX_PATTERN_CHARS: Final = 100

#: A web shop's pages (the simulator's and the usual names of other shops).
DEFAULT_PATTERNS: Final = (
    "/",
    "/search",
    "/c/*",
    "/category/**",
    "/p/*",
    "/product/**",
    "/cart",
    "/checkout",
    "/checkout/**",
    "/order/**",
    "/account/**",
    "/help/**",
)

_GLOB = frozenset("*?[")
#: How many pages' routes a :class:`Routes` remembers.
ROUTED_PAGES = 4096


def segments(page: str) -> list[str]:
    """The lower-cased path segments of a page or URL, without query or fragment.

    >>> segments("HTTPS://x.example//a/B/?q=1#top")
    ['a', 'b']
    """
    return [s for s in url_path(page, 1024).lower().split("/") if s]


@dataclass
class Routes:
    """Normalizes pages to the first matching pattern, else ``"other"``.

    ``patterns`` are tried in order; the pattern text is the route's name.
    """

    section: ClassVar[str] = "routes"
    section_doc: ClassVar[str] = (
        'Page paths become these routes (metric labels, incident keys), first match wins,\n'
        'else "other": never a raw URL. Segments match literally or as a glob within one\n'
        'segment ("*", "?", "[..]"); "**" as the last segment matches any further segments.'
    )

    patterns: Sequence[str] = setting(
        DEFAULT_PATTERNS, doc=f"1 to {MAX_PATTERNS} paths, each at most {MAX_PATTERN_CHARS} characters")
    _compiled: list[tuple[str, tuple[str, ...], bool]] = field(
        init=False, repr=False, compare=False, default_factory=list)
    #: page -> its route, for pages seen before (a site has few; bounded: cleared when
    #: full). Matching every pattern costs a few microseconds per signal.
    _routed: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        check(self)
        self.patterns = tuple(self.patterns)
        if not 1 <= len(self.patterns) <= MAX_PATTERNS:
            raise ConfigError(
                f"routes.patterns has {len(self.patterns)} entries: allowed 1 to {MAX_PATTERNS}"
            )
        for pattern in self.patterns:
            parts, rest = _check(pattern)
            self._compiled.append((pattern, parts, rest))
        if len(set(self.patterns)) != len(self.patterns):
            raise ConfigError("routes.patterns: each pattern may appear only once")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> Routes:
        """Build from the ``[routes]`` table; unknown keys are errors, not ignored."""
        routes: Routes = build(cls, section)
        return routes

    def route(self, page: str | None) -> str:
        """The route of ``page`` (a path or URL); ``"other"`` when nothing matches."""
        if not page:
            return OTHER
        routed = self._routed.get(page)
        if routed is None:
            if len(self._routed) >= ROUTED_PAGES:
                self._routed.clear()
            routed = self._routed[page] = self._match(page)
        return routed

    def _match(self, page: str) -> str:
        parts = segments(page)
        for name, pattern, rest in self._compiled:
            if _matches(parts, pattern, rest):
                return name
        return OTHER

    @property
    def labels(self) -> tuple[str, ...]:
        """Every value :meth:`route` can return."""
        return (*self.patterns, OTHER)


def _check(pattern: Any) -> tuple[tuple[str, ...], bool]:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"routes.patterns: {pattern!r}: {why}")

    if not isinstance(pattern, str):
        raise ConfigError(f"routes.patterns: {pattern!r} must be a string")
    if not pattern.startswith("/"):
        raise bad("must start with '/'")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise bad(f"longer than {MAX_PATTERN_CHARS} characters")
    if pattern == OTHER or "|" in pattern or any(c.isspace() for c in pattern):
        raise bad("no '|' or white space, and 'other' is reserved")
    parts = tuple(s.lower() for s in pattern.split("/")[1:])
    if parts == ("",):
        return (), False
    if "" in parts:
        raise bad("empty segment (repeated or trailing '/')")
    if "**" in parts[:-1]:
        raise bad("'**' is allowed only as the last segment")
    if any("**" in p and p != "**" for p in parts):
        raise bad("'**' must be a whole segment")
    rest = parts[-1] == "**"
    return (parts[:-1] if rest else parts), rest


def _matches(parts: list[str], pattern: tuple[str, ...], rest: bool) -> bool:
    if len(parts) < len(pattern) or (not rest and len(parts) != len(pattern)):
        return False
    for segment, want in zip(parts, pattern, strict=False):
        if _GLOB.isdisjoint(want):
            if segment != want:
                return False
        elif not fnmatchcase(segment, want):
            return False
    return True
