"""Tokens, buckets, guard and fan-out on their own: no broker, no browser, no sleeping."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.web import guard
from streamer.web.delivery import Fanout
from streamer.web.ratelimit import TokenBuckets
from streamer.web.tokens import TokenError, TokenSigner


def test_tokens_are_bound_to_session_and_time() -> None:
    signer = TokenSigner(b"s" * 32, ttl_s=100)
    token = signer.issue("a", now=0)
    assert signer.verify(token, "a", now=99) == 100
    cases = [
        (None, "a", 0, 401, "missing_token"),
        (token, "b", 0, 403, "wrong_session"),
        (token, "a", 100, 401, "expired_token"),
        ("v1.YQ.100.", "a", 0, 403, "bad_token"),
        ("garbage", "a", 0, 403, "bad_token"),
        (TokenSigner(b"t" * 32, ttl_s=100).issue("a", now=0), "a", 0, 403, "bad_token"),
        (token.replace(".100.", ".999."), "a", 0, 403, "bad_token"),  # a longer life: forged
    ]
    for tok, sid, now, status, reason in cases:
        with pytest.raises(TokenError) as err:
            signer.verify(tok, sid, now=now)
        assert (err.value.status, err.value.reason) == (status, reason), tok
    assert signer.verify(token, "a", now=150, grace_s=100) == 100  # renewal window
    with pytest.raises(ValueError):
        TokenSigner(b"short", ttl_s=1)


def test_buckets_keep_bounded_memory() -> None:
    buckets = TokenBuckets(rate=1, burst=2, max_keys=50)
    for i in range(10_000):
        buckets.take(f"client-{i}", 1, now=0.0)
    assert len(buckets) == 50


def test_guard_charges_sessions_all_or_nothing() -> None:
    g = guard.Guard.from_settings(Settings(rate_session_per_s=1, rate_session_burst=10))
    g.clock = lambda: 0.0
    assert g.check_sessions([("a", 8), ("b", 5)]) is None
    refusal = g.check_sessions([("b", 5), ("a", 5)])  # a has 2 left: wait 3 s
    assert refusal and refusal.status == 429 and refusal.headers["Retry-After"] == "3"
    assert g.check_sessions([("b", 5)]) is None  # b was not charged by the refused beacon


def _record(iid: str, sid: str = "s1", **extra: object) -> bytes:
    return orjson.dumps({"intervention_id": iid, "session_id": sid, "kind": "nudge", "ts": 1,
                         "message": "m", "reasons": [{"detector": "rage_click",
                                                      "evidence": {"target": "#x"}}],
                         "risk": 0.4, "delivered": True, **extra})


def test_fanout_delivers_to_its_session_only_and_never_holdout() -> None:
    async def scenario() -> None:
        fanout = Fanout(Metrics())
        mine, _ = fanout.subscribe("s1", None)
        other, _ = fanout.subscribe("s2", None)
        assert fanout.publish(_record("i1")) == "fanned_out"
        assert fanout.publish(_record("i2", delivered=False)) == "holdout"
        assert fanout.publish(_record("i3", delivered=None)) == "holdout"
        assert fanout.publish(b"not json") == "invalid"
        frames = await mine.next(timeout=1)
        assert len(frames) == 1 and b"id: i1\n" in frames[0]
        assert b"#x" not in frames[0] and b"risk" not in frames[0]  # evidence stays home
        assert await other.next(timeout=0.01) == []
    asyncio.run(scenario())


def test_fanout_drops_a_slow_client_not_the_worker() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        fanout = Fanout(metrics, backlog=3)
        slow, _ = fanout.subscribe("s1", None)
        for i in range(5):
            fanout.publish(_record(f"i{i}"))
        assert slow.closed == "slow" and await slow.next(timeout=1) == []
        fanout.unsubscribe(slow)
        assert metrics.registry.get_sample_value(
            "frictionwatch_sse_disconnects_total", {"reason": "slow"}) == 1
        # It reconnects and catches up from the replay buffer (the last 8 per session).
        _, backlog = fanout.subscribe("s1", "i1")
        assert [f.split(b"\n")[0] for f in backlog] == [b"id: i2", b"id: i3", b"id: i4"]
    asyncio.run(scenario())


def test_fanout_replay_is_short_and_bounded() -> None:
    async def scenario() -> None:
        now = [0.0]
        fanout = Fanout(Metrics(), replay_s=60, max_sessions=10, max_streams_per_session=2,
                        clock=lambda: now[0])
        fanout.publish(_record("old"))
        now[0] = 61
        first, backlog = fanout.subscribe("s1", None)
        assert backlog == []  # too old to replay
        for i in range(20):
            fanout.publish(_record(f"x{i}", sid=f"other-{i}"))
        assert len(fanout._recent) == 10  # noqa: SLF001
        a, _ = fanout.subscribe("s1", None)
        b, _ = fanout.subscribe("s1", None)
        assert first.closed == "replaced" and a.closed is None and b.closed is None
        assert fanout.streams == 2
        fanout.close_all()
        assert b.closed == "shutdown"
    asyncio.run(scenario())


# -- the hostile browser (issue 10) ---------------------------------------------------


def _forms_of(token: str) -> dict[str, str]:
    """Other spellings of a genuine token that the old parser verified (or died on)."""
    version, claim, expiry, sig = token.split(".")
    arabic = expiry.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = b64[b64.index(sig[-1]) | 1]  # the 2 low bits of the last character are unused
    return {
        "superscript expiry": f"{version}.{claim}.{expiry}\u00b2.{sig}",
        "5000-digit expiry": f"{version}.{claim}.{'9' * 5000}.{sig}",
        "Arabic-Indic expiry": f"{version}.{claim}.{arabic}.{sig}",
        "leading zero": f"{version}.{claim}.0{expiry}.{sig}",
        "junk inside the signature": f"{version}.{claim}.{expiry}.{sig[:20]}!{sig[20:]}",
        "padded signature": f"{version}.{claim}.{expiry}.{sig}=",
        "non-canonical last character": f"{version}.{claim}.{expiry}.{sig[:-1]}{same_bytes}",
        "non-canonical session": f"{version}.YR.{expiry}.{sig}",
        "signature too short": f"{version}.{claim}.{expiry}.{sig[:-1]}",
        "space": f"{version}.{claim}.{expiry}.{sig} ",
        "no version": f".{claim}.{expiry}.{sig}",
        "five parts": f"{token}.x",
    }


def test_tokens_have_one_strict_ascii_spelling() -> None:
    """Issue 10 item 9: an expiry ending in '²' or of 5000 digits gave HTTP 500; tokens
    with Arabic-Indic digits, leading zeros or junk inside the signature verified."""
    signer = TokenSigner(b"s" * 32, ttl_s=100)
    token = signer.issue("a", now=0)
    assert signer.verify(token, "a", now=0) == 100
    for name, form in _forms_of(token).items():
        with pytest.raises(TokenError) as err:
            signer.verify(form, "a", now=0)
        assert (err.value.status, err.value.reason) == (403, "bad_token"), name
    for odd in (5, 1.5, ["v1"], {"t": 1}, b"v1", True):
        with pytest.raises(TokenError):
            signer.verify(odd, "a", now=0)
    for session in (None, 5, "", "a\ud800"):
        with pytest.raises(TokenError):
            signer.verify(token, session, now=0)


_token_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="v1.0123456789AaYQ_-=²١ ", max_size=80),
    st.builds(lambda parts: ".".join(parts), st.lists(st.text(max_size=50), max_size=6)),
)


@settings(max_examples=500, deadline=None, database=None)
@given(token=_token_text, session=st.text(max_size=20), mutate=st.integers(0, 200))
def test_any_string_is_a_token_or_a_token_error(token: str, session: str, mutate: int) -> None:
    signer = TokenSigner(b"s" * 32, ttl_s=100)
    genuine = signer.issue("a", now=0)
    candidates = [token, genuine[:mutate] + token + genuine[mutate:], genuine[:mutate]]
    for candidate in candidates:
        for sid in (session, "a"):
            try:
                signer.verify(candidate, sid, now=0)
            except TokenError as exc:
                assert exc.status in (401, 403) and exc.reason in guard.REASONS
            else:
                assert candidate == genuine and sid == "a"


def _guard(**settings_: object) -> guard.Guard:
    g = guard.Guard.from_settings(Settings(secret="k" * 32, **settings_))  # type: ignore[arg-type]
    g.clock = lambda: 0.0
    return g


def test_collect_needs_the_token_of_each_session() -> None:
    """Issue 10 item 4: collect took any session id, so anyone could hand anyone off."""
    g = _guard()
    a, b = g.signer.issue("s_a"), g.signer.issue("s_b")
    assert g.check_tokens(["s_a"], a, None) is None
    assert g.check_tokens(["s_a", "s_b"], None, {"s_a": a, "s_b": b}) is None
    refusals = [
        g.check_tokens(["s_a"], None, None),  # none at all
        g.check_tokens(["s_a", "s_invented"], a, None),  # one token, two sessions
        g.check_tokens(["s_b"], a, None),  # someone else's session
        g.check_tokens(["s_a"], None, {"s_b": b}),  # not in the map
        g.check_tokens(["s_a"], None, {f"s{i}": a for i in range(9)}),  # too many
        g.check_tokens(["s_a"], "v1.forged", None),
        g.check_tokens(["s_a"], None, ["not", "a", "map"]),
    ]
    assert [(r.status, r.reason) if r else None for r in refusals] == [
        (401, "missing_token"), (403, "wrong_session"), (403, "wrong_session"),
        (403, "wrong_session"), (400, "bad_token"), (403, "bad_token"), (400, "bad_token")]
    assert all(r.reason in guard.REASONS for r in refusals if r)
    # The opt-out for backends that cannot hold tokens: none needed, but any sent is checked.
    open_ = _guard(collect_requires_token=False)
    assert open_.check_tokens(["s_invented"], None, None) is None
    assert open_.check_tokens(["s_a"], "v1.forged", None).reason == "bad_token"


def test_collect_budgets_events_and_new_sessions_per_client() -> None:
    """Issue 10 items 4 and 5: limits counted requests, not events or new sessions."""
    g = _guard(rate_client_events_per_s=10, rate_client_events_burst=500,
               rate_session_burst=200)
    for i in range(2):
        assert g.check_beacon("ip", [(f"s{i}", 200)]) is None
    refusal = g.check_beacon("ip", [("s2", 200)])
    assert refusal and (refusal.status, refusal.reason) == (429, "rate_limited_events")
    assert refusal.headers["Retry-After"] == "10"
    assert g.check_beacon("other-ip", [("s2", 200)]) is None  # per client
    assert g.check_beacon("ip", [("s3", 501)]).status == 413  # more than a burst, ever

    # Sessions are new at POST /v1/sessions (tokens required) ...
    g = _guard(new_sessions_per_min=3)
    assert [g.check_new_session("ip") is None for _ in range(4)] == [True, True, True, False]
    assert g.check_new_session("ip").reason == "rate_limited_new_sessions"
    assert g.check_beacon("ip", [(f"s{i}", 1) for i in range(20)]) is None  # tokens did it
    # ... and, without tokens, at collect: one beacon cannot start 1000 sessions.
    g = _guard(new_sessions_per_min=10, collect_requires_token=False)
    refusal = g.check_beacon("ip", [(f"s{i}", 1) for i in range(1000)])
    assert refusal and refusal.reason == "rate_limited_new_sessions"
    assert g.check_beacon("ip", [(f"s{i}", 1) for i in range(10)]) is None
    assert g.check_beacon("ip", [("s0", 1), ("s9", 1)]) is None  # known sessions are free
    assert g.check_beacon("ip", [("s10", 1)]).reason == "rate_limited_new_sessions"


def test_settings_of_the_browser_edge_come_from_the_environment() -> None:
    s = Settings.load({"FW_COLLECT_REQUIRES_TOKEN": "false", "FW_NEW_SESSIONS_PER_MIN": "5",
                       "FW_SSE_STREAMS_PER_CLIENT": "3", "FW_RATE_CLIENT_EVENTS_PER_S": "50",
                       "FW_RATE_CLIENT_EVENTS_BURST": "70"})
    g = guard.Guard.from_settings(s)
    assert (g.require_token, g.streams_per_client, g.new_sessions.burst) == (False, 3, 5)
    assert (g.client_events.rate, g.client_events.burst) == (50, 70)
    assert Settings().collect_requires_token is True  # secure by default


def test_fanout_counts_streams_per_client() -> None:
    """Issue 10 item 8: 1000 streams from 10 addresses filled the worker's global cap."""
    async def scenario() -> None:
        fanout = Fanout(Metrics())
        subs = [fanout.subscribe(f"s{i}", None, client="ip-1")[0] for i in range(5)]
        fanout.subscribe("s9", None, client="ip-2")
        assert (fanout.client_streams("ip-1"), fanout.client_streams("ip-2")) == (5, 1)
        for sub in subs:
            fanout.unsubscribe(sub)
        assert fanout.client_streams("ip-1") == 0 and "ip-1" not in fanout._per_client  # noqa: SLF001
        # A stream replaced by a newer one of its session frees its client's slot too.
        for _ in range(6):
            fanout.subscribe("same", None, client="ip-3")
        assert fanout.client_streams("ip-3") == fanout.max_streams_per_session
    asyncio.run(scenario())


def test_a_browser_gets_a_bounded_view_of_a_handoff() -> None:
    """Issue 10 item 7: a 4000-character code became a 4.4 KB SSE frame."""
    async def scenario() -> None:
        fanout = Fanout(Metrics())
        sub, _ = fanout.subscribe("s1", None)
        code = "x" * 4000
        record = orjson.loads(_record("i1", kind="handoff", message="We'll help. " * 400,
                                      context={"summary": f"3 failed payment(s) ({code})",
                                               "checkout": {"codes": [code]}}))
        record["reasons"] = [{"detector": "d" * 4000}] + [{"detector": "help_request"}] * 50
        assert fanout.publish(orjson.dumps(record)) == "fanned_out"
        (frame,) = await sub.next(timeout=1)
        assert len(frame) < 1500 and b"xxxx" not in frame and b"dddd" not in frame
        view = orjson.loads(frame.split(b"data: ", 1)[1])
        assert view["summary"] == "3 failed payment(s)" and len(view["reasons"]) == 11
        # An id that could end the frame (a newline) is not sent at all.
        assert fanout.publish(_record("i2\nevent: x")) == "invalid"
        assert fanout.publish(_record("i3", kind="<script>")) == "invalid"
    asyncio.run(scenario())


def test_collect_stamps_the_servers_receive_time() -> None:
    from streamer.web.collect import validate

    by_session, rejected = validate(
        [{"session_id": "s", "type": "x", "ts": 1, "received_at": 99},
         {"session_id": "s", "type": "x", "ts": 2}], Metrics(), now_ms=1234)
    assert [e["received_at"] for e in by_session["s"]] == [1234, 1234] and rejected == []
