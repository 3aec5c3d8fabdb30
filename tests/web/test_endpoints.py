"""The browser endpoints over plain HTTP: what is refused, how, and that it is counted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import orjson
import pytest

from tests.conftest import WorkerProcess, wait_for
from tests.web.conftest import ALLOWED_ORIGIN, SITE_KEY, records_of

pytestmark = pytest.mark.broker

BASE_TS = 1_767_225_600_000


def call(web: WorkerProcess, path: str, body: bytes | None = None, method: str = "POST",
         headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(web.web + path, data=body, method=method,
                                     headers={"Content-Type": "text/plain", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
            return resp.status, orjson.loads(raw) if raw else {}, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), dict(exc.headers)


def beacon(sid: str, n: int = 1, site_key: str | None = SITE_KEY) -> bytes:
    events = [{"session_id": sid, "type": "scroll", "ts": BASE_TS + i, "y": i} for i in range(n)]
    return orjson.dumps({"site_key": site_key, "events": events} if site_key else events)


def rejections(web: WorkerProcess, endpoint: str, reason: str) -> float:
    return web.metric("frictionwatch_web_rejections_total", endpoint=endpoint, reason=reason)


def test_cors_allow_list_and_preflight(web_worker: WorkerProcess) -> None:
    status, _, headers = call(web_worker, "/v1/collect", method="OPTIONS",
                              headers={"Origin": ALLOWED_ORIGIN})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "X-FW-Site-Key" in headers["Access-Control-Allow-Headers"]

    before = rejections(web_worker, "collect", "origin_not_allowed")
    for method, body in (("OPTIONS", None), ("POST", beacon("cors-1"))):
        status, answer, headers = call(web_worker, "/v1/collect", body, method=method,
                                       headers={"Origin": "http://evil.example"})
        assert (status, answer["error"]) == (403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in headers  # the browser hides the answer
    assert rejections(web_worker, "collect", "origin_not_allowed") - before == 2

    status, answer, headers = call(web_worker, "/v1/collect", beacon("cors-2"),
                                   headers={"Origin": ALLOWED_ORIGIN})
    assert status == 202 and answer["accepted"] == 1
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]


def test_site_key_in_field_header_or_query(web_worker: WorkerProcess) -> None:
    assert call(web_worker, "/v1/collect", beacon("key-1"))[0] == 202
    assert call(web_worker, "/v1/collect", beacon("key-2", site_key=None),
                headers={"X-FW-Site-Key": "pk_other"})[0] == 202
    assert call(web_worker, f"/v1/collect?site_key={SITE_KEY}", beacon("key-3", site_key=None))[0] == 202
    before = rejections(web_worker, "collect", "missing_site_key")
    status, answer, _ = call(web_worker, "/v1/collect", beacon("key-4", site_key=None))
    assert (status, answer["error"]) == (403, "missing_site_key")
    status, answer, _ = call(web_worker, "/v1/collect", beacon("key-5", site_key="pk_guess"))
    assert (status, answer["error"]) == (403, "bad_site_key")
    assert rejections(web_worker, "collect", "missing_site_key") - before == 1
    status, answer, _ = call(web_worker, "/v1/sessions", b"{}")
    assert (status, answer["error"]) == (403, "missing_site_key")

    # Accepted means on Kafka: all three accepted beacons are there, the refused are not.
    for sid, expected in (("key-1", 1), ("key-2", 1), ("key-3", 1)):
        assert len(records_of(web_worker, "frictionwatch.events", sid,
                              lambda rs, n=expected: len(rs) >= n)) == expected
    assert records_of(web_worker, "frictionwatch.events", "key-4", bool, timeout=2) == []


def test_per_session_limit_answers_429_with_retry_after(web_worker: WorkerProcess) -> None:
    sid = f"busy-{time.time_ns()}"
    assert call(web_worker, "/v1/collect", beacon(sid, 150))[0] == 202
    before = rejections(web_worker, "collect", "rate_limited_session")
    status, answer, headers = call(web_worker, "/v1/collect", beacon(sid, 150))
    assert (status, answer["error"]) == (429, "rate_limited_session")
    assert int(headers["Retry-After"]) >= 1 and "retry after" in answer["detail"]
    assert rejections(web_worker, "collect", "rate_limited_session") - before == 1
    status, answer, _ = call(web_worker, "/v1/collect", beacon(f"{sid}-x", 250))
    assert (status, answer["error"]) == (413, "too_large")  # could never fit its bucket
    # Other sessions are not held back by a busy one.
    assert call(web_worker, "/v1/collect", beacon(f"{sid}-other", 10))[0] == 202


def test_per_client_limit_answers_429_with_retry_after(web_worker: WorkerProcess) -> None:
    # 127.0.0.1 is a trusted proxy for this worker: X-Forwarded-For names the client.
    client = {"X-Forwarded-For": "203.0.113.9"}
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 2000:  # burst 100, then 20/s
        statuses.append(call(web_worker, "/v1/collect", beacon(f"ip-{len(statuses)}"),
                             headers=client)[0])
    assert statuses[-1] == 429 and len(statuses) > 100 and set(statuses[:-1]) == {202}
    # The same bucket holds for every browser endpoint (it refills at 20/s meanwhile).
    for _ in range(100):
        status, answer, headers = call(web_worker, "/v1/sessions", b"{}", headers=client)
        if status == 429:
            break
    assert (status, answer["error"]) == (429, "rate_limited_client")
    assert int(headers["Retry-After"]) >= 1
    # Another client behind the same proxy is unaffected.
    assert call(web_worker, "/v1/collect", beacon("ip-other"),
                headers={"X-Forwarded-For": "203.0.113.10"})[0] == 202


def test_sessions_issue_and_renew_tokens(web_worker: WorkerProcess) -> None:
    status, first, _ = call(web_worker, "/v1/sessions", orjson.dumps({"site_key": SITE_KEY}))
    assert status == 201 and first["session_id"].startswith("s_")
    assert first["stream"] == f"/v1/sessions/{first['session_id']}/interventions"
    assert first["expires_at"] > time.time() + 3000
    renew = {"site_key": SITE_KEY, "session_id": first["session_id"], "token": first["token"]}
    status, again, _ = call(web_worker, "/v1/sessions", orjson.dumps(renew))
    assert status == 201 and again["session_id"] == first["session_id"]
    # A session id without its token gets nothing (no choosing someone else's session).
    status, answer, _ = call(web_worker, "/v1/sessions", orjson.dumps({**renew, "token": "v1.x"}))
    assert (status, answer["error"]) == (403, "bad_token")


def _read_frames(resp, count: int) -> list[dict]:
    frames, current = [], {}
    while len(frames) < count:
        line = resp.readline().decode().rstrip("\n")
        if not line:
            if current:
                frames.append(current)
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return frames


def test_stream_replays_after_last_event_id(web_worker: WorkerProcess) -> None:
    _, session, _ = call(web_worker, "/v1/sessions", orjson.dumps({"site_key": SITE_KEY}))
    sid, token = session["session_id"], session["token"]
    url = f"{web_worker.web}/v1/sessions/{sid}/interventions?token={token}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert _read_frames(resp, 1)[0]["event"] == "ready"
        body = [{"session_id": sid, "type": "help_request", "ts": int(time.time() * 1000)}]
        assert call(web_worker, "/v1/collect", orjson.dumps({"site_key": SITE_KEY, "events": body}))[0] == 202
        (frame,) = _read_frames(resp, 1)
    assert frame["event"] == "intervention"
    data = json.loads(frame["data"])
    assert data["kind"] == "handoff" and data["context_id"] == frame["id"] == data["intervention_id"]
    assert "risk" not in data and "context" not in data  # the agent's view stays with agents

    # A reconnect gets the recent intervention again, unless it says it has seen it.
    with urllib.request.urlopen(url, timeout=60) as resp:
        ready, replayed = _read_frames(resp, 2)
    assert replayed["id"] == frame["id"]
    request = urllib.request.Request(url, headers={"Last-Event-ID": frame["id"]})
    with urllib.request.urlopen(request, timeout=60) as resp:
        _read_frames(resp, 1)
        resp.fp.raw._sock.settimeout(1.5)  # nothing else may come
        with pytest.raises(TimeoutError):
            resp.readline()
    wait_for(lambda: web_worker.metric("frictionwatch_sse_clients") == 0, 30, "streams to close")
