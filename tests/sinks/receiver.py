"""A webhook receiver for tests, and the README's signature recipe.

:class:`Receiver` is an aiohttp server on 127.0.0.1 in a thread of its own (so the
synchronous worker tests and the asyncio sink tests can both use it). A script decides
each answer from the request and how many times its id has been tried; ``None`` holds
the request open until :meth:`Receiver.release` (or the receiver stops).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streamer.embedded import free_port
from tests.conftest import ROOT


@dataclass(frozen=True)
class Request:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["X-FW-Idempotency-Key"]

    @property
    def payload(self) -> dict[str, Any]:
        return dict(orjson.loads(self.body))


#: (request, the how-many-th try of its id, from 1) -> HTTP status, or None to hold it.
Script = Callable[[Request, int], int | None]


class Receiver:
    def __init__(self, script: Script, *, release_status: int = 200) -> None:
        self.script = script
        self.release_status = release_status
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook?token=not-for-logs"
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._answers: list[tuple[Request, int]] = []
        self._tries: Counter[str] = Counter()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)

    # -- what the tests read --------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def answered(self, status: int) -> list[Request]:
        with self._lock:
            return [r for r, s in self._answers if s == status]

    def release(self) -> None:
        """Answer the held requests (and every later one the script holds)."""
        assert self._loop is not None and self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)

    # -- the server -------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        req = Request(time.monotonic(), dict(request.headers), await request.read())
        with self._lock:
            self._requests.append(req)
            self._tries[req.id] += 1
            tries = self._tries[req.id]
        status = self.script(req, tries)
        if status is None:
            assert self._gate is not None
            await self._gate.wait()
            status = self.release_status
        with self._lock:
            self._answers.append((req, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        runner: web.AppRunner | None = None
        try:
            async def start() -> web.AppRunner:
                self._gate = asyncio.Event()
                app = web.Application()
                app.router.add_post("/hook", self._handle)
                runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                return runner

            runner = loop.run_until_complete(start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(self._stop)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the receiver thread did not stop"

    def _stop(self) -> None:
        assert self._loop is not None and self._gate is not None
        self._gate.set()  # held requests answer, so the server can shut down
        self._loop.stop()


def documented_verify() -> Callable[..., bool]:
    """``verify`` exactly as the README's signature recipe defines it."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    recipe = [b for b in blocks if "def verify(" in b and "X-FW-Signature" in b]
    assert len(recipe) == 1, "the README has no (or more than one) signature recipe"
    namespace: dict[str, Any] = {}
    exec(compile(recipe[0], "README.md (signature recipe)", "exec"), namespace)  # noqa: S102
    verify: Callable[..., bool] = namespace["verify"]
    return verify
