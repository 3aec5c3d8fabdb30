"""The operator console (streamer/web/console): who may open it, what its frames hold,
that a slow console never holds up the worker, and that nothing personal reaches it.

Most of it runs in this process: the console's real views on a Faust app's aiohttp
application, served by aiohttp's test server. A peer other than 127.0.0.1 is made the
way a socket would make it, by the request's ``remote`` (a test middleware clones the
request with another one); one test connects over a real non-loopback address when the
machine has one. The feed and the personal-data tests use the web package's broker and
worker (tests/web/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import faust
import orjson
import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestServer

from streamer.embedded import EmbeddedBroker
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.web import console
from streamer.web.console import hub as hub_module
from streamer.web.console.hub import ConsoleHub
from streamer.web.delivery import Fanout, InterventionFeed
from tests.conftest import WorkerProcess, produce, wait_for
from tests.web.conftest import SITE_KEY, records_of

TOKEN = "operator-token-0123456789abcdef"
REMOTE = "203.0.113.9"
PEER_HEADER = "X-Test-Peer"
_APPS = itertools.count()


def handoff(iid: str, sid: str = "s1", **extra: Any) -> dict[str, Any]:
    return {"intervention_id": iid, "session_id": sid, "kind": "handoff", "ts": 1,
            "reasons": [{"detector": "checkout_failure", "strength": 1.0,
                         "evidence": {"failures": 3, "target": "#pay"}}],
            "message": "A person will help", "risk": 0.83, "delivered": True,
            "context": {"summary": "3 failed payment(s) (402)", "current_page": "/checkout",
                        "pages": ["/", "/cart", "/checkout"],
                        "checkout": {"attempts": 3, "failures": 3, "codes": ["402"]},
                        "errors": [], "signals": [], "events_seen": 17, "duration_s": 95.2},
            **extra}


@contextlib.asynccontextmanager
async def console_server(token: str = "", *, max_streams: int = 8, queue: int = 64,
                         write_timeout_s: float = 5.0, demo: bool = False
                         ) -> AsyncIterator[tuple[TestServer, ConsoleHub, Metrics]]:
    """The console's views on a Faust app (never started), served by aiohttp's test server.

    A request with ``X-Test-Peer`` is handled as if that address were the TCP peer."""
    metrics = Metrics()
    hub = ConsoleHub(metrics, max_streams=max_streams, queue=queue)
    app = faust.App(f"console-test-{next(_APPS)}", web_port=6066, autodiscover=False)
    settings = Settings(console_token=token, demo=demo)
    console.register(app, settings, metrics, hub, write_timeout_s=write_timeout_s)
    web_app = app.web.web_app  # type: ignore[attr-defined]

    @aioweb.middleware
    async def peer(request: aioweb.Request,
                   handler: Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
                   ) -> aioweb.StreamResponse:
        fake = request.headers.get(PEER_HEADER)
        return await handler(request.clone(remote=fake) if fake else request)

    web_app.middlewares.append(peer)
    server = TestServer(web_app)
    await server.start_server()
    try:
        yield server, hub, metrics
    finally:
        hub.close_all()
        await server.close()


async def get(server: TestServer, path: str, headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body; an SSE stream is read up to its first frame."""
    async with aiohttp.ClientSession() as http, http.get(server.make_url(path),
                                                          headers=headers or {}) as resp:
        if resp.content_type == "text/event-stream":
            body = await resp.content.readuntil(b"\n\n")  # the snapshot
        else:
            body = await resp.read()
        return resp.status, dict(resp.headers), body


def rejected(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value(
        "frictionwatch_web_rejections_total", {"endpoint": "console", "reason": reason}) or 0.0


# -- who may open it ------------------------------------------------------------------------
GUARDED = ("/", "/console/stream", "/console/api/snapshot")


def test_without_a_token_only_loopback_clients_are_let_in() -> None:
    async def scenario() -> None:
        async with console_server() as (server, _, metrics):
            for path in GUARDED:
                status, headers, body = await get(server, path)
                assert status == 200, (path, body)
                for peer in ("::1", "127.0.0.1"):
                    assert (await get(server, path, {PEER_HEADER: peer}))[0] == 200
                # A forwarded header names nobody: the peer is the socket's.
                status, headers, body = await get(
                    server, path, {PEER_HEADER: REMOTE, "X-Forwarded-For": "127.0.0.1",
                                   "Forwarded": "for=127.0.0.1"})
                assert status == 403 and headers["Content-Type"].startswith("application/json")
                answer = orjson.loads(body)
                assert answer["error"] == "local_only" and "FW_CONSOLE_TOKEN" in answer["detail"]
                # Nor does a token, when none is set.
                assert (await get(server, f"{path}?token={TOKEN}", {PEER_HEADER: REMOTE}))[0] == 403
            assert rejected(metrics, "local_only") == 2 * len(GUARDED)
            # The page's own script and style, and the docs, hold no data: open.
            for path in ("/console/static/console.js", "/console/static/console.css", "/docs"):
                assert (await get(server, path, {PEER_HEADER: REMOTE}))[0] == 200
    asyncio.run(scenario())


def test_with_a_token_everyone_needs_it() -> None:
    async def scenario() -> None:
        async with console_server(TOKEN) as (server, _, metrics):
            for path in GUARDED:
                for peer in ("127.0.0.1", REMOTE):
                    status, headers, body = await get(server, path, {PEER_HEADER: peer})
                    assert (status, orjson.loads(body)["error"]) == (401, "missing_token")
                    assert headers["WWW-Authenticate"].startswith("Bearer")
                    for wrong in ({"Authorization": "Bearer " + TOKEN[:-1] + "x"},
                                  {"Authorization": "Basic " + TOKEN}):
                        status, _, body = await get(server, path, {PEER_HEADER: peer, **wrong})
                        assert status in (401, 403), body
                    status, _, body = await get(server, f"{path}?token=nope", {PEER_HEADER: peer})
                    assert (status, orjson.loads(body)["error"]) == (403, "bad_token")
                    assert (await get(server, path, {PEER_HEADER: peer,
                                                     "Authorization": f"Bearer {TOKEN}"}))[0] == 200
                    status, headers, _ = await get(server, f"{path}?token={TOKEN}",
                                                   {PEER_HEADER: peer})
                    assert status == 200
            assert rejected(metrics, "missing_token") >= 2 * len(GUARDED)
            assert rejected(metrics, "bad_token") >= 2 * len(GUARDED)
    asyncio.run(scenario())


def _outward_address() -> str | None:
    """This machine's address on its way out (no packet is sent), unless loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_real_non_loopback_peer_is_refused() -> None:
    """The same refusal for a real TCP peer that is not loopback (no test middleware)."""
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")

    async def scenario() -> None:
        metrics = Metrics()
        app = faust.App(f"console-test-{next(_APPS)}", web_port=6066, autodiscover=False)
        console.register(app, Settings(), metrics, ConsoleHub(metrics))
        server = TestServer(app.web.web_app, host="0.0.0.0")  # type: ignore[attr-defined]
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://{address}:{server.port}/"
                async with http.get(url, headers={"X-Forwarded-For": "127.0.0.1"}) as resp:
                    assert (resp.status, (await resp.json())["error"]) == (403, "local_only")
                async with http.get(f"http://127.0.0.1:{server.port}/") as resp:
                    assert resp.status == 200
        finally:
            await server.close()
    asyncio.run(scenario())


def test_a_short_token_is_refused_at_start() -> None:
    from detectors.errors import ConfigError

    with pytest.raises(ConfigError, match="console_token"):
        Settings.load({"FW_CONSOLE_TOKEN": "short"})
    settings = Settings.load({"FW_CONSOLE_TOKEN": TOKEN, "FW_CONSOLE_STREAMS": "3"})
    assert settings.console_token == TOKEN and settings.console_streams == 3
    assert TOKEN not in repr(settings)


def test_streams_are_capped() -> None:
    async def scenario() -> None:
        async with console_server(max_streams=2) as (server, hub, metrics), \
                aiohttp.ClientSession() as http:
            opened = [await http.get(server.make_url("/console/stream")) for _ in range(2)]
            try:
                for resp in opened:
                    assert resp.status == 200
                    await resp.content.readuntil(b"\n\n")
                status, headers, body = await get(server, "/console/stream")
                assert (status, orjson.loads(body)["error"]) == (503, "too_many_streams")
                assert headers["Retry-After"] == "5"
                assert metrics.registry.get_sample_value("frictionwatch_console_streams") == 2
            finally:
                for resp in opened:
                    resp.close()
            wait = time.monotonic() + 20
            while hub.clients and time.monotonic() < wait:  # noticed at the next write
                hub.sample()
                await asyncio.sleep(0.05)
            assert (await get(server, "/console/stream"))[0] == 200
    asyncio.run(scenario())


# -- what goes out --------------------------------------------------------------------------
def _frames(raw: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in raw.split(b"\n\n")[:-1]:  # whole frames only: the rest may be cut
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"event" in fields:
            out.append((fields[b"event"].decode(), orjson.loads(fields[b"data"])))
    return out


def test_frames_have_their_shape_and_stay_bounded() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        hub = ConsoleHub(metrics, queue=10_000)
        client = hub.subscribe()
        hub.sample()
        metrics.count_event("click")
        metrics.signals.labels("rage_click").inc(3)
        hub.sample()
        # Hostile records, as anyone with Kafka access could write them.
        for i in range(300):
            hub.intervention({
                "intervention_id": f"i{i}", "session_id": "\x01" * 5000, "kind": "handoff",
                "ts": i, "message": "\x02" * 511 + "m " * 10_000, "risk": float("nan"),
                "reasons": [{"detector": "checkout_failure", "strength": 1,
                             "evidence": {"x": "y" * 5000}}] * 100,
                "delivered": True,
                "context": {"summary": "\x03" * 299 + "s " * 5000, "current_page": "\x04" * 5000,
                            "pages": ["/x" * 100] * 1000,
                            "errors": [{"message": "e " * 1000}] * 1000,
                            "nested": {"a": {"b": {"c": {"d": {"e": 1}}}}}}}, 1.0)
        hub.intervention({"intervention_id": "bad id\nevent: x", "kind": "nudge"}, None)
        hub.intervention({"intervention_id": "i3", "kind": "nudge"}, None)  # a repeat: once
        for i in range(200):
            key = f"/r{i}|checkout_failure"
            hub.incident(orjson.dumps({"kind": "incident_open", "ts": i, "key": key,
                                       "route": f"/r{i}", "failure": "checkout_failure",
                                       "rule": "rate", "count": 9.0, "baseline": 1.0,
                                       "incident_id": f"inc-{i}"}))
        assert hub.incident(orjson.dumps({"kind": "incident_close", "ts": 999, "route": "/r199",
                                          "failure": "checkout_failure", "rule": "rate",
                                          "count": 1, "incident_id": "inc-199",
                                          "opened_ts": 199})) == "close"
        assert hub.incident(b"not json") == "invalid"
        frames, resync = await client.next(0)
        assert not resync
        kinds = [event for event, _ in _frames(b"".join(frames))]
        assert kinds.count("tick") == 2 and kinds.count("intervention") == 300
        assert kinds.count("incident") == 201
        assert max(len(f) for f in frames) <= hub_module.MAX_FRAME_BYTES  # and none left out
        tick = next(data for event, data in _frames(b"".join(frames)) if event == "tick")
        assert set(tick) == {"t", "events", "signals", "nudges", "handoffs", "totals",
                             "open_incidents", "streams"}
        second = [data for event, data in _frames(b"".join(frames)) if event == "tick"][1]
        assert (second["events"], second["signals"]) == (1, {"rage_click": 3})
        snapshot = hub.snapshot()
        assert snapshot.startswith(b"event: snapshot\ndata: {") and snapshot.endswith(b"}\n\n")
        assert len(snapshot) <= hub_module.MAX_SNAPSHOT_BYTES
        ((event, data),) = _frames(snapshot)
        assert set(data) == {"series", "interventions", "incidents", "closed_incidents",
                             "totals", "open_incidents", "streams"}
        assert len(data["interventions"]) <= hub_module.MAX_INTERVENTIONS
        assert data["interventions"][0]["id"] == "i299"  # newest first
        assert len(data["incidents"]) == hub_module.MAX_INCIDENTS - 1  # 50 kept, one closed
        assert data["open_incidents"] == len(data["incidents"])
        assert data["closed_incidents"][0]["incident_id"] == "inc-199"
        assert data["series"]["signals"] == {"rage_click": [0, 3]}
        assert data["totals"]["handoffs"] == 300 and data["totals"]["events"] == 1
        item = data["interventions"][0]
        assert item["risk"] is None and len(item["reasons"]) == hub_module.MAX_REASONS
        assert "evidence" not in orjson.dumps(item).decode()
        detail = hub.handoff("i299")
        assert detail is not None
        assert len(orjson.dumps(detail["context"])) <= hub_module.MAX_CONTEXT_BYTES
        assert detail["context"]["summary"] and detail["context"]["nested"] == {
            "a": {"b": {"c": None}}}
        assert hub.handoff("i0") is None  # fell off the list, and its context with it
        assert len(hub._contexts) <= hub_module.MAX_INTERVENTIONS  # noqa: SLF001
    asyncio.run(scenario())


def test_a_handoff_opens_its_context_over_http() -> None:
    async def scenario() -> None:
        async with console_server(TOKEN) as (server, hub, _):
            hub.intervention(handoff("h1"), 1.0)
            hub.intervention(dict(handoff("n1"), kind="nudge"), 1.0)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            status, _, body = await get(server, "/console/api/handoffs/h1", auth)
            answer = orjson.loads(body)
            assert status == 200 and answer["context"]["pages"] == ["/", "/cart", "/checkout"]
            assert answer["summary"] == "3 failed payment(s) (402)"
            for missing in ("n1", "nope"):
                status, _, body = await get(server, f"/console/api/handoffs/{missing}", auth)
                assert (status, orjson.loads(body)["error"]) == (404, "not_found")
            assert (await get(server, "/console/api/handoffs/h1"))[0] == 401
    asyncio.run(scenario())


def test_the_page_links_the_demo_only_where_it_is_served() -> None:
    async def scenario() -> None:
        for demo in (True, False):
            async with console_server(demo=demo) as (server, _, _):
                status, headers, body = await get(server, "/")
                assert status == 200 and headers["Content-Type"].startswith("text/html")
                assert "script-src 'self'" in headers["Content-Security-Policy"]
                for link in ("/metrics", "/healthz", "/docs", "/console/static/console.js"):
                    assert f'"{link}"'.encode() in body
                assert (b'href="/demo"' in body) is demo
                assert b"http" not in body.replace(b"http://www.w3.org", b"")  # nothing remote
    asyncio.run(scenario())


# -- a slow console ---------------------------------------------------------------------------
def test_a_slow_client_loses_its_oldest_frames_and_gets_a_snapshot() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        hub = ConsoleHub(metrics, queue=4)
        slow, fast = hub.subscribe(), hub.subscribe()
        got = []
        for i in range(100):
            hub.intervention(handoff(f"i{i}"), None)
            frames, resync = await fast.next(0)
            got += frames
            assert not resync
        assert len(got) == 100 and len(slow.frames) == 4 and slow.dropped == 96
        assert metrics.registry.get_sample_value("frictionwatch_console_dropped_frames_total") == 96
        frames, resync = await slow.next(0)
        assert resync  # the writer sends a snapshot instead: the view is whole again
    asyncio.run(scenario())


def test_a_client_that_stops_reading_never_holds_up_the_others() -> None:
    """One console stops reading (a tiny receive window, never drained) while records
    keep coming: the hub goes on, a second console gets every frame up to the last, and
    the stuck one is dropped as slow when a write cannot finish."""
    async def scenario() -> None:
        async with console_server(queue=16, write_timeout_s=0.5) as (server, hub, metrics):
            stuck = socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(("127.0.0.1", server.port))
            stuck.sendall(b"GET /console/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                async with aiohttp.ClientSession() as http, \
                        http.get(server.make_url("/console/stream")) as reader:
                    while len(hub.clients) < 2:
                        await asyncio.sleep(0.01)
                    reading = hub.clients[-1]
                    await reader.content.readuntil(b"\n\n")  # its snapshot
                    rounds, received = 0, b""
                    while metrics.registry.get_sample_value(
                            "frictionwatch_console_disconnects_total", {"reason": "slow"}) == 0:
                        rounds += 1
                        assert rounds < 2000, "the stuck console was never dropped"
                        ids = [f"r{rounds}-{i}" for i in range(10)]
                        for iid in ids:
                            hub.intervention(handoff(iid, message="x " * 250), None)
                        hub.sample()
                        while f'"id":"{ids[-1]}"'.encode() not in received:
                            received += await reader.content.read(1 << 20)
                        # Every frame of the round, in order, and no snapshot instead.
                        got = [data["id"] for event, data in _frames(received)
                               if event == "intervention"]
                        assert got == ids, got
                        received = received[received.rindex(b"\n\n") + 2:]
                        await asyncio.sleep(0.01)
                    assert hub.clients == [reading] and reading.dropped == 0
                    assert metrics.registry.get_sample_value(
                        "frictionwatch_console_dropped_frames_total") > 0  # the stuck one's
            finally:
                stuck.close()
    asyncio.run(scenario())


# -- on a real broker and worker ----------------------------------------------------------------
@pytest.mark.broker
def test_the_feed_reads_incidents_from_the_start_and_interventions_from_the_end(
    web_broker: EmbeddedBroker,
) -> None:
    tag = time.time_ns()
    interventions, incidents = f"console-{tag}.interventions", f"console-{tag}.incidents"
    opened = {"kind": "incident_open", "ts": 1, "key": "/checkout|checkout_failure",
              "route": "/checkout", "failure": "checkout_failure", "rule": "rate",
              "count": 9.4, "baseline": 1.2, "incident_id": "inc-old"}

    async def scenario() -> None:
        await produce(web_broker.address, [(b"k", orjson.dumps(opened))], incidents)
        await produce(web_broker.address, [(b"s-old", orjson.dumps(handoff("old")))],
                      interventions)
        metrics = Metrics()
        hub = ConsoleHub(metrics)
        fanout = Fanout(metrics)
        fanout.taps.append(hub.intervention)
        feed = InterventionFeed(web_broker.address, interventions, fanout,
                                also={incidents: hub.incident})
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.ready.wait(), 30)
            await produce(web_broker.address, [(b"s-new", orjson.dumps(handoff("new")))],
                          interventions)
            for _ in range(300):
                if "new" in hub.interventions and hub.incidents:
                    break
                await asyncio.sleep(0.1)
            assert list(hub.interventions) == ["new"]  # from the end: "old" came before
            assert [i["incident_id"] for i in hub.incidents.values()] == ["inc-old"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


@pytest.mark.broker
def test_the_worker_serves_the_console_at_its_root(web_worker: WorkerProcess) -> None:
    """Faust's own {"status": "OK"} index is gone; the console is there, with the demo."""
    import urllib.request

    with urllib.request.urlopen(web_worker.web + "/", timeout=10) as resp:
        body = resp.read()
    assert resp.headers["Content-Type"].startswith("text/html")
    assert b"frictionwatch console" in body and b'href="/demo"' in body


@pytest.mark.broker
def test_planted_personal_data_reaches_no_console_frame(web_worker: WorkerProcess) -> None:
    """A session with an e-mail address, a card number, a phone number and URL tokens in
    every free-text field, through collect to a handoff: the console's stream, snapshot
    and the handoff's context hold none of them."""
    import http.client
    from urllib.parse import urlsplit

    from tests.detectors.test_scrub import NEEDLES, poisoned_session
    from tests.web.test_endpoints import call, new_client, open_session

    url = urlsplit(web_worker.web)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", "/console/stream")
    stream = conn.getresponse()
    assert stream.status == 200
    try:
        client = new_client()
        sid, token = open_session(web_worker, client)
        events = poisoned_session(sid)
        for start in range(0, len(events), 20):
            status, answer, _ = call(web_worker, "/v1/collect", orjson.dumps(
                {"site_key": SITE_KEY, "token": token, "events": events[start:start + 20]}),
                headers=client)
            assert status == 202, answer
        handoffs = [r for r in records_of(web_worker, "frictionwatch.interventions", sid,
                                          lambda rs: any(r["kind"] == "handoff" for r in rs))
                    if r["kind"] == "handoff"]
        frames = b""
        while handoffs[0]["intervention_id"].encode() not in frames:
            frames += stream.read1(65536)
    finally:
        conn.close()

    def fetch(path: str) -> str:
        status, answer, _ = call(web_worker, path, method="GET")
        assert status == 200, answer
        return orjson.dumps(answer).decode()

    wait_for(lambda: handoffs[0]["intervention_id"] in fetch("/console/api/snapshot"), 30,
             "the handoff in the console's snapshot")
    places = {"console stream": frames.decode(errors="replace"),
              "snapshot": fetch("/console/api/snapshot"),
              "handoff context": fetch(f"/console/api/handoffs/{handoffs[0]['intervention_id']}")}
    assert '"pages"' in places["handoff context"]  # a real context was looked at
    found = {where: [n for n in NEEDLES if n in text] for where, text in places.items()}
    assert found == {where: [] for where in places}


def test_run_refuses_a_malformed_outage_before_starting_anything(
        capsys: pytest.CaptureFixture[str]) -> None:
    from streamer.cli import main

    for spec in ("soon", "5", "-1:2", "3:0"):
        assert main(["run", f"--outage={spec}"]) == 2
        assert "outage" in capsys.readouterr().err
