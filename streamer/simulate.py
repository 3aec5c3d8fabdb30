"""Labelled synthetic web-shop traffic: seeded, reproducible, no clock, no I/O.

``generate(seed, n)`` yields :class:`SimSession` objects: one shopper's v1 events (each
with a unique ``event_id`` and its ``page``, in ``ts`` order) and the friction the
detectors are expected to find in them. A label is ``{"session_id", "type",
"onset_ts", "episode"}``: ``type`` is the detector that must fire, ``onset_ts`` the
``ts`` of the event at which it first fires, ``episode`` the generator that planted
it (one episode can plant two labels: an unresponsive button clicked in a burst is
both a rage click and a dead click).

Clean shoppers browse, search, scroll, fill the cart and sometimes pay, and carry the
confounders other tools misfire on (double clicks, slow but visible reactions, one
declined card then success, spaced repeats on a stepper, triple-click selection in a
text input, reading the help page without asking for help): none may fire.

Friction kinds are a table (:data:`EPISODES`); a new kind is one function that
appends events with the builder and calls ``label()`` for each detector it expects.

>>> s = next(generate(seed=7, sessions=1, friction_share=1.0))
>>> s.session_id, s.friction, {label["session_id"] for label in s.labels}
('sim-7-000000', True, {'sim-7-000000'})
>>> s.events == next(generate(seed=7, sessions=1, friction_share=1.0)).events
True
>>> sum(len(orjson.loads(v)) for _, v in to_records(s)) == len(s.events)
True
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any, Final, NamedTuple

import orjson

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
    "button.size-option": (880, 400, "M"),
    "button#notify-me": (960, 580, "Notify me"),
    "button#load-more": (640, 760, "Load more"),
    "div.promo-banner": (640, 180, "Free shipping over 50"),
    "button#apply-coupon": (1080, 560, "Apply"),
    "button#checkout": (1040, 640, "Checkout"),
    "input#email": (640, 260, None),
    "input#card-number": (640, 380, None),
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


@dataclass(frozen=True, slots=True)
class SimSession:
    """One synthetic shopper: events in ``ts`` order and the labels they should raise."""

    session_id: str
    events: list[Event]
    labels: list[Label]
    friction: bool


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
        self.purchased = False
        #: A failing checkout was abandoned: its failure count was never reset by a
        #: purchase, so no further checkout_failed may follow in this session.
        self.checkout_locked = False
        self.episode = ""

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
        self.page = page
        return self.emit("page_view", referrer=referrer) if referrer else self.emit("page_view")

    def click(
        self,
        target: str,
        reaction: Any = None,
        *,
        jitter: int = 4,
        x: int | None = None,
        y: int | None = None,
    ) -> Event:
        """A click on ``target``; ``reaction`` None draws a normal one (50-900 ms),
        ``_ABSENT`` leaves it out (no reaction), anything else is used as is."""
        bx, by, text = LAYOUT.get(target, (640, 400, None))
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
        return self.emit("click", **fields)

    def reaction(self) -> int:
        return int(self.rng.triangular(50, 900, 180))

    def nav_click(self, target: str, page: str, **where: int) -> None:
        """Click a link and land on ``page`` once the UI reacted."""
        reaction = self.reaction()
        self.click(target, reaction, **where)
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
    b.think()
    y = 0
    for _ in range(b.rng.randint(1, 4)):
        up = y > 0 and b.rng.random() < 0.2
        y = max(0, y - b.rng.randint(200, 500)) if up else y + b.rng.randint(300, 900)
        b.emit("scroll", y=y, direction="up" if up else "down")
        b.after(250, 1500)


def _search(b: _Builder) -> None:
    b.think()
    b.click("input#search", b.rng.randint(10, 60))
    b.after(1500, 5000)  # typing
    b.emit("search", query=b.rng.choice(QUERIES), results=b.rng.randint(1, 120))
    b.after(150, 600)
    b.view("/search")


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
    b.purchased = True
    b.after(300, 900)
    b.view("/order/confirmed")


def _checkout(b: _Builder) -> None:
    """A clean checkout; sometimes one failed payment first, then success."""
    _to_checkout(b)
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
    for i in range(b.rng.randint(2, 4)):
        if i:
            b.after(1500, 4000)
        roll = b.rng.random()
        if roll < 0.6:
            event = b.click(target, _ABSENT)
        elif roll < 0.8:
            event = _null_click(b, target)
        else:  # something happened, far too late to count as a reaction
            event = b.click(target, b.rng.randint(2500, 6000))
        first = first or event
    assert first is not None
    b.label("dead_click", first)


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
    if b.rng.random() < 0.4:
        _pay(b)
        _purchase(b)
    else:
        b.checkout_locked = True


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


def _session(session_id: str, start: int, rng: random.Random, friction: bool) -> SimSession:
    b = _Builder(session_id, start, rng)
    referrer = rng.choice((None, "https://www.google.com/", "https://news.example/deals"))
    b.view(rng.choice(("/", "/", "/", "/c/sale")), referrer)
    _browse(b, rng.randint(1, 6))
    if friction:
        for name in _pick_episodes(rng):
            b.episode = name
            EPISODES[name].generate(b)
            b.episode = ""
            _browse(b, rng.randint(0, 3))
    else:
        _browse(b, rng.randint(0, 6))
    if not b.checkout_locked and not b.purchased and rng.random() < 0.4:
        _checkout(b)
    if rng.random() < 0.6:
        b.after(500, 3000)
        b.emit("session_end")
    return SimSession(session_id, b.events, b.labels, friction)


def generate(
    seed: int,
    sessions: int,
    *,
    start_ts: int = DEFAULT_START_TS,
    friction_share: float = 0.3,
) -> Iterator[SimSession]:
    """Yield ``sessions`` shoppers; session *i* depends only on ``seed`` and *i*.

    A new session starts every 200-800 ms of event time, so sessions overlap like
    real traffic; about ``friction_share`` of them carry one (sometimes two) labelled
    friction episodes.
    """
    if sessions < 0:
        raise ValueError(f"sessions = {sessions} must be >= 0")
    if not 0.0 <= friction_share <= 1.0:
        raise ValueError(f"friction_share = {friction_share} must be between 0 and 1")
    if start_ts < 0:
        raise ValueError(f"start_ts = {start_ts} must be >= 0 (ms since epoch)")
    starts = random.Random(f"frictionwatch-sim-starts:{seed}")
    start = start_ts
    for i in range(sessions):
        rng = random.Random(f"frictionwatch-sim:{seed}:{i}")
        friction = rng.random() < friction_share
        yield _session(f"sim-{seed}-{i:06d}", start, rng, friction)
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
    events_path: str | PathLike[str],
    labels_path: str | PathLike[str],
) -> tuple[int, int]:
    """Write all events (one object a line, sorted by ts) and all labels (by onset).

    Returns (events written, labels written).
    """
    sessions = list(sessions)
    merged = heapq.merge(*(s.events for s in sessions), key=lambda e: e["ts"])
    n_events = 0
    with open(events_path, "wb") as out:
        for event in merged:
            out.write(orjson.dumps(event) + b"\n")
            n_events += 1
    labels = sorted(
        (label for s in sessions for label in s.labels),
        key=lambda lb: (lb["onset_ts"], lb["session_id"], lb["type"]),
    )
    with open(labels_path, "wb") as out:
        for label in labels:
            out.write(orjson.dumps(label) + b"\n")
    return n_events, len(labels)
