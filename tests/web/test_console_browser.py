"""Issue 14, acceptance 1: Chromium opens the console at ``/`` during ``frictionwatch run``
with traffic and an outage, and sees the counters move, interventions arrive in the list
and the outage's incident show; a handoff opens its context.

The scenario is :func:`benchmarks.console_screenshot.watch` (the same run makes the
README's screenshot): ``run --speed 20 --outage 12:6 --config deploy/outage-demo.toml``,
whose incident rules learn for 30 s instead of 30 min, so the incident opens about 15 s
after the outage starts (36 s into the run). Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import need_tool
from tests.web.conftest import ARTIFACTS, BROWSER_ARGS, playwright


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_the_console_shows_a_run_live() -> None:
    playwright()
    from benchmarks.console_screenshot import INCIDENT_KEY, watch

    seen = watch(ARTIFACTS / "console.png")
    assert seen.events_later > seen.events_first > 0, seen.run_output[-5:]
    assert seen.ticks > 0
    kinds = {i["kind"] for i in seen.interventions}
    assert kinds == {"nudge", "handoff"}, kinds
    route, failure = INCIDENT_KEY.split("|")
    assert route in seen.incident and failure in seen.incident
    assert "failed payment" in seen.handoff_text and "Journey" in seen.handoff_text
    assert seen.handoff_title.startswith("Handoff ")
    assert "Demo shop" in seen.page_text  # run serves the demo, so the console links it
    assert all(path.stat().st_size > 10_000 for path in seen.screenshots)


def test_a_console_without_room_retries_until_there_is() -> None:
    """Every stream is taken: the page's EventSource gets a 503 and gives up (an
    EventSource never retries an answer that is not a stream); the page asks why, finds
    it is not refused, says it retries, and is live once a stream is free. The console
    is served in this process (tests/web/test_console.py), in a thread of its own."""
    from tests.web.test_console import console_server

    sync_playwright = playwright()
    loop = asyncio.new_event_loop()
    served: dict[str, Any] = {}
    stop = threading.Event()

    async def serve() -> None:
        async with console_server(max_streams=1) as (server, hub, _), \
                aiohttp.ClientSession() as http:
            held = await http.get(server.make_url("/console/stream"))
            await held.content.readuntil(b"\n\n")
            served.update(url=str(server.make_url("/")), held=held)
            while not stop.is_set():  # a tick now and then, as the worker's timer sends
                hub.sample()
                await asyncio.sleep(0.2)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if "url" in served or not thread.is_alive():
                break
            time.sleep(0.05)
        assert "url" in served, "the console did not start"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=need_tool("chromium"),
                                         args=BROWSER_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(served["url"])
                page.wait_for_function(
                    "() => document.getElementById('status').textContent.startsWith('retrying')",
                    timeout=30_000)
                assert page.evaluate("() => window.fwConsole.snapshots") == 0
                loop.call_soon_threadsafe(served["held"].close)
                page.wait_for_function("() => window.fwConsole.snapshots > 0", timeout=30_000)
                assert page.inner_text("#status") == "live" and page.is_hidden("#refused")
            finally:
                browser.close()
    finally:
        stop.set()
        thread.join(30)
