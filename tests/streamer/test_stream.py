"""End to end on the real embedded broker: a worker process, plain Kafka clients."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request

import orjson
import pytest

from detectors.session import Engine
from streamer.tools import simulate
from streamer.tools.replay import replay_lines
from tests.conftest import RULES_ONLY, WorkerProcess, consume, need_tool, produce, wait_for

pytestmark = pytest.mark.broker

BASE_TS = 1_767_225_600_000


def _values(records: list, session_ids: set[str]) -> list[dict]:
    return [orjson.loads(r.value) for r in records if r.key and r.key.decode() in session_ids]


def test_three_failed_checkouts_nudge_then_handoff(worker: WorkerProcess) -> None:
    sid = "it-checkout-1"
    events = [
        {"session_id": sid, "type": "page_view", "ts": BASE_TS, "page": "/checkout?email=a@b.c"},
    ] + [
        {"session_id": sid, "type": "checkout_failed", "ts": BASE_TS + 1000 * i,
         "reason": "card_declined", "code": "402", "event_id": f"e{i}"}
        for i in (1, 2, 3)
    ]
    bootstrap = worker.settings.bootstrap_servers
    asyncio.run(produce(bootstrap, [(sid.encode(), orjson.dumps(e)) for e in events]))

    records = asyncio.run(consume(
        bootstrap, "frictionwatch.interventions",
        lambda rs: len(_values(rs, {sid})) >= 2, timeout=60,
    ))
    out = _values(records, {sid})
    assert [r["kind"] for r in out] == ["nudge", "handoff"]
    nudge, handoff = out
    assert nudge["ts"] == BASE_TS + 2000 and handoff["ts"] == BASE_TS + 3000
    assert nudge["reasons"][0]["detector"] == "checkout_failure"
    assert handoff["reasons"][0]["evidence"]["failures"] == 3
    context = handoff["context"]
    assert context["checkout"]["failures"] == 3 and context["checkout"]["codes"] == ["402"]
    assert context["pages"] == ["/checkout"]  # the query string (an e-mail) is gone
    assert "user_id" not in orjson.dumps(context).decode()

    # The same input, processed again offline, yields the same intervention ids.
    lines = (orjson.dumps(e) for e in events)
    again = [r for r in replay_lines(lines, Engine.from_config(RULES_ONLY), max_record_bytes=1 << 18)
             if r["kind"] != "signal"]
    assert [r["intervention_id"] for r in again] == [r["intervention_id"] for r in out]
    assert again == out


MALFORMED_KINDS = 10


def _malformed(i: int) -> tuple[bytes, bytes, str]:
    """One of ten kinds of bad input, each with the reason it must be refused for."""
    sid = f"bad-{i}"
    kind = i % MALFORMED_KINDS
    cases: list[tuple[bytes, str]] = [
        (b"not json at all", "not_json"),
        (b"[1, 2", "not_json"),
        (b"42", "not_object"),
        (b'"a string"', "not_object"),
        (b"[]", "empty_batch"),
        (orjson.dumps({"session_id": sid, "ts": 1}), "missing_field"),
        (orjson.dumps({"session_id": sid, "type": "click", "ts": "yesterday"}), "wrong_type"),
        (orjson.dumps({"session_id": 7, "type": "click", "ts": 1}), "wrong_type"),
        (orjson.dumps({"session_id": sid, "type": "page_view", "ts": 1, "page": "x" * 300_000}),
         "too_large"),
        (orjson.dumps({"session_id": "someone-else", "type": "session_end", "ts": 1}),
         "key_mismatch"),
    ]
    value, reason = cases[kind]
    return sid.encode(), value, reason


def test_malformed_messages_are_dead_lettered_and_counted(worker: WorkerProcess) -> None:
    before = worker.metric("frictionwatch_invalid_events_total")
    bad = [_malformed(i) for i in range(1000)]
    bootstrap = worker.settings.bootstrap_servers
    asyncio.run(produce(bootstrap, [(k, v) for k, v, _ in bad]))
    keys = {k for k, _, _ in bad}

    dead = asyncio.run(consume(
        bootstrap, "frictionwatch.deadletter",
        lambda rs: sum(1 for r in rs if r.key in keys) >= 1000, timeout=90,
    ))
    ours = [r for r in dead if r.key in keys]
    assert len(ours) == 1000
    expected = {k: (v, reason) for k, v, reason in bad}
    for record in ours:
        headers = {name: value.decode() for name, value in record.headers}
        value, reason = expected[record.key]
        assert headers["fw-reason"] == reason, headers
        assert record.value == value  # the original bytes, untouched
        assert headers["fw-topic"] == "frictionwatch.events"
        assert int(headers["fw-offset"]) >= 0 and int(headers["fw-partition"]) >= 0
        assert headers["fw-detail"]
    wait_for(lambda: worker.metric("frictionwatch_invalid_events_total") - before >= 1000, 30,
             "invalid-events metric")
    assert worker.metric("frictionwatch_invalid_events_total") - before == 1000
    assert worker.process.poll() is None  # still running

    # ...and still working: a good session afterwards is processed.
    sid = "after-the-storm"
    good = [{"session_id": sid, "type": "help_request", "ts": BASE_TS}]
    asyncio.run(produce(bootstrap, [(sid.encode(), orjson.dumps(good))]))
    out = asyncio.run(consume(bootstrap, "frictionwatch.interventions",
                              lambda rs: bool(_values(rs, {sid})), timeout=60))
    assert [r["kind"] for r in _values(out, {sid})] == ["handoff"]


def test_replay_equals_stream(worker: WorkerProcess) -> None:
    sessions = list(simulate.generate(seed=77, sessions=150, start_ts=BASE_TS))
    records = simulate.interleave(sessions)
    ids = {s.session_id for s in sessions}
    expected = list(replay_lines((v for _, v in records), Engine.from_config(RULES_ONLY),
                                 max_record_bytes=1 << 18))
    n_signals = sum(1 for r in expected if r["kind"] == "signal")
    n_interventions = len(expected) - n_signals
    assert n_signals > 50 and n_interventions > 20  # a meaningful comparison

    bootstrap = worker.settings.bootstrap_servers
    asyncio.run(produce(bootstrap, records))
    signals = _values(asyncio.run(consume(
        bootstrap, "frictionwatch.signals",
        lambda rs: len(_values(rs, ids)) >= n_signals, timeout=90)), ids)
    interventions = _values(asyncio.run(consume(
        bootstrap, "frictionwatch.interventions",
        lambda rs: len(_values(rs, ids)) >= n_interventions, timeout=60)), ids)

    def by_session(rows: list[dict]) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {}
        for row in rows:
            grouped.setdefault(row["session_id"], []).append(row)
        return grouped

    # Order is defined within a session (one partition); across sessions it is not.
    assert by_session(signals) == by_session([r for r in expected if r["kind"] == "signal"])
    assert by_session(interventions) == by_session([r for r in expected if r["kind"] != "signal"])


def test_metrics_pass_promtool(worker: WorkerProcess) -> None:
    promtool = need_tool("promtool")
    text = worker.metrics_text()
    for name in ("frictionwatch_events_total", "frictionwatch_invalid_events_total",
                 "frictionwatch_signals_total", "frictionwatch_interventions_total",
                 "frictionwatch_decision_latency_seconds_bucket", "frictionwatch_active_sessions"):
        assert name in text
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def _post(worker: WorkerProcess, body: bytes, path: str = "/v1/collect") -> tuple[int, dict]:
    request = urllib.request.Request(f"{worker.web}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_collect_endpoint(worker: WorkerProcess) -> None:
    # Events are collected only for sessions the server issued, with their token.
    status, session = _post(worker, b"{}", "/v1/sessions")
    assert status == 201
    sid = session["session_id"]
    body = orjson.dumps({"token": session["token"], "events": [
        {"session_id": sid, "type": "page_view", "ts": BASE_TS, "page": "/"},
        {"session_id": sid, "type": "click", "ts": BASE_TS + 5},  # no x, y, target
        {"session_id": sid, "type": "help_request", "ts": BASE_TS + 10},
    ]})
    status, answer = _post(worker, body)
    assert status == 202
    assert answer["accepted"] == 2 and answer["rejected"] == 1
    assert answer["errors"][0]["index"] == 1 and answer["errors"][0]["reason"] == "missing_field"

    assert _post(worker, b"{nope")[0] == 400
    assert _post(worker, b"42")[1]["error"] == "not_object"
    status, answer = _post(worker, b"[" + b" " * 300_000 + b"]")
    assert status == 413 and answer["error"] == "too_large"

    out = asyncio.run(consume(worker.settings.bootstrap_servers, "frictionwatch.interventions",
                              lambda rs: bool(_values(rs, {sid})), timeout=60))
    assert [r["kind"] for r in _values(out, {sid})] == ["handoff"]

    with urllib.request.urlopen(f"{worker.web}/healthz", timeout=5) as resp:
        assert orjson.loads(resp.read())["status"] == "ok"
