"""The operator console at ``/``: what the worker sees, live, in a browser.

Plain files beside this module (``index.html``, ``console.css``, ``console.js``: no
build step, no CDN, nothing fetched from elsewhere; the charts are hand-drawn SVG)
and these endpoints:

- ``GET /``: the page (links to ``/demo`` only where the demo shop is served);
- ``GET /console/stream``: Server-Sent Events from :class:`~.hub.ConsoleHub`
  (``snapshot``, then ``tick`` each second, ``intervention``, ``incident``);
- ``GET /console/api/snapshot``: the same snapshot as JSON (scripts, curl);
- ``GET /console/api/handoffs/{id}``: one handoff of the list with its context, as the
  person taking it over reads it;
- ``GET /console/static/...``: the page's script and style (code, no data: open);
- ``GET /docs``: the README this worker was built from, as text.

All but the static files and the docs are behind :class:`~.access.ConsoleAccess`
(``FW_CONSOLE_TOKEN``, else loopback clients only); refusals are JSON, counted in
``frictionwatch_web_rejections_total{endpoint="console"}``. At most
``FW_CONSOLE_STREAMS`` streams are open at once.
"""

from __future__ import annotations

import asyncio
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.web import http
from streamer.web.console.access import ConsoleAccess
from streamer.web.console.hub import ConsoleHub
from streamer.web.guard import Refusal

#: Seconds between keep-alive comments on a quiet stream (ticks come every second, so
#: only a stalled worker is quiet), and the longest one write may take before the
#: client is dropped as slow.
SSE_HEARTBEAT_S = 15.0
SSE_WRITE_TIMEOUT_S = 5.0
SSE_RETRY_MS = 2000

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "application/javascript; charset=utf-8",
}
#: The page loads only its own files and talks only to this worker.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_DEMO_LINK = re.compile(rb"<!--demo-->.*?<!--/demo-->", re.S)


def page(demo: bool) -> bytes:
    """The console's HTML; the link to the demo shop only where it is served.

    >>> b'href="/demo"' in page(True), b'href="/demo"' in page(False)
    (True, False)
    """
    html = (resources.files(__name__) / "index.html").read_bytes()
    return html if demo else _DEMO_LINK.sub(b"", html)


def readme() -> bytes:
    """The README: the source tree's when the worker runs from one (``make run``), else
    the copy in the installed package's metadata (the image installs from the repo)."""
    source = Path(__file__).resolve().parents[3] / "README.md"
    if source.is_file():
        return source.read_bytes()
    try:
        text = metadata.metadata("frictionwatch").json.get("description")
    except metadata.PackageNotFoundError:
        text = None
    return str(text or "The README is at the frictionwatch repository.\n").encode()


def register(app: faust.App, settings: Settings, metrics: Metrics, hub: ConsoleHub, *,
             write_timeout_s: float = SSE_WRITE_TIMEOUT_S) -> None:
    """The console's pages and stream on ``app`` (the feed and the sampling timer that
    fill ``hub`` are the caller's: :func:`streamer.web.register`)."""
    access = ConsoleAccess(settings.console_token)
    files = {name: (resources.files(__name__) / name).read_bytes() for name in ASSETS}
    index = page(settings.demo)
    docs = readme()

    def refused(view: View, request: Request) -> Response | None:
        refusal = access.check(request.remote,  # type: ignore[attr-defined]
                               request.headers.get("Authorization"), request.query.get("token"))
        return None if refusal is None else http.refuse(view, metrics, "console", refusal, {})

    @app.page("/", name="console")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return refused(self, request) or self.bytes(
                index, headers={**PAGE_HEADERS, "Content-Type": ASSETS["index.html"]})

    for name in ("console.css", "console.js"):
        app.page(f"/console/static/{name}", name="console_" + name.replace(".", "_"))(
            _asset(files[name], ASSETS[name]))
    app.page("/docs", name="docs")(_asset(docs, "text/plain; charset=utf-8"))

    @app.page("/console/api/snapshot", name="console_snapshot")
    class Snapshot(View):
        async def get(self, request: Request) -> Response:
            no = refused(self, request)
            if no is not None:
                return no
            data = hub.snapshot().split(b"data: ", 1)[1].rstrip(b"\n")
            return self.bytes(data, headers={"Content-Type": "application/json",
                                             "Cache-Control": "no-store"})

    @app.page("/console/api/handoffs/{intervention_id}", name="console_handoff")
    class Handoff(View):
        async def get(self, request: Request, intervention_id: str) -> Response:
            no = refused(self, request)
            if no is not None:
                return no
            found = hub.handoff(intervention_id)
            if found is None:
                return http.refuse(self, metrics, "console", Refusal(
                    404, "not_found", "no handoff with that id among the latest interventions"),
                    {})
            return self.json(found, headers={"Cache-Control": "no-store"})

    @app.page("/console/stream", name="console_stream")
    class Stream(View):
        async def get(self, request: Request) -> Any:
            no = refused(self, request)
            if no is not None:
                return no
            if hub.full():
                return http.refuse(self, metrics, "console", Refusal(
                    503, "too_many_streams",
                    f"{hub.max_streams} console streams are open (FW_CONSOLE_STREAMS)",
                    {"Retry-After": "5"}), {})
            return await stream(request, hub, write_timeout_s)

    async def close_streams(_: aioweb.Application) -> None:
        hub.close_all("shutdown")

    app.web.web_app.on_shutdown.append(close_streams)  # type: ignore[attr-defined]


def _asset(content: bytes, content_type: str) -> type[View]:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache",
               "X-Content-Type-Options": "nosniff"}

    class Asset(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return self.bytes(content, headers=headers)

    return Asset


async def stream(request: Request, hub: ConsoleHub,
                 write_timeout_s: float = SSE_WRITE_TIMEOUT_S) -> aioweb.StreamResponse:
    """One console's stream: a snapshot, then what its queue holds, as it comes.

    Only this coroutine waits for the client: the hub pushes into a bounded queue and
    goes on. A write that takes longer than ``write_timeout_s`` ends the stream
    (``slow``); frames dropped meanwhile are replaced by a fresh snapshot.
    """
    client = hub.subscribe()
    response = aioweb.StreamResponse(status=200, headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)  # type: ignore[arg-type]
        first = f"retry: {SSE_RETRY_MS}\n".encode() + hub.snapshot()
        await asyncio.wait_for(response.write(first), write_timeout_s)
        while True:
            frames, resync = await client.next(SSE_HEARTBEAT_S)
            if client.closed:
                break
            transport = request.transport  # type: ignore[attr-defined]
            if transport is None or transport.is_closing():
                client.close("client_gone")
                break
            data = hub.snapshot() if resync else b"".join(frames)
            await asyncio.wait_for(response.write(data or b": ping\n\n"), write_timeout_s)
    except TimeoutError:
        client.close("slow")
    except (ConnectionError, RuntimeError):
        client.close("client_gone")
    finally:
        hub.unsubscribe(client)
    return response
