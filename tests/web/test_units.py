"""Tokens, buckets, guard and fan-out on their own: no broker, no browser, no sleeping."""

from __future__ import annotations

import asyncio

import orjson
import pytest

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
