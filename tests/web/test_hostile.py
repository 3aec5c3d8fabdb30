"""The hostile browser (issue 10) against a real worker: what an attacker tried, refused.

Each test is one reproduction of the issue, over HTTP, against the web worker of
tests/web/conftest.py; the pure parts are in test_units.py and tests/detectors.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.events import REASONS
from detectors.scrub import scrub
from streamer.metrics import WEB_REASONS
from tests.conftest import WorkerProcess
from tests.web.conftest import SITE_KEY, records_of
from tests.web.test_endpoints import call, new_client, open_session, rejections

pytestmark = pytest.mark.broker

EVENTS = "frictionwatch.events"
INTERVENTIONS = "frictionwatch.interventions"


def now_ms() -> int:
    return int(time.time() * 1000)


def post(web: WorkerProcess, body: dict[str, Any] | bytes, client: dict[str, str],
         path: str = "/v1/collect") -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, answer, _ = call(web, path, raw, headers=client)
    return status, answer


def test_collect_takes_events_only_for_sessions_whose_token_comes_with_them(
    web_worker: WorkerProcess,
) -> None:
    """Item 4: one POST of 500 help_request events for invented ids made 500 handoffs;
    with a real session's id it pushed a handoff banner into that customer's page."""
    client = new_client()
    mine, token = open_session(web_worker, client)
    victim, _ = open_session(web_worker, new_client())
    tag = time.time_ns()
    invented = [{"session_id": f"invented-{tag}-{i}", "type": "help_request", "ts": now_ms()}
                for i in range(500)]
    to_victim = [{"session_id": victim, "type": "help_request", "ts": now_ms()}]
    version, _, expiry, sig = token.split(".")
    forged = f"{version}.{_b64(victim)}.{expiry}.{sig}"  # my signature, the victim's id
    before = rejections(web_worker, "collect", "wrong_session")
    attempts = [
        ({"site_key": SITE_KEY, "events": invented}, (401, "missing_token")),
        ({"site_key": SITE_KEY, "token": token, "events": invented}, (403, "wrong_session")),
        ({"site_key": SITE_KEY, "token": token, "events": to_victim}, (403, "wrong_session")),
        ({"site_key": SITE_KEY, "tokens": {victim: token}, "events": to_victim},
         (403, "wrong_session")),
        ({"site_key": SITE_KEY, "token": forged, "events": to_victim}, (403, "bad_token")),
        ({"site_key": SITE_KEY, "token": token, "events": [*to_victim, {**to_victim[0],
                                                                        "session_id": mine}]},
         (403, "wrong_session")),  # a beacon of mine carrying one foreign event: nothing
    ]
    for body, expected in attempts:
        status, answer = post(web_worker, body, client)
        assert (status, answer["error"]) == expected, answer
    assert rejections(web_worker, "collect", "wrong_session") - before == 4
    # With its own token, a session's events are accepted as ever.
    body = {"site_key": SITE_KEY, "token": token,
            "events": [{"session_id": mine, "type": "help_request", "ts": now_ms()}]}
    assert post(web_worker, body, client)[0] == 202
    assert [r["kind"] for r in records_of(web_worker, INTERVENTIONS, mine, bool)] == ["handoff"]
    # Nothing of the refused beacons reached Kafka, so no handoff for anyone else.
    for sid in (victim, invented[0]["session_id"], invented[-1]["session_id"]):
        assert records_of(web_worker, EVENTS, sid, bool, timeout=1) == []
        assert records_of(web_worker, INTERVENTIONS, sid, bool, timeout=1) == []


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_a_client_has_a_budget_of_events_not_only_requests(web_worker: WorkerProcess) -> None:
    """Item 4: limits counted requests (20/s x 1000 events per IP), not events."""
    client = new_client()
    sessions = [open_session(web_worker, client) for _ in range(6)]
    statuses = []
    for sid, token in sessions:  # 190 events each: every session is within its own budget
        events = [{"session_id": sid, "type": "scroll", "ts": now_ms() + i, "y": i}
                  for i in range(190)]
        status, answer = post(web_worker, {"site_key": SITE_KEY, "token": token,
                                           "events": events}, client)
        statuses.append(status if status == 202 else (status, answer["error"]))
    assert statuses == [202] * 5 + [(429, "rate_limited_events")]  # client burst: 1000


def test_a_client_starts_only_so_many_sessions_a_minute(web_worker: WorkerProcess) -> None:
    """Item 5: one beacon could create 1000 sessions; now a beacon is for the sessions
    whose tokens it carries, and a client gets 30 new sessions a minute."""
    client = new_client()
    issued = [post(web_worker, {"site_key": SITE_KEY}, client, "/v1/sessions")
              for _ in range(31)]
    assert [s for s, _ in issued[:30]] == [201] * 30
    status, answer, headers = call(web_worker, "/v1/sessions",
                                   orjson.dumps({"site_key": SITE_KEY}), headers=client)
    assert (status, answer["error"]) == (429, "rate_limited_new_sessions")
    assert int(headers["Retry-After"]) >= 1
    # Renewing a session it holds is not a new session.
    first = issued[0][1]
    renew = {"site_key": SITE_KEY, "session_id": first["session_id"], "token": first["token"]}
    assert post(web_worker, renew, client, "/v1/sessions")[0] == 201


def _open_stream(web: WorkerProcess, sid: str, token: str, client: dict[str, str]
                 ) -> tuple[int, Any, dict]:
    """Status, the open connection (close it), and the JSON answer of a refusal."""
    url = urlsplit(web.web)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", f"/v1/sessions/{sid}/interventions?token={token}", headers=client)
    resp = conn.getresponse()
    if resp.status == 200:
        assert resp.readline().startswith(b"retry:")  # the stream is subscribed
        return resp.status, conn, {}
    return resp.status, conn, orjson.loads(resp.read())


def test_a_client_holds_only_so_many_streams(web_worker: WorkerProcess) -> None:
    """Item 8: 1000 streams from 10 addresses filled the worker, then 503 for everyone."""
    client = new_client()
    sessions = [open_session(web_worker, client) for _ in range(6)]
    conns = []
    try:
        for i in range(20):  # 4 streams per session is that session's own cap
            status, conn, _ = _open_stream(web_worker, *sessions[i // 4], client)
            conns.append(conn)
            assert status == 200
        status, conn, answer = _open_stream(web_worker, *sessions[5], client)
        conns.append(conn)
        assert (status, answer["error"]) == (429, "too_many_client_streams")
        other = new_client()
        status, conn, _ = _open_stream(web_worker, *open_session(web_worker, other), other)
        conns.append(conn)
        assert status == 200  # another client is not held back
        assert rejections(web_worker, "stream", "too_many_client_streams") == 1
    finally:
        for conn in conns:
            conn.close()


def test_no_token_makes_a_500(web_worker: WorkerProcess) -> None:
    """Item 9: an expiry ending in '²' or of 5000 digits gave HTTP 500 with a traceback."""
    client = new_client()
    sid, token = open_session(web_worker, client)
    version, claim, expiry, sig = token.split(".")
    odd = [f"{version}.{claim}.{expiry}\u00b2.{sig}", f"{version}.{claim}.{'9' * 5000}.{sig}",
           f"{version}.{claim}.{expiry[:-1]}\u0663.{sig}", f"{version}.{claim}.0{expiry}.{sig}",
           f"{version}.{claim}.{expiry}.{sig[:9]}!{sig[9:]}", "v1." * 300]
    for bad in odd:
        status, answer, _ = call(web_worker, f"/v1/sessions/{sid}/interventions?token="
                                 + urllib.request.quote(bad), method="GET", headers=client)
        assert (status, answer["error"]) == (403, "bad_token"), bad[:40]
        for body in ({"site_key": SITE_KEY, "session_id": sid, "token": bad},
                     {"site_key": SITE_KEY, "session_id": sid, "token": [bad]},
                     {"site_key": SITE_KEY, "session_id": {"id": sid}, "token": token}):
            status, answer = post(web_worker, body, client, "/v1/sessions")
            assert (status, answer["error"]) in (
                (403, "bad_token"), (403, "wrong_session"), (413, "too_large"))
        events = [{"session_id": sid, "type": "x", "ts": 1}]
        status, answer = post(web_worker, {"site_key": SITE_KEY, "token": bad,
                                           "events": events}, client)
        assert (status, answer["error"]) == (403, "bad_token")


def test_nesting_never_makes_a_500(web_worker: WorkerProcess) -> None:
    """Item 10: an unknown field nested 500 deep gave HTTP 500 on collect."""
    client = new_client()
    sid, token = open_session(web_worker, client)
    deep = b"[" * 500 + b"1" + b"]" * 500
    event = b'{"session_id": "' + sid.encode() + b'", "type": "x", "ts": 1, "extra": ' + deep + b"}"
    body = (b'{"site_key": "' + SITE_KEY.encode() + b'", "token": "' + token.encode()
            + b'", "events": [' + event + b"]}")
    status, answer = post(web_worker, body, client)
    assert status == 202 and [e["reason"] for e in answer["errors"]] == ["too_large"]
    status, answer = post(web_worker, b"[" * 2000 + b"]" * 2000, client)
    assert (status, answer["error"]) == (400, "not_json")


def test_the_collector_stamps_its_own_receive_time(web_worker: WorkerProcess) -> None:
    client = new_client()
    sid, token = open_session(web_worker, client)
    before = now_ms()
    events = [{"session_id": sid, "type": "page_view", "ts": 1, "page": "/", "received_at": 0}]
    assert post(web_worker, {"site_key": SITE_KEY, "token": token, "events": events},
                client)[0] == 202
    (event,) = records_of(web_worker, EVENTS, sid, bool)
    assert before <= event["received_at"] <= now_ms() and event["ts"] == 1


# -- fuzz: whatever the body, a JSON answer with a reason, never a 500 --------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                    st.sampled_from(["\U0001f600" * 300, "jane@example.com", "4111111111111111",
                                     "v1.a.1.b", "x" * 5000]))
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
_TYPES = ["page_view", "click", "scroll", "js_error", "http_error", "form_error", "search",
          "checkout_attempt", "checkout_failed", "purchase", "help_request",
          "intervention_shown", "session_end", "other"]


@st.composite
def collect_bodies(draw: st.DrawFn, sessions: list[tuple[str, str]]) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(st.binary(max_size=200), st.sampled_from(
            [b"1e400", b"18446744073709551616", b'"\\ud800"', b"", b"{", b"[" * 1100])))
    if kind == 1:
        return orjson.dumps(draw(_json))
    if kind == 2:
        depth = draw(st.integers(1, 3000))
        return b"[" * depth + b"]" * depth
    sid, token = draw(st.sampled_from(sessions))
    events = []
    for _ in range(draw(st.integers(0, 5))):
        event: dict[str, Any] = {"session_id": draw(st.one_of(st.just(sid), _scalar)),
                                 "type": draw(st.sampled_from(_TYPES)),
                                 "ts": draw(st.one_of(st.integers(0, 2**63), _scalar))}
        for name in draw(st.lists(st.sampled_from(
                ["page", "x", "y", "target", "text", "message", "url", "status", "field",
                 "query", "results", "step", "reason", "code", "channel", "intervention_id",
                 "event_id", "received_at", "extra"]), max_size=6)):
            event[name] = draw(_json)
        events.append(event)
    body: dict[str, Any] = {"events": events}
    if draw(st.integers(0, 9)):
        body["site_key"] = SITE_KEY
    token_kind = draw(st.integers(0, 5))
    if token_kind < 3:
        body["token"] = token
    elif token_kind == 3:
        body["tokens"] = draw(st.one_of(_json, st.just({sid: token})))
    elif token_kind == 4:
        body["token"] = draw(_scalar)
    return orjson.dumps(body)


@pytest.fixture(scope="module")
def fuzz_sessions(web_worker: WorkerProcess) -> list[tuple[str, str]]:
    client = new_client()
    return [open_session(web_worker, client) for _ in range(4)]


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_collect_bodies_never_make_a_500(web_worker: WorkerProcess,
                                                fuzz_sessions: list[tuple[str, str]],
                                                data: st.DataObject) -> None:
    body = data.draw(collect_bodies(fuzz_sessions))
    request = urllib.request.Request(web_worker.web + "/v1/collect", data=body, method="POST",
                                     headers={"Content-Type": "text/plain", **new_client()})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    answer = orjson.loads(raw)
    assert status in (202, 400, 401, 403, 413, 429), (status, answer)
    if status == 202:
        assert all(e["reason"] in REASONS for e in answer["errors"])
    else:
        assert answer["error"] in WEB_REASONS and answer["detail"]


def test_fuzzing_left_no_internal_errors(web_worker: WorkerProcess) -> None:
    for endpoint in ("collect", "sessions", "stream"):
        assert rejections(web_worker, endpoint, "internal_error") == 0
    assert web_worker.process.poll() is None


# -- the SDK scrubs as the server does -------------------------------------------------

SAMPLES = [
    "card 4111 1111 1111 1111 declined for jane.doe@example.com",
    "GET /cb?code=abc123&state=x#access_token=eyJhbGciOi.eyJzdWIi.c2lnbmF0 failed",
    "call +49 151 12345678, (415) 555-0134, 030 1234567 or (030) 12 34 56",
    "no account for Jörg.Müller@bücher.de or x%40y.org",
    "key sk_live_4eC39HqLyjWDarjtT1zdp7dc rejected",
    "/p/1234567890 on 2024-01-15 at 10:30, v1.2.3, 192.168.0.1, exp 01/2027",
    "paid 2 x 12 4111 1111 1111 1111 99 times",
    "TypeError: Cannot read properties of undefined (reading 'price')",
    "?0=[token] and ?a=b&c=d",
    "5555-5555-5555-4444 4000 0000 0000 0002 378282246310005",
    'input#photo-upload[type=file] > a[target=_blank][href="/r?t=abc"]',
]


def test_the_sdk_scrubs_error_messages_like_the_server(browser: Any) -> None:
    from streamer.web.static import _read

    page = browser.new_page()
    try:
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=_read()["frictionwatch.js"].decode())
        browser_side = page.evaluate("(samples) => samples.map(frictionwatch.scrub)", SAMPLES)
    finally:
        page.close()
    assert browser_side == [scrub(s) for s in SAMPLES]
    assert "4111" not in str(browser_side) and "jane" not in str(browser_side)


# -- poisoned input: planted personal data in every free-text field, searched for everywhere


def test_planted_personal_data_reaches_no_output_frame_metric_or_log(
    web_worker: WorkerProcess,
) -> None:
    """Item 6 end to end: a session whose events carry an e-mail address, a card number,
    a phone number and URL tokens in every free-text field, through collect; then its
    signals and interventions on Kafka, its SSE frames, /metrics and the worker's log
    are searched for them."""
    from tests.detectors.test_scrub import NEEDLES, poisoned_session

    client = new_client()
    sid, token = open_session(web_worker, client)
    _, conn, _ = _open_stream(web_worker, sid, token, client)
    try:
        events = poisoned_session(sid)
        for start in range(0, len(events), 20):
            status, answer = post(web_worker, {"site_key": SITE_KEY, "token": token,
                                               "events": events[start:start + 20]}, client)
            assert (status, answer["rejected"]) == (202, 0), answer
        handoffs = records_of(web_worker, INTERVENTIONS, sid,
                              lambda rs: any(r["kind"] == "handoff" for r in rs))
        signals = records_of(web_worker, "frictionwatch.signals", sid,
                             lambda rs: {"help_request", "checkout_failure"}
                             <= {r["detector"] for r in rs})
        conn.sock.settimeout(10)
        frames = b""
        while b"handoff" not in frames:
            frames += conn.sock.recv(65536)
    finally:
        conn.close()
    stored = records_of(web_worker, EVENTS, sid, lambda rs: len(rs) >= len(events))
    assert len(stored) == len(events) and handoffs and signals
    places = {"events topic": orjson.dumps(stored).decode(),
              "signals topic": orjson.dumps(signals).decode(),
              "interventions topic": orjson.dumps(handoffs).decode(),
              "SSE frames": frames.decode(errors="replace"),
              "/metrics": web_worker.metrics_text(),
              "worker log": web_worker.log.read_text(errors="replace")}
    found = {where: [n for n in NEEDLES if n in text] for where, text in places.items()}
    assert found == {where: [] for where in places}
