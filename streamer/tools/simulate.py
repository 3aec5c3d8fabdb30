"""Labelled synthetic web-shop traffic: seeded, reproducible, no clock, no I/O.

``generate(seed, n)`` yields :class:`SimSession` objects: one shopper's v1 events (each
with a unique ``event_id`` and its ``page``, in ``ts`` order) and the friction the
detectors are expected to find in them. A label is ``{"session_id", "type",
"onset_ts", "episode"}``: ``type`` is the detector that must fire, ``onset_ts`` the
``ts`` of the event at which it first fires, ``episode`` the generator that planted
it (one episode can plant two labels: an unresponsive button clicked in a burst is
both a rage click and a dead click).

Clean shoppers browse, search, scroll, fill the cart and sometimes pay, and carry the
confounders other tools misfire on: double clicks, slow but visible reactions, one
declined card then success, spaced repeats on a stepper, quick bursts on steppers,
carousels and pagination (suppressed rage clicks), triple-click selection in a text
input, no-reaction clicks on new-tab links, downloads, file pickers and form fields
(suppressed dead clicks), a JS error no click caused, one typo fixed at once, a glance
at the cart and straight back, one empty search then a good one, a single 5xx and a
few 4xx, reading with a couple of scroll reversals, the help page read without asking
for help: none may fire.

The shoppers know the detectors' default thresholds the way the foundation's clean
clicks keep over 1000 ms apart: clean navigation never returns to a page within
3 s (except the one cart glance) nor completes an A -> B -> A -> B within 2 minutes,
clean searches end by opening a result, and clean scrolling keeps to a few reversals
per 30 s. Friction episodes cross those lines on purpose, and label where they do.

Friction kinds are a table (:data:`EPISODES`); a new kind is one function that
appends events with the builder and calls ``label()`` for each detector it expects.

Outcomes have causes (the causal model, written down once, is
:mod:`streamer.tools.world`): every session ends converted (a ``purchase`` after a
checkout) or abandoned (a ``session_end``, or just silence for the idle sweep to find),
with a probability that depends on how deep into the funnel the shopper got, what is in
the cart, the kind and severity of the friction met, whether it recovered, how long it
took, and on the intervention that reached the shopper. Clean shoppers who leave mostly
leave early. The outcome is drawn after the friction, from one uniform per session out
of its own seeded generator, and the closing events fire no detector, so the labels do
not depend on it.

**Potential outcomes.** The simulator writes files that are replayed later, so it must
draw an outcome before any policy has decided. It therefore knows each session's
outcome under every action (:class:`~streamer.tools.world.PotentialOutcomes`: without
an intervention, with a nudge, with a handoff). The events realise one of them: the
action the rules alone would deliver to the session (the default policy, models off,
with the given ``holdout_share``; found by running it over the session's events), only
computed when the action changes the outcome. ``SimSession.realise`` gives the events
for another action (both endings are kept for those sessions), which is how a closed
loop (:mod:`streamer.tools.experiment`) makes the world answer the decisions actually
made; ``write_jsonl(..., potential_outcomes=True)`` (``simulate --potential-outcomes``)
adds a line per session with all of them to the labels file, so that evaluation can
pick the realised one by what the replayed policy decided.

>>> s = next(generate(seed=7, sessions=1, friction_share=1.0))
>>> s.session_id, s.friction, {label["session_id"] for label in s.labels}
('sim-7-000000', True, {'sim-7-000000'})
>>> s.events == next(generate(seed=7, sessions=1, friction_share=1.0)).events
True
>>> sum(len(orjson.loads(v)) for _, v in to_records(s)) == len(s.events)
True
"""

from __future__ import annotations

import copy
import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any, Final, NamedTuple

import orjson

from detectors.config import defaults
from detectors.dead_click import DeadClick
from detectors.excessive_scroll import ExcessiveScroll
from detectors.http_error_burst import HttpErrorBurst
from detectors.navigation_loop import NavigationLoop
from detectors.policy import Policy, in_holdout
from detectors.session import Engine, Rules, SessionState
from streamer.tools import world
from streamer.tools.world import Friction, PotentialOutcomes, Shopper

Event = dict[str, Any]
Label = dict[str, Any]

DEFAULT_START_TS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z

#: Gap between two session starts (ms of event time): a steady trickle of shoppers.
SESSION_GAP_MS: Final = (200, 800)
#: Pause between two user actions. Over 1000 ms, so consecutive actions never chain
#: into a rage-click run (PostHog's rule: < 1000 ms apart within 30 px).
THINK_MS: Final = (1200, 7000)
#: Beacons: at most this many events, flushed when the batch spans this much time and
#: on navigation (the SDK sends on page unload), as a browser SDK does.
MAX_BATCH: Final = 20
FLUSH_MS: Final = 5000

_ABSENT: Final = object()

# How sessions end (see _finish; who converts is streamer/tools/world.py's).
#: Share of the clean shoppers who leave that get as far as the checkout page first.
CART_ABANDONMENT: Final = 0.25
#: Share of sessions that end with a ``session_end``; the others just go quiet.
SESSION_END_SHARE: Final = 0.6

# The detectors' defaults the generator plans around (see the module docstring), read
# from their declarations: change a default and the traffic follows it.
_NAVIGATION, _SCROLL = defaults(NavigationLoop), defaults(ExcessiveScroll)
QUICK_BACK_MS: Final[int] = _NAVIGATION["quick_back_ms"]
NAV_WINDOW_MS: Final[int] = _NAVIGATION["window_ms"]
SCROLL_WINDOW_MS: Final[int] = _SCROLL["window_ms"]
MIN_REVERSALS: Final[int] = _SCROLL["min_reversals"]
MIN_TRAVEL_PX: Final[float] = _SCROLL["min_travel_px"]
HTTP_WINDOW_MS: Final[int] = defaults(HttpErrorBurst)["window_ms"]
DEAD_CLICK_MS: Final[int] = defaults(DeadClick)["threshold_ms"]

CATEGORIES: Final = ("shoes", "jackets", "bags", "watches", "outdoor", "kids", "sale")
QUERIES: Final = (
    "running shoes",
    "rain jacket",
    "leather bag",
    "smart watch",
    "tent 2 person",
    "kids boots",
    "gift card",
    "wool socks",
    "backpack 30l",
    "sunglasses",
)
#: Where things sit on a 1280x800 page: target -> (x, y, text).
LAYOUT: Final[dict[str, tuple[int, int, str | None]]] = {
    "input#search": (520, 40, None),
    "a#cart-link": (1180, 40, "Cart"),
    "button#add-to-cart": (960, 520, "Add to cart"),
    "button.qty-plus": (900, 460, "+"),
    "button.qty-minus": (820, 460, "−"),
    "button.carousel-next": (1200, 300, "Next"),
    "button.carousel-prev": (80, 300, "Prev"),
    "a.page-next": (760, 740, "Next"),
    "a.size-guide[target=_blank]": (960, 430, "Size guide"),
    'a.partner-offer[target="_blank"]': (1100, 200, "Partner offer"),
    "a.reviews-link": (960, 610, "Read all reviews"),
    "a.care-sheet[download]": (960, 650, "Care instructions (PDF)"),
    "a.invoice-link": (900, 300, "Invoice"),
    "input#photo-upload[type=file]": (640, 420, None),
    "select#country": (640, 320, None),
    "button#continue": (1000, 620, "Continue"),
    "button#retry": (640, 400, "Try again"),
    "button.size-option": (880, 400, "M"),
    "button#notify-me": (960, 580, "Notify me"),
    "button#load-more": (640, 760, "Load more"),
    "div.promo-banner": (640, 180, "Free shipping over 50"),
    "button#apply-coupon": (1080, 560, "Apply"),
    "button#checkout": (1040, 640, "Checkout"),
    "input#email": (640, 260, None),
    "input#card-number": (640, 380, None),
    "input#postcode": (640, 440, None),
    "input#phone": (640, 500, None),
    "textarea#gift-message": (640, 480, None),
    "button#pay": (1000, 700, "Pay now"),
    "button#chat-launcher": (1230, 760, "Chat with us"),
    "a#contact-phone": (400, 520, "Call us"),
    "button#contact-form": (400, 600, "Send"),
}
#: (reason, code) of a failed payment.
FAILURES: Final = (
    ("declined", "card_declined"),
    ("declined", "insufficient_funds"),
    ("timeout", "gateway_timeout"),
    ("authentication", "3ds_failed"),
    ("invalid_address", "avs_mismatch"),
    ("server_error", 502),
)
#: Checkout fields that can fail validation: field -> (target, message).
FORM_FIELDS: Final = {
    "email": ("input#email", "Enter a valid email address"),
    "postcode": ("input#postcode", "Postcode not recognised"),
    "phone": ("input#phone", "Enter a phone number"),
    "card_number": ("input#card-number", "Card number is invalid"),
}
#: Queries that find nothing (typos, brands the shop does not carry).
EMPTY_QUERIES: Final = (
    "runnign shoes", "rian jacket", "nikee", "waterprof boots", "leathr bag", "smrt watch",
)
JS_ERRORS: Final = (
    "TypeError: Cannot read properties of undefined (reading 'id')",
    "TypeError: cart.items is undefined",
    "ReferenceError: applyCoupon is not defined",
    "Error: Network request failed",
)
BACKGROUND_ERRORS: Final = (
    "ResizeObserver loop completed with undelivered notifications.",
    "Script error.",
)
API_URLS: Final = (
    "/api/cart",
    "/api/recommendations?sku=123",
    "/api/inventory",
    "/api/checkout/shipping-rates",
    "/api/search/suggest?q=bo",
)


#: The ``type`` of the labels-file line that holds a session's potential outcomes
#: (written with ``potential_outcomes=True``); it names no detector.
POTENTIAL_OUTCOMES: Final = "potential_outcomes"
#: Failed payments by class, for the world: what another payment method could fix.
PAYMENT_CLASS: Final[dict[str | int, str]] = {
    "card_declined": "decline", "insufficient_funds": "decline", "3ds_failed": "decline",
    "avs_mismatch": "address", "gateway_timeout": "technical", 502: "technical",
}


def _stage(page: str) -> int:
    """The funnel stage of a page (:data:`streamer.tools.world.STAGES`)."""
    if page.startswith("/checkout"):
        return 3
    if page.startswith("/cart"):
        return 2
    return 1 if page.startswith("/p/") else 0


@dataclass(frozen=True, slots=True)
class SimSession:
    """One synthetic shopper: events in ``ts`` order and the labels they should raise.

    ``converted``: it ends with a ``purchase``; ``holdout``: an intervention decided
    for it would not be shown (see :func:`ground_truth` to read both from events).
    ``outcomes``: its potential outcomes; ``action``: the action whose outcome the
    events realise ("none", "nudge" or "handoff": what the rules alone deliver; None
    when no action would change the outcome, so it was not worked out).
    """

    session_id: str
    events: list[Event]
    labels: list[Label]
    friction: bool
    converted: bool = False
    holdout: bool = False
    shopper: Shopper | None = None
    outcomes: PotentialOutcomes | None = None
    action: str | None = None
    #: Where the closing events start, and the other ending (kept when the outcome
    #: depends on the action): see :meth:`realise`.
    ending_at: int = 0
    alternative: tuple[Event, ...] = ()

    def realise(self, action: str | None) -> tuple[bool, list[Event]]:
        """Whether the session converts when ``action`` reaches it, and its events then.

        >>> s = next(s for s in generate(seed=2, sessions=400, effects="heterogeneous")
        ...          if s.outcomes and s.outcomes.varies)
        >>> [s.realise(a)[0] for a in ("none", "nudge", "handoff")] == list(s.outcomes.y.values())
        True
        >>> converted, events = s.realise(s.action)
        >>> converted == s.converted and events == s.events
        True
        """
        if self.outcomes is None:
            return self.converted, self.events
        converted = self.outcomes.realised(action)
        if converted == self.converted:
            return converted, self.events
        return converted, self.events[: self.ending_at] + list(self.alternative)

    def outcome_label(self) -> Label:
        """The labels-file line of its potential outcomes (see :data:`POTENTIAL_OUTCOMES`)."""
        assert self.outcomes is not None
        return {"session_id": self.session_id, "type": POTENTIAL_OUTCOMES,
                "onset_ts": self.events[0]["ts"], **self.outcomes.as_dict(),
                "action": self.action, "converted": self.converted}


class Truth(NamedTuple):
    """What the simulator knows about one session; ``treated``: it met friction and
    is not in the holdout (what the rules treat)."""

    converted: bool
    friction: bool
    holdout: bool

    @property
    def treated(self) -> bool:
        return self.friction and not self.holdout


def ground_truth(
    events: Iterable[Event], labels: Iterable[Label] = (), *, holdout_share: float = 0.0
) -> dict[str, Truth]:
    """Per session: converted (a ``purchase`` is among its events), friction (it has a
    label), holdout (by the policy's hash at ``holdout_share``). No extra file needed:
    the events and labels that ``simulate`` writes are enough.

    >>> some = list(generate(seed=4, sessions=40, nudge_effect=0.2, holdout_share=0.3))
    >>> truth = ground_truth((e for s in some for e in s.events),
    ...                      (lb for s in some for lb in s.labels), holdout_share=0.3)
    >>> all(truth[s.session_id] == (s.converted, s.friction, s.holdout) for s in some)
    True
    """
    converted: dict[str, bool] = {}
    for event in events:
        sid = event["session_id"]
        converted[sid] = converted.get(sid, False) or event["type"] == "purchase"
    friction = {label["session_id"] for label in labels if label["type"] != POTENTIAL_OUTCOMES}
    return {
        sid: Truth(bought, sid in friction, in_holdout(sid, holdout_share))
        for sid, bought in converted.items()
    }


class _Builder:
    """Appends one session's events; the clock only moves forward."""

    def __init__(self, session_id: str, ts: int, rng: random.Random) -> None:
        self.sid = session_id
        self.ts = ts
        self.rng = rng
        self.user_id = f"u{rng.randint(10_000, 99_999)}" if rng.random() < 0.35 else None
        self.page = "/"
        self.events: list[Event] = []
        self.labels: list[Label] = []
        self.cart = 0
        self.episode = ""
        #: Pages in order of arrival (reloads left out): [(path, arrival ts)].
        self.trail: list[tuple[str, int]] = []
        #: True while an episode or the cart glance navigates as it pleases.
        self.free_nav = False
        self.quick_backs: list[int] = []
        self.peeked = False
        self.server_errors: list[int] = []
        # excessive_scroll's view of the current page: position, run, reversals.
        self.scroll_y = 0
        self.scroll_dir = 0
        self.scroll_ext: int | None = None
        self.turns: list[int] = []
        # What the world (streamer/tools/world.py) reads: the deepest funnel stage
        # reached, and per friction episode what its generator says about it.
        self.stage = 0
        self.frictions: list[Friction] = []
        self.severity = 0.5
        self.recovered = False
        self.payment: str | None = None

    def fork(self) -> _Builder:
        """An independent copy (its own generator, in the same state): the same
        session from here on, told differently."""
        twin = copy.copy(self)
        twin.rng = random.Random()
        twin.rng.setstate(self.rng.getstate())
        for name in ("events", "labels", "trail", "quick_backs", "server_errors", "turns",
                     "frictions"):
            setattr(twin, name, list(getattr(self, name)))
        return twin

    def note(self, severity: float, *, recovered: bool = False, payment: str | None = None) -> None:
        """What the episode being generated was like, for the world's outcome model."""
        self.severity, self.recovered, self.payment = severity, recovered, payment

    # -- primitives ---------------------------------------------------------------
    def after(self, low: int, high: int) -> None:
        self.ts += self.rng.randint(low, high)

    def think(self) -> None:
        self.after(*THINK_MS)

    def emit(self, kind: str, **fields: Any) -> Event:
        event: Event = {
            "session_id": self.sid,
            "type": kind,
            "ts": self.ts,
            "event_id": f"{self.sid}-{len(self.events):04d}",
            "page": self.page,
        }
        if self.user_id is not None:
            event["user_id"] = self.user_id
        event.update(fields)
        self.events.append(event)
        return event

    def view(self, page: str, referrer: str | None = None) -> Event:
        trail = self.trail
        if not trail or trail[-1][0] != page:  # not a reload
            if not self.free_nav:
                self.settle(page)
            if len(trail) >= 2 and trail[-2][0] == page and self.ts - trail[-1][1] < QUICK_BACK_MS:
                self.quick_backs.append(self.ts)
            trail.append((page, self.ts))
            del trail[:-4]
        self.page = page
        self.stage = max(self.stage, _stage(page))
        self.scroll_y, self.scroll_dir, self.scroll_ext, self.turns = 0, 0, None, []
        return self.emit("page_view", referrer=referrer) if referrer else self.emit("page_view")

    def settle(self, page: str) -> None:
        """A clean shopper going back to the page before this one has read this one
        (no quick back), and never completes an A -> B -> A -> B within the window."""
        trail = self.trail
        if len(trail) < 2 or trail[-2][0] != page or trail[-1][0] == page:
            return
        if self.ts - trail[-1][1] < QUICK_BACK_MS:
            self.ts = trail[-1][1] + QUICK_BACK_MS + self.rng.randint(200, 3000)
        if len(trail) >= 3 and trail[-3][0] == trail[-1][0] and self.ts - trail[-3][1] <= NAV_WINDOW_MS:
            self.ts = trail[-3][1] + NAV_WINDOW_MS + self.rng.randint(1000, 30_000)

    def after_quick_backs(self) -> None:
        """Let the navigation window pass since the last quick back (the cart glance)."""
        if self.quick_backs and self.ts - self.quick_backs[-1] <= NAV_WINDOW_MS:
            self.ts = self.quick_backs[-1] + NAV_WINDOW_MS + self.rng.randint(1000, 9000)

    def scroll_to(self, y: int) -> Event:
        """Scroll to ``y``, keeping count of reversals as excessive_scroll does."""
        ts = self.ts
        self.turns = [t for t in self.turns if ts - t <= SCROLL_WINDOW_MS]
        ext = y if self.scroll_ext is None else self.scroll_ext
        if self.scroll_dir:
            ext = max(ext, y) if self.scroll_dir > 0 else min(ext, y)
        travel = y - ext
        if travel and abs(travel) >= MIN_TRAVEL_PX:
            if self.scroll_dir:
                self.turns.append(ts)
            self.scroll_dir, ext = (1 if travel > 0 else -1), y
        self.scroll_ext = ext
        direction = "up" if y < self.scroll_y else "down"
        self.scroll_y = y
        return self.emit("scroll", y=y, direction=direction)

    def click(
        self,
        target: str,
        reaction: Any = None,
        *,
        jitter: int = 4,
        x: int | None = None,
        y: int | None = None,
        text: str | None = None,
        **extra: Any,
    ) -> Event:
        """A click on ``target``; ``reaction`` None draws a normal one (50-900 ms),
        ``_ABSENT`` leaves it out (no reaction), anything else is used as is."""
        bx, by, layout_text = LAYOUT.get(target, (640, 400, None))
        text = layout_text if text is None else text
        bx = bx if x is None else x
        by = by if y is None else y
        fields: dict[str, Any] = {
            "x": bx + self.rng.randint(-jitter, jitter),
            "y": by + self.rng.randint(-jitter, jitter),
            "target": target,
        }
        if text is not None:
            fields["text"] = text
        if reaction is None:
            reaction = self.reaction()
        if reaction is not _ABSENT:
            fields["reaction_ms"] = reaction
        return self.emit("click", **fields, **extra)

    def reaction(self) -> int:
        return int(self.rng.triangular(50, 900, 180))

    def nav_click(self, target: str, page: str, *, x: int | None = None, y: int | None = None) -> None:
        """Click a link and land on ``page`` once the UI reacted."""
        reaction = self.reaction()
        self.click(target, reaction, x=x, y=y)
        self.after(reaction, reaction + 150)
        self.view(page)

    def label(self, detector: str, onset: Event) -> None:
        self.labels.append(
            {
                "session_id": self.sid,
                "type": detector,
                "onset_ts": onset["ts"],
                "episode": self.episode,
            }
        )


# -- clean behaviour ----------------------------------------------------------------
def _scroll(b: _Builder) -> None:
    """Reading down the page, now and then back up a little (a couple of reversals)."""
    b.think()
    for _ in range(b.rng.randint(1, 4)):
        recent = sum(b.ts - t <= SCROLL_WINDOW_MS for t in b.turns)
        up = b.scroll_y > 0 and recent <= 2 and b.rng.random() < 0.25
        if up:
            b.scroll_to(max(0, b.scroll_y - b.rng.randint(200, 500)))
        else:
            b.scroll_to(b.scroll_y + b.rng.randint(300, 900))
        b.after(250, 1500)


def _open_result(b: _Builder) -> None:
    """Open a product from the results: the search found something."""
    b.think()
    col, row = b.rng.randrange(4), b.rng.randrange(3)
    sku = f"{b.rng.choice(CATEGORIES)[:3]}-{b.rng.randint(1000, 9999)}"
    b.nav_click("a.search-result", f"/p/{sku}", x=220 + 280 * col, y=260 + 200 * row)


def _search(b: _Builder) -> None:
    b.think()
    b.click("input#search", b.rng.randint(10, 60))
    b.after(1500, 5000)  # typing
    b.emit("search", query=b.rng.choice(QUERIES), results=b.rng.randint(1, 120))
    b.after(150, 600)
    b.view("/search")
    _open_result(b)


def _category(b: _Builder) -> None:
    b.think()
    i = b.rng.randrange(len(CATEGORIES))
    b.nav_click("a.nav-category", f"/c/{CATEGORIES[i]}", x=200 + 140 * i, y=90)


def _product(b: _Builder) -> None:
    b.think()
    col, row = b.rng.randrange(4), b.rng.randrange(3)
    sku = f"{b.rng.choice(CATEGORIES)[:3]}-{b.rng.randint(1000, 9999)}"
    b.nav_click("a.product-card", f"/p/{sku}", x=220 + 280 * col, y=300 + 220 * row)


def _add_to_cart(b: _Builder) -> None:
    if not b.page.startswith("/p/"):
        _product(b)
    b.think()
    b.click("button#add-to-cart")
    b.cart += 1


def _view_cart(b: _Builder) -> None:
    b.think()
    b.nav_click("a#cart-link", "/cart")


# Confounders: look like friction to a naive rule, must not fire ours.
def _double_click(b: _Builder) -> None:
    """A double-click on a button: 2 quick clicks, never 3."""
    if not b.page.startswith("/p/"):
        _product(b)
    b.think()
    b.click("button#add-to-cart", jitter=2)
    b.after(60, 250)
    b.click("button#add-to-cart", jitter=2)
    b.cart += 2


def _slow_click(b: _Builder) -> None:
    """The UI reacts late (1-2 s) but visibly: not dead."""
    if not b.page.startswith("/p/"):
        _product(b)
    b.think()
    b.click("button#add-to-cart", b.rng.randint(1000, 2000))
    b.cart += 1


def _stepper(b: _Builder) -> None:
    """Several clicks on one spot (a quantity stepper), spaced well over 1 s apart."""
    if not b.page.startswith("/p/"):
        _product(b)
    for _ in range(b.rng.randint(2, 4)):
        b.after(1250, 3000)
        b.click("button.qty-plus", b.rng.randint(30, 200), jitter=2)


def _triple_select(b: _Builder) -> None:
    """Triple-click in a text input selects the line: 3 quick clicks, not rage."""
    b.think()
    target = b.rng.choice(("input#search", "input#email", "textarea#gift-message"))
    for i in range(3):
        if i:
            b.after(70, 220)
        b.click(target, b.rng.randint(5, 60), jitter=2)


def _help_page(b: _Builder) -> None:
    """Reads the help page and leaves without asking for a person."""
    b.think()
    b.nav_click("a.footer-help", "/help", x=120, y=780)
    _scroll(b)


def _on_product(b: _Builder) -> None:
    if not b.page.startswith("/p/"):
        _product(b)


def _quick_stepper(b: _Builder) -> None:
    """3-6 quick clicks on a quantity stepper ("+" / "−"): rage-like, suppressed."""
    _on_product(b)
    b.think()
    target = b.rng.choice(("button.qty-plus", "button.qty-minus"))
    text = b.rng.choice(("+", " + ")) if target == "button.qty-plus" else b.rng.choice(("−", "-"))
    for i in range(b.rng.randint(3, 6)):
        if i:
            b.after(120, 450)
        b.click(target, b.rng.randint(30, 200), jitter=2, text=text)


def _carousel(b: _Builder) -> None:
    """Flicking through a carousel or result pages: quick clicks on next/prev, suppressed."""
    b.think()
    target = b.rng.choice(("button.carousel-next", "button.carousel-prev", "a.page-next"))
    texts = {
        "button.carousel-next": ("Next", "next", "›", ">"),
        "button.carousel-prev": ("Prev", "Previous", "‹", "<"),
        "a.page-next": ("Next", "NEXT"),
    }[target]
    text = b.rng.choice(texts)
    for i in range(b.rng.randint(3, 5)):
        if i:
            b.after(150, 500)
        b.click(target, b.rng.randint(40, 300), jitter=3, text=text)


def _no_reaction_click(b: _Builder) -> None:
    """A click the page rightly does not react to: new tab, download, file picker or a
    form field taking focus. No reaction_ms, never a dead click."""
    _on_product(b)
    b.think()
    kind = b.rng.choice(("new_tab", "download", "file", "field"))
    if kind == "new_tab":
        if b.rng.random() < 0.3:  # an SDK that knows says so in a field
            b.click("a.reviews-link", _ABSENT, opens_new_tab=True)
        else:
            b.click(
                b.rng.choice(("a.size-guide[target=_blank]", 'a.partner-offer[target="_blank"]')),
                _ABSENT,
            )
    elif kind == "download":
        if b.rng.random() < 0.3:
            b.click("a.invoice-link", _ABSENT, download=True)
        else:
            b.click("a.care-sheet[download]", _ABSENT)
    elif kind == "file":
        b.click("input#photo-upload[type=file]", _ABSENT)
    else:
        b.click(b.rng.choice(("input#search", "select#country", "textarea#gift-message")), _ABSENT)


def _background_error(b: _Builder) -> None:
    """A third-party script fails long after any click: not the customer's doing."""
    b.think()
    b.emit("js_error", message=b.rng.choice(BACKGROUND_ERRORS))


def _http_hiccup(b: _Builder) -> None:
    """A few 4xx (a missing image, an expired token) or, once, a single 5xx."""
    b.think()
    if not b.server_errors and b.rng.random() < 0.5:
        b.server_errors.append(b.ts)
        b.emit("http_error", url=b.rng.choice(API_URLS), status=b.rng.choice((500, 502, 503)))
        return
    for i in range(b.rng.randint(1, 3)):
        if i:
            b.after(100, 2000)
        b.emit("http_error", url=f"/img/{b.rng.randint(100, 999)}.jpg", status=b.rng.choice((404, 403)))


def _search_typo(b: _Builder) -> None:
    """One search that finds nothing, corrected at once, then a result opened."""
    b.think()
    b.click("input#search", b.rng.randint(10, 60))
    b.after(1500, 5000)
    b.emit("search", query=b.rng.choice(EMPTY_QUERIES), results=0)
    b.after(150, 600)
    b.view("/search")
    b.after(1000, 4000)
    b.click("input#search", b.rng.randint(10, 60))
    b.after(1000, 3000)
    b.emit("search", query=b.rng.choice(QUERIES), results=b.rng.randint(1, 120))
    b.after(150, 600)
    b.view("/search")
    _open_result(b)


def _cart_glance(b: _Builder) -> None:
    """Product -> cart -> straight back to the product: one quick back, normal."""
    _on_product(b)
    if b.peeked or (len(b.trail) >= 2 and b.trail[-2][0] == "/cart"):
        _view_cart(b)  # a glance here would make a loop: a plain visit instead
        return
    b.peeked = True
    product = b.page
    _view_cart(b)
    b.after(600, 2400)
    b.free_nav = True
    b.view(product)  # the browser's back button
    b.free_nav = False


_BROWSE: Final[tuple[tuple[Callable[[_Builder], None], float], ...]] = (
    (_scroll, 3),
    (_search, 2),
    (_category, 3),
    (_product, 4),
    (_add_to_cart, 2),
    (_view_cart, 1),
    (_double_click, 0.6),
    (_slow_click, 0.6),
    (_stepper, 0.5),
    (_triple_select, 0.5),
    (_help_page, 0.4),
    (_quick_stepper, 0.5),
    (_carousel, 0.5),
    (_no_reaction_click, 0.8),
    (_background_error, 0.3),
    (_http_hiccup, 0.3),
    (_search_typo, 0.4),
    (_cart_glance, 0.4),
)


def _browse(b: _Builder, steps: int) -> None:
    actions = [a for a, _ in _BROWSE]
    weights = [w for _, w in _BROWSE]
    for action in b.rng.choices(actions, weights, k=steps):
        action(b)


def _to_checkout(b: _Builder) -> None:
    if b.cart == 0:
        _add_to_cart(b)
    if b.page != "/cart":
        _view_cart(b)
    b.think()
    b.nav_click("button#checkout", "/checkout")
    b.think()
    b.click("input#email", b.rng.randint(5, 60))
    b.after(3000, 9000)  # typing the address


def _pay(b: _Builder) -> Event:
    """Card number, Pay, and the attempt the shop records."""
    b.think()
    b.click("input#card-number", b.rng.randint(5, 60))
    b.after(4000, 12_000)
    b.click("button#pay", b.rng.randint(80, 400))
    b.after(20, 200)
    return b.emit("checkout_attempt", step="payment")


def _purchase(b: _Builder) -> None:
    b.after(1200, 4000)
    b.emit("purchase", value=round(b.cart * b.rng.uniform(9.0, 180.0), 2))
    b.after(300, 900)
    b.view("/order/confirmed")


def _typo(b: _Builder, field: str) -> None:
    """One field fails validation and is fixed at once."""
    target, message = FORM_FIELDS[field]
    b.think()
    b.click("button#continue")
    b.after(80, 400)
    b.emit("form_error", field=field, message=message)
    b.after(1000, 4000)
    b.click(target, b.rng.randint(5, 60))
    b.after(1500, 5000)


def _checkout(b: _Builder) -> None:
    """A clean checkout; sometimes a typo or two (each field once), sometimes one
    failed payment first, then success."""
    _to_checkout(b)
    roll = b.rng.random()
    if roll < 0.45:
        fields = list(FORM_FIELDS)
        b.rng.shuffle(fields)
        for field in fields[: 1 if roll < 0.3 else 2]:
            _typo(b, field)
    _pay(b)
    if b.rng.random() < 0.25:
        reason, code = b.rng.choice(FAILURES)
        b.after(1500, 6000)
        b.emit("checkout_failed", reason=reason, code=code)
        _pay(b)
    _purchase(b)


# -- friction episodes --------------------------------------------------------------
def rage_click(b: _Builder) -> None:
    """3-6 clicks < 1 s apart on one button. Unresponsive (no reaction: also a dead
    click from the first click on) or slow (reacts after 1-2.4 s: rage only)."""
    target = b.rng.choice(
        (
            "button#add-to-cart",
            "button#apply-coupon",
            "button#pay",
            "button#load-more",
            "button.size-option",
        )
    )
    if target in ("button#add-to-cart", "button.size-option") and not b.page.startswith("/p/"):
        _product(b)
    dead = b.rng.random() < 0.5
    b.think()
    clicks = []
    for i in range(b.rng.randint(3, 6)):
        if i:
            b.after(80, 900)
        # jitter 5 px per axis: consecutive clicks stay within 20 px Manhattan
        if not dead:
            clicks.append(b.click(target, b.rng.randint(1000, 2400), jitter=5))
        elif b.rng.random() < 0.3:
            clicks.append(_null_click(b, target))
        else:
            clicks.append(b.click(target, _ABSENT, jitter=5))
    b.label("rage_click", clicks[2])
    if dead:
        b.label("dead_click", clicks[0])
    b.note((0.6 if dead else 0.3) + 0.1 * (len(clicks) - 3), recovered=not dead)


def _null_click(b: _Builder, target: str) -> Event:
    """A click whose SDK sent ``reaction_ms: null`` (gave up waiting)."""
    event = b.click(target, _ABSENT, jitter=5)
    event["reaction_ms"] = None
    return event


def dead_click(b: _Builder) -> None:
    """2-4 clicks on one broken element, 1.5-4 s apart (too slow for rage), no reaction."""
    target = b.rng.choice(
        (
            "button#apply-coupon",
            "button.size-option",
            "button#notify-me",
            "div.promo-banner",
            "button#load-more",
        )
    )
    if target in ("button.size-option", "button#notify-me") and not b.page.startswith("/p/"):
        _product(b)
    b.think()
    first = None
    clicks = b.rng.randint(2, 4)
    late = False
    for i in range(clicks):
        if i:
            b.after(1500, 4000)
        roll = b.rng.random()
        if roll < 0.6:
            event = b.click(target, _ABSENT)
        elif roll < 0.8:
            event = _null_click(b, target)
        else:  # something happened, far too late to count as a reaction
            event = b.click(target, b.rng.randint(DEAD_CLICK_MS, 6000))
            late = True
        first = first or event
    assert first is not None
    b.label("dead_click", first)
    b.note(0.3 + 0.2 * (clicks - 2), recovered=late)


def checkout_failure(b: _Builder) -> None:
    """Pay, fail, retry: 2 failures (nudge) or 3-4 (handoff); then pays or gives up."""
    _to_checkout(b)
    failures = b.rng.choices((2, 3, 4), (0.5, 0.35, 0.15))[0]
    reason, code = b.rng.choice(FAILURES)
    for i in range(failures):
        _pay(b)
        if code == "gateway_timeout":
            b.after(8000, 30_000)
        else:
            b.after(1500, 6000)
        failed = b.emit("checkout_failed", reason=reason, code=code)
        if i == 1:
            b.label("checkout_failure", failed)
        if b.rng.random() < 0.3:  # tries another card, with its own problem
            reason, code = b.rng.choice(FAILURES)
    b.note((failures - 1) / 3, payment=PAYMENT_CLASS[failed["code"]])


def help_request(b: _Builder) -> None:
    """The customer asks for a person: chat launcher, phone link or contact form."""
    b.think()
    channel = b.rng.choices(("chat", "phone", "email"), (0.6, 0.25, 0.15))[0]
    if channel == "chat":
        b.click("button#chat-launcher", b.rng.randint(80, 400))
    else:
        b.nav_click("a.footer-help", "/help", x=120, y=780)
        b.think()
        b.click(
            "a#contact-phone" if channel == "phone" else "button#contact-form",
            b.rng.randint(80, 400),
        )
    b.after(100, 1500)
    b.label("help_request", b.emit("help_request", channel=channel))
    b.note(0.5)


def error_click(b: _Builder) -> None:
    """A button whose handler throws: the UI starts to react, then a JS error within
    1 s. Sometimes clicked again (and failing again) a few seconds later."""
    target = b.rng.choice(
        (
            "button#add-to-cart",
            "button#apply-coupon",
            "button.size-option",
            "button#notify-me",
            "button#load-more",
        )
    )
    if target in ("button#add-to-cart", "button.size-option", "button#notify-me"):
        _on_product(b)
    b.think()
    message = b.rng.choice(JS_ERRORS)
    repeats = b.rng.choice((1, 1, 2, 3))
    b.note(0.3 * repeats)
    for i in range(repeats):
        if i:
            b.after(1500, 4000)
        b.click(target, b.rng.randint(80, 600))
        b.after(20, 900)
        error = b.emit("js_error", message=message)
        if i == 0:
            b.label("error_click", error)


def form_struggle(b: _Builder) -> None:
    """One checkout field fails validation 3-5 times in a row (each retry takes
    seconds, so the third lands well within 2 minutes); paying or giving up is the
    session's outcome (see _finish)."""
    _to_checkout(b)
    field = b.rng.choice(sorted(FORM_FIELDS))
    target, message = FORM_FIELDS[field]
    errors = b.rng.randint(3, 5)
    b.note((errors - 2) / 3)
    for i in range(errors):
        if i:
            b.after(1500, 5000)
        else:
            b.think()
        b.click("button#continue")
        b.after(80, 400)
        error = b.emit("form_error", field=field, message=message)
        if i == 2:
            b.label("form_struggle", error)
        b.after(800, 3000)
        b.click(target, b.rng.randint(5, 60))
        b.after(1500, 6000)  # typing it again


def _new_pages(make: Callable[[], tuple[str, str]], avoid: set[str]) -> tuple[str, str]:
    while True:
        a, c = make()
        if a != c and not {a, c} & avoid:
            return a, c


def _sku(b: _Builder) -> str:
    return f"/p/{b.rng.choice(CATEGORIES)[:3]}-{b.rng.randint(1000, 9999)}"


def navigation_loop(b: _Builder) -> None:
    """Going round in circles. Ping-pong: A -> B -> A -> B (-> A ...) between two pages
    that are neither this one nor the last (cart/checkout, sign-in/reset, two
    products, two categories), any dwell: fires on the 4th view. Or pogo-sticking: a
    category, a product left within 3 s for the category, another one, back again:
    fires on the second quick back."""
    b.after_quick_backs()
    b.think()
    if b.rng.random() < 0.5:
        avoid = {page for page, _ in b.trail[-2:]}

        def make() -> tuple[str, str]:
            choice = b.rng.randrange(4)
            if choice == 0:
                return "/cart", "/checkout"
            if choice == 1:
                return "/account/login", "/account/reset-password"
            if choice == 2:
                return _sku(b), _sku(b)
            first, second = b.rng.sample(CATEGORIES, 2)
            return f"/c/{first}", f"/c/{second}"

        pages = _new_pages(make, avoid)
        b.free_nav = True
        views = b.rng.choice((4, 4, 5, 6))
        b.note((views - 3) / 3)
        for i in range(views):
            page = pages[i % 2]
            if i:
                b.after(1200, 12_000)
            if i == 0 or b.rng.random() < 0.5:
                b.nav_click(f'a[href="{page}"]', page, x=300 + 200 * (i % 2), y=120)
            else:
                b.view(page)  # the back button
            if i == 3:
                b.label("navigation_loop", b.events[-1])
        b.free_nav = False
        return
    hub = f"/c/{b.rng.choice(CATEGORIES)}"
    if b.page != hub:
        _category_page(b, hub)
    avoid = {page for page, _ in b.trail[-2:]}
    products: list[str] = []
    returns = b.rng.choice((2, 2, 3))
    b.note(0.4 if returns == 2 else 0.7)
    while len(products) < returns:
        page = _sku(b)
        if page not in avoid and page not in products:
            products.append(page)
    b.free_nav = True
    for k, page in enumerate(products):
        if k:
            b.after(800, 3000)
        else:
            b.think()
        col, row = b.rng.randrange(4), b.rng.randrange(3)
        b.nav_click("a.product-card", page, x=220 + 280 * col, y=300 + 220 * row)
        b.after(700, 2500)  # not what the card promised
        back = b.view(hub)
        if k == 1:
            b.label("navigation_loop", back)
    b.free_nav = False


def _category_page(b: _Builder, page: str) -> None:
    b.think()
    i = CATEGORIES.index(page.removeprefix("/c/"))
    b.nav_click("a.nav-category", page, x=200 + 140 * i, y=90)


def search_struggle(b: _Builder) -> None:
    """Search keeps failing: 2-3 searches in a row that find nothing (fires on the
    second), or 3-4 quick reformulations without opening a result (fires on the
    third). Sometimes the last one finds something and a result is opened."""
    b.think()
    b.settle("/search")  # any wait before the results page happens now, not in between
    empty = b.rng.random() < 0.5
    n = b.rng.randint(2, 3) if empty else b.rng.randint(3, 4)
    for i in range(n):
        if i:
            b.after(*((1000, 8000) if empty else (500, 2500)))
        b.click("input#search", b.rng.randint(10, 60))
        b.after(1500, 4500)  # typing
        query = b.rng.choice(EMPTY_QUERIES if empty else QUERIES)
        search = b.emit("search", query=query, results=0 if empty else b.rng.randint(1, 40))
        if i == (1 if empty else 2):
            b.label("search_struggle", search)
        b.after(150, 600)
        b.view("/search")
    found = b.rng.random() < 0.5
    b.note(0.4 + 0.2 * (n - 2), recovered=found)
    if found:
        _open_result(b)


def http_error_burst(b: _Builder) -> None:
    """The shop's API fails: 3-5 server errors (5xx) a few seconds apart, fires on
    the third; the customer may hit "Try again"."""
    if b.server_errors and b.ts - b.server_errors[-1] <= HTTP_WINDOW_MS:
        b.ts = b.server_errors[-1] + HTTP_WINDOW_MS + b.rng.randint(1000, 9000)
    b.think()
    url = b.rng.choice(API_URLS)
    errors = b.rng.randint(3, 5)
    for i in range(errors):
        if i:
            b.after(300, 8000)
        error = b.emit("http_error", url=url, status=b.rng.choice((500, 502, 503, 504)))
        b.server_errors.append(error["ts"])
        if i == 2:
            b.label("http_error_burst", error)
    retried = b.rng.random() < 0.5
    b.note((errors - 2) / 3, recovered=retried)
    if retried:
        b.after(1000, 3000)
        b.click("button#retry")


def excessive_scroll(b: _Builder) -> None:
    """Hunting up and down a fresh page: quick scrolls that mostly change direction,
    until the 6th reversal within 30 s (the onset), then a few more."""
    if b.rng.random() < 0.5:
        _product(b)
    else:
        _category(b)
    b.think()
    b.scroll_to(b.scroll_y + b.rng.randint(800, 2000))
    down, more = False, b.rng.randint(0, 4)
    b.note(0.3 + 0.1 * more)
    labelled = False
    while not labelled or more > 0:
        b.after(150, 900)
        move = b.rng.randint(200, 900)
        y = b.scroll_y + move if down or b.scroll_y == 0 else max(0, b.scroll_y - move)
        event = b.scroll_to(y)
        if labelled:
            more -= 1
        elif len(b.turns) >= MIN_REVERSALS:
            b.label("excessive_scroll", event)
            labelled = True
        if b.rng.random() < 0.8:  # mostly turning round
            down = not down


class Episode(NamedTuple):
    """A friction generator and every detector it can plant a label for."""

    generate: Callable[[_Builder], None]
    detectors: frozenset[str]
    weight: float


#: Friction kinds by name. Two episodes in one session must plant disjoint detector
#: sets, so every (session, detector) label has one onset.
EPISODES: Final[dict[str, Episode]] = {
    "rage_click": Episode(rage_click, frozenset({"rage_click", "dead_click"}), 0.3),
    "dead_click": Episode(dead_click, frozenset({"dead_click"}), 0.25),
    "checkout_failure": Episode(checkout_failure, frozenset({"checkout_failure"}), 0.25),
    "help_request": Episode(help_request, frozenset({"help_request"}), 0.2),
    "error_click": Episode(error_click, frozenset({"error_click"}), 0.2),
    "form_struggle": Episode(form_struggle, frozenset({"form_struggle"}), 0.2),
    "navigation_loop": Episode(navigation_loop, frozenset({"navigation_loop"}), 0.2),
    "search_struggle": Episode(search_struggle, frozenset({"search_struggle"}), 0.2),
    "http_error_burst": Episode(http_error_burst, frozenset({"http_error_burst"}), 0.2),
    "excessive_scroll": Episode(excessive_scroll, frozenset({"excessive_scroll"}), 0.2),
}
SECOND_EPISODE_SHARE: Final = 0.15


def _pick_episodes(rng: random.Random) -> list[str]:
    names = list(EPISODES)
    first = rng.choices(names, [EPISODES[n].weight for n in names])[0]
    chosen = [first]
    if rng.random() < SECOND_EPISODE_SHARE:
        rest = [n for n in names if not EPISODES[n].detectors & EPISODES[first].detectors]
        if rest:
            chosen.append(rng.choices(rest, [EPISODES[n].weight for n in rest])[0])
    return chosen


class RulesAction:
    """What the rules alone (default policy, models off) deliver to a session: the
    strongest intervention shown ("handoff" over "nudge"), or "none" (nothing decided,
    or decided but held out by ``holdout_share``).

    >>> act = RulesAction(holdout_share=0.0)
    >>> fail = {"session_id": "s", "type": "checkout_failed", "ts": 0, "code": "card_declined"}
    >>> act([dict(fail, ts=t) for t in (1, 2)]), act([dict(fail, ts=t) for t in (1, 2, 3)])
    ('nudge', 'handoff')
    >>> RulesAction(holdout_share=1.0)([dict(fail, ts=t) for t in (1, 2)])
    'none'
    """

    def __init__(self, holdout_share: float) -> None:
        self.engine = Engine(Rules(policy=Policy(holdout_share=holdout_share)), None)

    def __call__(self, events: Iterable[Event]) -> str:
        state: SessionState | None = None
        shown: set[str] = set()
        for event in events:
            if state is None:
                state = SessionState(event["session_id"])
            decision = self.engine.step(state, dict(event)).decision
            if decision is not None and decision.delivered:
                shown.add(decision.kind)
        return "handoff" if "handoff" in shown else "nudge" if shown else "none"


def _finish(b: _Builder, friction: bool, converted: bool) -> None:
    """The session's last act: it pays (converted) or leaves (abandoned).

    Nothing here fires a rule detector, so the friction episodes alone decide who
    gets an intervention, whatever the outcome. A clean shopper who buys browses on
    and checks out; one who leaves mostly does so early, sometimes from the checkout
    page without paying. A shopper who met friction and buys pays without further
    trouble (a failing checkout is still open: its failure count is only reset by the
    purchase itself).
    """
    rng = b.rng
    if not friction:
        if converted:
            _browse(b, rng.randint(0, 6))
            _checkout(b)
        elif rng.random() < CART_ABANDONMENT:
            _to_checkout(b)
    elif converted:
        if b.page != "/checkout":
            _to_checkout(b)
        _pay(b)
        _purchase(b)
    if rng.random() < SESSION_END_SHARE:  # else it just goes quiet: the idle sweep ends it
        b.after(500, 3000)
        b.emit("session_end")


def _session(
    session_id: str,
    start: int,
    rng: random.Random,
    friction: bool,
    *,
    fate: float,
    effects: str,
    nudge_effect: float,
    holdout_share: float,
    rules_action: RulesAction,
) -> SimSession:
    """One shopper; ``fate`` (uniform in [0, 1), from its own generator) decides the
    outcome, so everything before :func:`_finish` is the same whatever it is."""
    b = _Builder(session_id, start, rng)
    referrer = rng.choice((None, "https://www.google.com/", "https://news.example/deals"))
    b.view(rng.choice(("/", "/", "/", "/c/sale")), referrer)
    _browse(b, rng.randint(1, 6))
    if friction:
        for name in _pick_episodes(rng):
            b.episode = name
            began = b.ts
            b.note(0.5)
            EPISODES[name].generate(b)
            b.frictions.append(Friction(name, min(1.0, b.severity), b.recovered, began, b.ts,
                                        b.payment))
            b.episode = ""
            _browse(b, rng.randint(0, 3))
    shopper = Shopper(b.stage, b.cart, tuple(b.frictions))
    outcomes = world.potential_outcomes(shopper, fate, effects=effects, uniform_effect=nudge_effect)
    holdout = in_holdout(session_id, holdout_share)
    action = rules_action(b.events) if outcomes.varies else None
    converted = outcomes.realised(action)
    ending_at = len(b.events)
    alternative: tuple[Event, ...] = ()
    if outcomes.varies:
        other = b.fork()
        _finish(other, friction, not converted)
        alternative = tuple(other.events[ending_at:])
    _finish(b, friction, converted)
    return SimSession(session_id, b.events, b.labels, friction, converted, holdout, shopper,
                      outcomes, action, ending_at, alternative)


#: The largest uniform effect ``generate`` takes, either way (probability points).
MAX_UNIFORM_EFFECT: Final = 0.5


def generate(
    seed: int,
    sessions: int,
    *,
    start_ts: int = DEFAULT_START_TS,
    friction_share: float = 0.3,
    effects: str = "uniform",
    nudge_effect: float = 0.0,
    holdout_share: float = 0.0,
) -> Iterator[SimSession]:
    """Yield ``sessions`` shoppers; session *i* depends only on the arguments and *i*.

    A new session starts every 200-800 ms of event time, so sessions overlap like
    real traffic; about ``friction_share`` of them carry one (sometimes two) labelled
    friction episodes. Each session ends converted (a ``purchase``) or abandoned (a
    ``session_end``, or silence), as :mod:`streamer.tools.world` decides from what
    happened in it and from the intervention that reached it: with ``effects``
    "uniform", any intervention adds ``nudge_effect`` to everyone's chance (0, the
    default: interventions change nothing); with "heterogeneous", each kind of
    intervention helps or hurts by the session's context (:func:`world.effect`). Which
    intervention reached it is what the rules alone deliver, with ``holdout_share``
    (by :func:`detectors.policy.in_holdout`: set the same share in ``[policy]``).
    """
    if sessions < 0:
        raise ValueError(f"sessions = {sessions} must be >= 0")
    if not 0.0 <= friction_share <= 1.0:
        raise ValueError(f"friction_share = {friction_share} must be between 0 and 1")
    if effects not in world.EFFECTS:
        raise ValueError(f"effects = {effects!r}: allowed {', '.join(world.EFFECTS)}")
    if not -MAX_UNIFORM_EFFECT <= nudge_effect <= MAX_UNIFORM_EFFECT:
        raise ValueError(
            f"nudge_effect = {nudge_effect} must be between {-MAX_UNIFORM_EFFECT} and "
            f"{MAX_UNIFORM_EFFECT} (probability points added by any intervention)"
        )
    if effects == "heterogeneous" and nudge_effect:
        raise ValueError("nudge_effect is the size of a uniform effect: with effects = "
                         "'heterogeneous' the world decides each effect (leave it at 0)")
    if not 0.0 <= holdout_share <= 1.0:
        raise ValueError(f"holdout_share = {holdout_share} must be between 0 and 1")
    if start_ts < 0:
        raise ValueError(f"start_ts = {start_ts} must be >= 0 (ms since epoch)")
    starts = random.Random(f"frictionwatch-sim-starts:{seed}")
    rules_action = RulesAction(holdout_share)
    start = start_ts
    for i in range(sessions):
        rng = random.Random(f"frictionwatch-sim:{seed}:{i}")
        friction = rng.random() < friction_share
        fate = random.Random(f"frictionwatch-sim-outcome:{seed}:{i}").random()
        yield _session(f"sim-{seed}-{i:06d}", start, rng, friction, fate=fate, effects=effects,
                       nudge_effect=nudge_effect, holdout_share=holdout_share,
                       rules_action=rules_action)
        start += starts.randint(*SESSION_GAP_MS)


# -- delivery -------------------------------------------------------------------------
def _batches(session: SimSession, flush_ms: int) -> list[list[Event]]:
    rng = random.Random(f"frictionwatch-beacons:{session.session_id}")
    batches: list[list[Event]] = []
    batch: list[Event] = []
    limit = rng.randint(1, MAX_BATCH)
    for event in session.events:
        if batch and (
            len(batch) >= limit
            or event["ts"] - batch[0]["ts"] > flush_ms
            or event["type"] == "page_view"
        ):
            batches.append(batch)
            batch, limit = [], rng.randint(1, MAX_BATCH)
        batch.append(event)
    if batch:
        batches.append(batch)
    return batches


def to_records(session: SimSession, *, flush_ms: int = FLUSH_MS) -> list[tuple[bytes, bytes]]:
    """The session's events as browser beacons: (key = session_id, value = JSON array).

    Batches of 1-20 events in order, cut on navigation and once a batch spans
    ``flush_ms``, as the SDK flushes; the cut points depend only on the session id.
    """
    key = session.session_id.encode()
    return [(key, orjson.dumps(batch)) for batch in _batches(session, flush_ms)]


def interleave(
    sessions: Iterable[SimSession], *, flush_ms: int = FLUSH_MS
) -> list[tuple[bytes, bytes]]:
    """Every beacon of every session in event-time order of its first event.

    Ties keep session order, and a session's beacons keep theirs, so each session's
    events arrive in order: what a topic partitioned by session_id sees live.
    """
    keyed = []
    for n, session in enumerate(sessions):
        key = session.session_id.encode()
        for i, batch in enumerate(_batches(session, flush_ms)):
            keyed.append((batch[0]["ts"], n, i, key, orjson.dumps(batch)))
    keyed.sort(key=lambda item: item[:3])
    return [(key, value) for *_, key, value in keyed]


def write_jsonl(
    sessions: Iterable[SimSession],
    events_path: str | PathLike[str] | None,
    labels_path: str | PathLike[str] | None,
    *,
    potential_outcomes: bool = False,
) -> tuple[int, int]:
    """Write all events (one object a line, sorted by ts) and all labels (by onset);
    either path may be None, to write only the other. With ``potential_outcomes``, the
    labels file also gets one :data:`POTENTIAL_OUTCOMES` line per session (its
    ``onset_ts`` is the session's first event): ``p`` and ``y`` per action, the
    ``action`` the events realise and whether they convert.

    Returns (events written, labels written); the potential-outcome lines are not
    counted as labels.
    """
    sessions = list(sessions)
    n_events = n_labels = 0
    if events_path is not None:
        merged = heapq.merge(*(s.events for s in sessions), key=lambda e: e["ts"])
        with open(events_path, "wb") as out:
            for event in merged:
                out.write(orjson.dumps(event) + b"\n")
                n_events += 1
    if labels_path is not None:
        labels = [label for s in sessions for label in s.labels]
        n_labels = len(labels)
        if potential_outcomes:
            labels += [s.outcome_label() for s in sessions if s.outcomes is not None and s.events]
        labels.sort(key=lambda lb: (lb["onset_ts"], lb["session_id"], lb["type"]))
        with open(labels_path, "wb") as out:
            for label in labels:
                out.write(orjson.dumps(label) + b"\n")
    return n_events, n_labels
