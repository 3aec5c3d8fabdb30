"""The browser endpoints over plain HTTP: what is refused, how, and that it is counted."""

from __future__ import annotations

import itertools
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


#: Each test calls as clients of its own (127.0.0.1 is a trusted proxy for the worker,
#: so X-Forwarded-For names the client): budgets per client do not leak between tests.
_CLIENTS = itertools.count(1)


def new_client() -> dict[str, str]:
    n = next(_CLIENTS)
    return {"X-Forwarded-For": f"198.51.{100 + n // 250}.{n % 250 + 1}"}


def open_session(web: WorkerProcess, client: dict[str, str]) -> tuple[str, str]:
    """A session the server issued, and its token."""
    status, answer, _ = call(web, "/v1/sessions", orjson.dumps({"site_key": SITE_KEY}),
                             headers=client)
    assert status == 201, answer
    return answer["session_id"], answer["token"]


def beacon(sid: str, n: int = 1, site_key: str | None = SITE_KEY, token: str | None = None,
           type_: str = "scroll") -> bytes:
    events = [{"session_id": sid, "type": type_, "ts": BASE_TS + i, "y": i} for i in range(n)]
    body: dict = {"events": events}
    if site_key:
        body["site_key"] = site_key
    if token:
        body["token"] = token
    return orjson.dumps(body)


def rejections(web: WorkerProcess, endpoint: str, reason: str) -> float:
    return web.metric("frictionwatch_web_rejections_total", endpoint=endpoint, reason=reason)


def test_cors_allow_list_and_preflight(web_worker: WorkerProcess) -> None:
    client = new_client()
    status, _, headers = call(web_worker, "/v1/collect", method="OPTIONS",
                              headers={"Origin": ALLOWED_ORIGIN})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "X-FW-Site-Key" in headers["Access-Control-Allow-Headers"]
    assert "X-FW-Token" in headers["Access-Control-Allow-Headers"]

    before = rejections(web_worker, "collect", "origin_not_allowed")
    for method, body in (("OPTIONS", None), ("POST", beacon("cors-1"))):
        status, answer, headers = call(web_worker, "/v1/collect", body, method=method,
                                       headers={"Origin": "http://evil.example", **client})
        assert (status, answer["error"]) == (403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in headers  # the browser hides the answer
    assert rejections(web_worker, "collect", "origin_not_allowed") - before == 2

    sid, token = open_session(web_worker, client)
    status, answer, headers = call(web_worker, "/v1/collect", beacon(sid, token=token),
                                   headers={"Origin": ALLOWED_ORIGIN, **client})
    assert status == 202 and answer["accepted"] == 1
    assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]


def test_site_key_in_field_header_or_query(web_worker: WorkerProcess) -> None:
    client = new_client()
    (s1, t1), (s2, t2), (s3, t3), (s4, t4) = (open_session(web_worker, client) for _ in range(4))
    assert call(web_worker, "/v1/collect", beacon(s1, token=t1), headers=client)[0] == 202
    assert call(web_worker, "/v1/collect", beacon(s2, site_key=None, token=t2),
                headers={"X-FW-Site-Key": "pk_other", **client})[0] == 202
    assert call(web_worker, f"/v1/collect?site_key={SITE_KEY}", beacon(s3, site_key=None, token=t3),
                headers=client)[0] == 202
    before = rejections(web_worker, "collect", "missing_site_key")
    status, answer, _ = call(web_worker, "/v1/collect", beacon(s4, site_key=None, token=t4),
                             headers=client)
    assert (status, answer["error"]) == (403, "missing_site_key")
    status, answer, _ = call(web_worker, "/v1/collect", beacon(s4, site_key="pk_guess", token=t4),
                             headers=client)
    assert (status, answer["error"]) == (403, "bad_site_key")
    assert rejections(web_worker, "collect", "missing_site_key") - before == 1
    status, answer, _ = call(web_worker, "/v1/sessions", b"{}", headers=client)
    assert (status, answer["error"]) == (403, "missing_site_key")

    # Accepted means on Kafka: all three accepted beacons are there, the refused are not.
    for sid, expected in ((s1, 1), (s2, 1), (s3, 1)):
        assert len(records_of(web_worker, "frictionwatch.events", sid,
                              lambda rs, n=expected: len(rs) >= n)) == expected
    assert records_of(web_worker, "frictionwatch.events", s4, bool, timeout=2) == []


def test_per_session_limit_answers_429_with_retry_after(web_worker: WorkerProcess) -> None:
    client = new_client()
    (sid, token), (big, big_token), (other, other_token) = (
        open_session(web_worker, client) for _ in range(3))
    assert call(web_worker, "/v1/collect", beacon(sid, 150, token=token), headers=client)[0] == 202
    before = rejections(web_worker, "collect", "rate_limited_session")
    status, answer, headers = call(web_worker, "/v1/collect", beacon(sid, 150, token=token),
                                   headers=client)
    assert (status, answer["error"]) == (429, "rate_limited_session")
    assert int(headers["Retry-After"]) >= 1 and "retry after" in answer["detail"]
    assert rejections(web_worker, "collect", "rate_limited_session") - before == 1
    status, answer, _ = call(web_worker, "/v1/collect", beacon(big, 250, token=big_token),
                             headers=client)
    assert (status, answer["error"]) == (413, "too_large")  # could never fit its bucket
    # Other sessions are not held back by a busy one.
    assert call(web_worker, "/v1/collect", beacon(other, 10, token=other_token),
                headers=client)[0] == 202


def test_per_client_limit_answers_429_with_retry_after(web_worker: WorkerProcess) -> None:
    # 127.0.0.1 is a trusted proxy for this worker: X-Forwarded-For names the client.
    client = new_client()
    sid, token = open_session(web_worker, client)
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 2000:  # burst 100, then 20/s
        statuses.append(call(web_worker, "/v1/collect", beacon(sid, token=token),
                             headers=client)[0])
    assert statuses[-1] == 429 and len(statuses) > 99 and set(statuses[:-1]) == {202}
    # The same bucket holds for every browser endpoint (it refills at 20/s meanwhile).
    for _ in range(100):
        status, answer, headers = call(web_worker, "/v1/sessions", b"{}", headers=client)
        if status == 429:
            break
    assert (status, answer["error"]) == (429, "rate_limited_client")
    assert int(headers["Retry-After"]) >= 1
    # Another client behind the same proxy is unaffected.
    other = new_client()
    other_sid, other_token = open_session(web_worker, other)
    assert call(web_worker, "/v1/collect", beacon(other_sid, token=other_token),
                headers=other)[0] == 202


def test_sessions_issue_and_renew_tokens(web_worker: WorkerProcess) -> None:
    client = new_client()
    status, first, _ = call(web_worker, "/v1/sessions", orjson.dumps({"site_key": SITE_KEY}),
                            headers=client)
    assert status == 201 and first["session_id"].startswith("s_")
    assert first["stream"] == f"/v1/sessions/{first['session_id']}/interventions"
    assert first["expires_at"] > time.time() + 3000
    renew = {"site_key": SITE_KEY, "session_id": first["session_id"], "token": first["token"]}
    status, again, _ = call(web_worker, "/v1/sessions", orjson.dumps(renew), headers=client)
    assert status == 201 and again["session_id"] == first["session_id"]
    # A session id without its token gets nothing (no choosing someone else's session).
    status, answer, _ = call(web_worker, "/v1/sessions", orjson.dumps({**renew, "token": "v1.x"}),
                             headers=client)
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
    client = new_client()
    sid, token = open_session(web_worker, client)
    url = f"{web_worker.web}/v1/sessions/{sid}/interventions?token={token}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert _read_frames(resp, 1)[0]["event"] == "ready"
        body = [{"session_id": sid, "type": "help_request", "ts": int(time.time() * 1000)}]
        assert call(web_worker, "/v1/collect", orjson.dumps(
            {"site_key": SITE_KEY, "token": token, "events": body}), headers=client)[0] == 202
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
