"""Fixtures for the browser tests: a worker set up for browsers, and headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright's Python package (no browser
download: ``executable_path``). Under CI a missing browser or Playwright fails the run.
Playwright's sync API keeps an event loop running in this thread, so the Kafka helpers
(async) run in a thread of their own: :func:`run_async`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import orjson
import pytest

from streamer.embedded import EmbeddedBroker
from tests.conftest import CI, ROOT, WorkerProcess, consume, need_tool, running_worker

T = TypeVar("T")

SECRET = "test-secret-0123456789abcdef0123456789"
SITE_KEY = "pk_test_shop"
ALLOWED_ORIGIN = "http://shop.example"
ARTIFACTS = ROOT / "artifacts"
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage",
]
#: Worker settings for these tests (FW_* environment of the worker process).
WEB_ENV = {
    "FW_SECRET": SECRET,
    "FW_SITE_KEYS": f"{SITE_KEY},pk_other",
    "FW_CORS_ORIGINS": ALLOWED_ORIGIN,
    "FW_TRUSTED_PROXIES": "127.0.0.1",
}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end in a thread with its own loop (Playwright owns ours)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def records_of(web_worker: WorkerProcess, topic: str, session_id: str,
               done: Callable[[list[dict]], bool], timeout: float = 60) -> list[dict]:
    """The decoded records of one session on ``topic`` (events: flattened), from the start."""

    def decode(records: list) -> list[dict]:
        out: list[dict] = []
        for r in records:
            if r.key == session_id.encode():
                value = orjson.loads(r.value)
                out.extend(value if isinstance(value, list) else [value])
        return out

    raw = run_async(consume(web_worker.settings.bootstrap_servers, topic,
                            lambda rs: done(decode(rs)), timeout=timeout))
    return decode(raw)


@pytest.fixture(scope="package")
def web_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this package's own: the shared one's workers would otherwise read our
    sessions (and ours theirs), and workers whose models learn across sessions (the
    anomaly detector) decide differently after seeing foreign traffic."""
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="package")
def web_worker(web_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[WorkerProcess]:
    """A worker with a known secret, site keys, a CORS allow-list and a trusted proxy."""
    with running_worker(web_broker, tmp_path_factory.mktemp("web"), "fw-web", "--demo",
                        env=WEB_ENV) as w:
        yield w


def playwright() -> Any:
    """Playwright's sync entry point; Chromium must be installed (a failure under CI)."""
    need_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed (pip install -e '.[dev]')"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def browser(web_worker: WorkerProcess) -> Iterator[Any]:
    chromium = need_tool("chromium")
    with playwright()() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=BROWSER_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Shop:
    """Opens the demo shop in fresh browser contexts (one customer session each)."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser = browser
        self.base = base
        self.contexts: list[Any] = []

    def open(self, path: str = "/demo/checkout", timeout_s: float = 30) -> Any:
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(timeout_s * 1000)
        self.contexts.append(context)
        page = context.new_page()
        page.goto(self.base + path)
        self.wait_connected(page, timeout_s)
        return page

    @staticmethod
    def wait_connected(page: Any, timeout_s: float = 30) -> None:
        page.wait_for_function("() => frictionwatch.debug().connected", timeout=timeout_s * 1000)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def shop(browser: Any, web_worker: WorkerProcess) -> Iterator[Shop]:
    s = Shop(browser, web_worker.web)
    try:
        yield s
    finally:
        s.close()


def fail_payment(page: Any, times: int) -> None:
    """Click "Pay with saved card" and wait for each decline to be shown."""
    for _ in range(times):
        page.evaluate("document.getElementById('pay-error').textContent = ''")
        page.click("#pay-saved")
        page.wait_for_function(
            "() => /declined/.test(document.getElementById('pay-error').textContent)"
            " && !document.getElementById('pay-saved').disabled")
