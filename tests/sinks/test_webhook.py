"""The webhook sink without a broker: retries, backoff, dead letters, de-duplication,
signatures, ordering and bounded concurrency, with an injected transport, clock, sleep
and random draw (no test here waits for real time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from detectors.errors import ConfigError
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.sinks.webhook import (
    DEADLETTER_REASON,
    Answer,
    Backoff,
    Dispatcher,
    Webhooks,
    WebhookSink,
    register,
)
from streamer.stream.topics import INCIDENTS_TOPIC, INTERVENTIONS_TOPIC
from tests.sinks.receiver import documented_verify

SECRET = "whsec-0123456789abcdef"
NOW = 1_767_225_600.0
URL = "https://desk.example.com/hooks/fw?token=s3cret"
URL2 = "https://chat.example.com/fw"


@dataclass(frozen=True)
class Msg:
    value: bytes | None
    key: bytes | None = b"s1"
    topic: str = INTERVENTIONS_TOPIC
    partition: int = 0
    offset: int = 0
    timestamp: int = int(NOW * 1000) - 2000


def handoff(ident: str = "i1", session: str = "s1", **changes: Any) -> bytes:
    record = {"intervention_id": ident, "session_id": session, "kind": "handoff",
              "ts": 1_767_225_598_000, "reasons": [{"detector": "help_request", "strength": 1.0,
                                                    "evidence": {}}],
              "message": "A person will be with you", "risk": 0.9, "delivered": True,
              "context": {"summary": "asked for a person", "pages": ["/checkout"]}}
    return orjson.dumps({**record, **changes})


class Scripted:
    """A transport answering each URL from a list (the last answer repeats)."""

    def __init__(self, answers: Mapping[str, list[Answer]]) -> None:
        self.answers = {url: list(a) for url, a in answers.items()}
        self.calls: list[tuple[str, bytes, dict[str, str], float]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> Answer:
        self.calls.append((url, body, dict(headers), timeout_s))
        queue = self.answers[url]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def close(self) -> None:
        pass


OK = Answer(200, "HTTP 200")
ERROR = Answer(500, "HTTP 500")
TIMEOUT = Answer(None, "no answer within 10 s")


def make(answers: Mapping[str, list[Answer]], **kwargs: Any) -> tuple[
        Webhooks, Scripted, list[float], list[tuple[bytes | None, bytes | None, list[Any]]]]:
    transport = Scripted(answers)
    sleeps: list[float] = []
    dead: list[tuple[bytes | None, bytes | None, list[Any]]] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def dead_letter(key: bytes | None, value: bytes | None, headers: list[Any]) -> None:
        dead.append((key, value, headers))

    options: dict[str, Any] = {"max_tries": 5, "backoff": Backoff(1.0, 8.0), "clock": lambda: NOW,
                               "sleep": sleep, "rand": lambda: 0.5, "transport": transport}
    options.update(kwargs)
    hooks = Webhooks(list(answers), SECRET, Metrics(), dead_letter, **options)
    return hooks, transport, sleeps, dead


def count(hooks: Webhooks, outcome: str, kind: str = "handoff") -> float:
    value = hooks.metrics.registry.get_sample_value(
        "frictionwatch_webhook_deliveries_total", {"outcome": outcome, "type": kind})
    return value or 0.0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- retries and backoff ------------------------------------------------------------------
def test_500_twice_then_200_is_one_delivery_after_two_backoffs() -> None:
    hooks, transport, sleeps, dead = make({URL: [ERROR, ERROR, OK]})
    assert run(hooks.handle(Msg(handoff()))) == "delivered"
    assert len(transport.calls) == 3 and dead == []
    # 1 s then 2 s ceilings, the wait drawn from their upper half (rand 0.5: 3/4 of it).
    assert sleeps == [0.75, 1.5]
    assert (count(hooks, "delivered"), count(hooks, "retried")) == (1, 2)
    # Every try carries the same body and idempotency key.
    assert {c[1] for c in transport.calls} == {transport.calls[0][1]}
    assert {c[2]["X-FW-Idempotency-Key"] for c in transport.calls} == {"i1"}
    # Latency: from the record's Kafka timestamp (2 s before NOW) to the 2xx.
    registry = hooks.metrics.registry
    assert registry.get_sample_value("frictionwatch_webhook_delivery_seconds_sum") == 2.0


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    hooks, _, sleeps, _ = make({URL: [ERROR] * 5}, max_tries=6, rand=lambda: 0.0)
    run(hooks.handle(Msg(handoff())))
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]  # half of 1, 2, 4, 8, 8 (the cap)
    b = Backoff(1.0, 8.0)
    draws = [b.delay(3, rand=r / 10) for r in range(10)]
    assert min(draws) == 2.0 and max(draws) < 4.0 and len(set(draws)) == 10  # jittered
    hooks, _, sleeps, _ = make({URL: [Answer(429, "HTTP 429", retry_after=5.0), OK]})
    assert run(hooks.handle(Msg(handoff()))) == "delivered"
    assert sleeps == [5.0]
    hooks, _, sleeps, _ = make({URL: [Answer(503, "HTTP 503", retry_after=600.0), OK]})
    run(hooks.handle(Msg(handoff())))
    assert sleeps == [8.0]  # never past the cap
    with pytest.raises(ValueError, match="base_s <= cap_s"):
        Backoff(10.0, 1.0)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_tried_again(status: int) -> None:
    hooks, transport, _, dead = make({URL: [Answer(status, f"HTTP {status}"), OK]})
    assert run(hooks.handle(Msg(handoff()))) == "delivered"
    assert len(transport.calls) == 2 and dead == []


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 422])
def test_other_statuses_are_final_and_dead_letter_at_once(status: int) -> None:
    hooks, transport, sleeps, dead = make({URL: [Answer(status, f"HTTP {status}")]})
    message = Msg(handoff(), partition=3, offset=41)
    assert run(hooks.handle(message)) == "dead_lettered"
    assert len(transport.calls) == 1 and sleeps == []
    [(key, value, headers)] = dead
    assert key == b"s1" and value == message.value  # the original bytes
    h = {k: v.decode() for k, v in headers}
    assert h["fw-reason"] == DEADLETTER_REASON == "webhook_failed"
    assert h["fw-detail"] == f"POST https://desk.example.com/hooks/fw: HTTP {status}, not retried"
    assert (h["fw-topic"], h["fw-partition"], h["fw-offset"]) == (INTERVENTIONS_TOPIC, "3", "41")
    assert count(hooks, "dead_lettered") == 1 and count(hooks, "retried") == 0


def test_a_receiver_that_never_answers_dead_letters_after_max_tries() -> None:
    hooks, transport, sleeps, dead = make({URL: [TIMEOUT]}, max_tries=4)
    assert run(hooks.handle(Msg(handoff()))) == "dead_lettered"
    assert len(transport.calls) == 4 and len(sleeps) == 3
    detail = dict(dead[0][2])["fw-detail"].decode()
    assert detail == "POST https://desk.example.com/hooks/fw: no answer within 10 s, after 4 tries"
    assert "s3cret" not in detail  # the query string (a token, often) stays out
    assert (count(hooks, "retried"), count(hooks, "dead_lettered")) == (3, 1)
    # Not remembered as delivered: the same record again is tried again.
    assert run(hooks.handle(Msg(handoff()))) == "dead_lettered"


# -- de-duplication ------------------------------------------------------------------------
def test_each_id_reaches_each_url_once_even_when_the_topic_holds_it_twice() -> None:
    hooks, transport, _, _ = make({URL: [OK], URL2: [OK]})
    for _ in range(3):
        run(hooks.handle(Msg(handoff("i1"))))
    run(hooks.handle(Msg(handoff("i2"))))
    posted = [(url, headers["X-FW-Idempotency-Key"]) for url, _, headers, _ in transport.calls]
    assert sorted(posted) == sorted([(URL, "i1"), (URL2, "i1"), (URL, "i2"), (URL2, "i2")])
    assert count(hooks, "delivered") == 4 and count(hooks, "duplicate") == 4


def test_a_failed_url_does_not_hold_back_the_others_and_gets_the_duplicate() -> None:
    hooks, transport, _, dead = make({URL: [OK], URL2: [Answer(400, "HTTP 400")]})
    assert run(hooks.handle(Msg(handoff()))) == "dead_lettered"
    assert len(dead) == 1 and b"chat.example.com" in dict(dead[0][2])["fw-detail"]
    transport.calls.clear()
    run(hooks.handle(Msg(handoff())))  # a duplicate: only the URL that never got it
    assert [c[0] for c in transport.calls] == [URL2]


def test_remembered_ids_are_bounded_least_recently_used_first() -> None:
    hooks, transport, _, _ = make({URL: [OK]}, remember=2)
    for ident in ("a", "b", "a", "c", "a", "b"):
        run(hooks.handle(Msg(handoff(ident))))
    # "b" was forgotten when "c" came (a was used more recently); "a" never was.
    assert [c[2]["X-FW-Idempotency-Key"] for c in transport.calls] == ["a", "b", "c", "b"]


# -- what is sent -----------------------------------------------------------------------------
def test_only_delivered_handoffs_and_asked_for_incidents_are_sent() -> None:
    opened = orjson.dumps({"kind": "incident_open", "ts": 1, "key": "/checkout|checkout_failure",
                           "route": "/checkout", "failure": "checkout_failure", "rule": "rate",
                           "count": 9.0, "baseline": 0.5, "incident_id": "inc-1"})
    closed = opened.replace(b"incident_open", b"incident_close")
    records = [
        Msg(handoff("nudge-1", kind="nudge")),
        Msg(handoff("holdout-1", delivered=False)),
        Msg(opened, key=b"/checkout|checkout_failure", topic=INCIDENTS_TOPIC),
    ]
    hooks, transport, _, _ = make({URL: [OK]})
    assert [run(hooks.handle(m)) for m in records] == ["skipped"] * 3 and transport.calls == []

    hooks, transport, _, _ = make({URL: [OK]}, incidents=True)
    run(hooks.handle(records[2]))
    run(hooks.handle(Msg(closed, key=b"/checkout|checkout_failure", topic=INCIDENTS_TOPIC)))
    bodies = [orjson.loads(c[1]) for c in transport.calls]
    assert [(b["type"], b["id"]) for b in bodies] == [("incident_open", "inc-1:open"),
                                                     ("incident_close", "inc-1:close")]
    assert bodies[0]["data"] == orjson.loads(opened)
    assert [c[2]["X-FW-Event"] for c in transport.calls] == ["incident_open", "incident_close"]
    assert count(hooks, "delivered", "incident") == 2


def test_a_handoff_is_posted_as_is_inside_its_envelope() -> None:
    hooks, transport, _, _ = make({URL: [OK]})
    value = handoff("i7")
    run(hooks.handle(Msg(value)))
    [(_, body, headers, timeout)] = transport.calls
    assert body == b'{"type":"handoff","id":"i7","data":' + value + b"}"
    assert orjson.loads(body)["data"] == orjson.loads(value)
    assert headers["Content-Type"] == "application/json" and timeout == 10.0


def test_broken_records_are_counted_and_skipped() -> None:
    hooks, transport, _, dead = make({URL: [OK]})
    for value in (b"{nope", b"[1, 2]", orjson.dumps({"kind": "handoff", "delivered": True}), None):
        assert run(hooks.handle(Msg(value))) == "invalid"
    assert transport.calls == [] and dead == [] and count(hooks, "invalid") == 4


# -- signatures (acceptance: they verify with the README's recipe) ---------------------------
def test_signatures_verify_with_the_documented_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    verify = documented_verify()
    clock = [NOW]
    hooks, transport, _, _ = make({URL: [ERROR, OK]}, clock=lambda: clock[0])
    run(hooks.handle(Msg(handoff())))
    first, second = transport.calls
    monkeypatch.setattr(time, "time", lambda: NOW + 60)
    for _, body, headers, _ in (first, second):
        signature = headers["X-FW-Signature"]
        assert signature.startswith(f"t={int(NOW)},v1=")
        assert verify(SECRET.encode(), body, signature)
        assert not verify(b"another-secret-0123456789", body, signature)
        assert not verify(SECRET.encode(), body.replace(b"i1", b"i2"), signature)
        assert not verify(SECRET.encode(), body, signature.replace(str(int(NOW)), str(int(NOW) + 1)))
        assert not verify(SECRET.encode(), body, "garbage")
    monkeypatch.setattr(time, "time", lambda: NOW + 301)  # past the recipe's tolerance
    assert not verify(SECRET.encode(), first[1], first[2]["X-FW-Signature"])


def test_each_try_is_signed_at_its_own_time() -> None:
    clock = iter([NOW, NOW + 5, NOW + 5, NOW + 5])
    hooks, transport, _, _ = make({URL: [ERROR, OK]}, clock=lambda: next(clock))
    run(hooks.handle(Msg(handoff(), timestamp=0)))
    assert [c[2]["X-FW-Signature"][:12] for c in transport.calls] == [
        f"t={int(NOW)}", f"t={int(NOW) + 5}"]


# -- many records: bounded, ordered per key, committed in order -------------------------------
def test_a_slow_key_holds_its_own_records_only_within_the_concurrency_bound() -> None:
    async def scenario() -> None:
        gates: dict[bytes, asyncio.Event] = {}
        started: list[tuple[bytes | None, int]] = []

        async def handle(message: Any) -> None:
            started.append((message.key, message.offset))
            gate = gates.get(message.key)
            if gate is not None:
                await gate.wait()

        d = Dispatcher(handle, concurrency=3)
        gates[b"slow"] = asyncio.Event()
        d.submit(Msg(None, key=b"slow", offset=0))
        d.submit(Msg(None, key=b"slow", offset=1))  # same key: waits for offset 0
        d.submit(Msg(None, key=b"fast", offset=2))
        assert d.free() == 0  # three in flight: the caller stops fetching
        await asyncio.sleep(0.01)
        assert started == [(b"slow", 0), (b"fast", 2)]
        d.reap()
        assert d.free() == 1 and d.offsets.committable() == {}  # offset 0 still in flight
        d.submit(Msg(None, key=b"other", offset=3))
        await asyncio.sleep(0.01)
        assert (b"other", 3) in started and (b"slow", 1) not in started
        gates[b"slow"].set()
        await asyncio.sleep(0.01)
        assert started[-1] == (b"slow", 1)
        d.reap()
        assert d.free() == 3
        assert d.offsets.committable() == {(INTERVENTIONS_TOPIC, 0): 4}
        await d.close()

    run(scenario())


def test_a_failure_in_a_record_surfaces_and_its_offset_is_not_committed() -> None:
    async def scenario() -> None:
        async def handle(message: Any) -> None:
            if message.offset == 1:
                raise ConnectionError("dead-letter producer lost the broker")

        d = Dispatcher(handle, concurrency=4)
        for offset in range(3):
            d.submit(Msg(None, key=str(offset).encode(), offset=offset))
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError):
            d.reap()
        assert d.offsets.committable() == {(INTERVENTIONS_TOPIC, 0): 1}
        await d.close()

    run(scenario())


def test_revoked_partitions_are_settled_then_dropped() -> None:
    async def scenario() -> None:
        hold = asyncio.Event()

        async def handle(message: Any) -> None:
            if message.partition == 1:
                await hold.wait()

        d = Dispatcher(handle, concurrency=4)
        d.submit(Msg(None, key=b"a", partition=0, offset=5))
        d.submit(Msg(None, key=b"b", partition=1, offset=9))
        await d.settle([(INTERVENTIONS_TOPIC, 0), (INTERVENTIONS_TOPIC, 1)], timeout=0.05)
        assert d.offsets.committable() == {(INTERVENTIONS_TOPIC, 0): 6}
        d.drop([(INTERVENTIONS_TOPIC, 1)])
        await asyncio.sleep(0)
        d.reap()
        assert d.free() == 4 and d.offsets.in_flight() == 0

    run(scenario())


# -- settings -------------------------------------------------------------------------------
def test_settings_are_checked_before_any_broker() -> None:
    metrics = Metrics()
    with pytest.raises(ConfigError, match="webhook_secret"):
        WebhookSink.from_settings(Settings.load({"FW_WEBHOOK_URLS": URL}), metrics)
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        WebhookSink.from_settings(Settings.load(
            {"FW_WEBHOOK_URLS": "ftp://x/y", "FW_WEBHOOK_SECRET": SECRET}), metrics)
    with pytest.raises(ConfigError, match="webhook_max_tries = 0 is out of range"):
        Settings.load({"FW_WEBHOOK_MAX_TRIES": "0"})
    with pytest.raises(ConfigError, match="above webhook_backoff_max_s"):
        WebhookSink.from_settings(Settings.load(
            {"FW_WEBHOOK_URLS": URL, "FW_WEBHOOK_SECRET": SECRET, "FW_WEBHOOK_BACKOFF_S": "9",
             "FW_WEBHOOK_BACKOFF_MAX_S": "1"}), metrics)
    settings = Settings.load({"FW_WEBHOOK_URLS": f"{URL},{URL2}", "FW_WEBHOOK_SECRET": SECRET,
                              "FW_WEBHOOK_INCIDENTS": "true", "FW_APP_ID": "shop"})
    sink = WebhookSink.from_settings(settings, metrics)
    assert sink.group_id == "shop-webhooks" and sink.webhooks.urls == [URL, URL2]
    assert sink.topics == [INTERVENTIONS_TOPIC, INCIDENTS_TOPIC]
    assert sink.auto_offset_reset == "latest"
    assert SECRET not in repr(settings)


def test_no_urls_no_sink() -> None:
    tasks: list[Callable[..., Any]] = []

    class App:
        def task(self, fn: Callable[..., Any]) -> Callable[..., Any]:
            tasks.append(fn)
            return fn

    assert register(App(), Settings.load({}), Metrics()) is None and tasks == []
    settings = Settings.load({"FW_WEBHOOK_URLS": URL, "FW_WEBHOOK_SECRET": SECRET})
    assert register(App(), settings, Metrics()) is not None and len(tasks) == 1
