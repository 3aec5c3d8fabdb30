"""The operator console in a real browser during ``frictionwatch run``, and its screenshot.

``python -m benchmarks.console_screenshot [--out docs/console.png]`` runs::

    frictionwatch run --speed 20 --outage 12:6 --config deploy/outage-demo.toml --web-port 0

in a process group of its own, opens the ``console:`` URL it prints in headless Chromium
(Debian's, driven by Playwright: no browser download), and waits, in the page, until
the counters move, an intervention is in the list and the outage's incident
(``/checkout`` x ``checkout_failure``) shows. Then it writes the screenshot, opens the
newest handoff as an agent would and writes a second one beside it
(``console-handoff.png``). ``tests/web/test_console_browser.py`` runs the same
:func:`watch` and checks what it saw. Everything started here is stopped on the way
out (Ctrl-C to the run's process group, then SIGKILL to that group), also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage",
]
#: The incident the outage opens.
INCIDENT_KEY = "/checkout|checkout_failure"
#: How long each step may take: the run's start; then (the incident) its learning
#: period, 30 s of server time, the outage at 36 s and the detector's minute.
START_S = 60.0
STEP_S = 60.0
INCIDENT_S = 150.0


@dataclass
class Seen:
    """What the page showed, read from its DOM and its state (``window.fwConsole``)."""

    url: str
    events_first: int = 0
    events_later: int = 0
    ticks: int = 0
    interventions: list[dict[str, Any]] = field(default_factory=list)
    incident: str = ""
    handoff_title: str = ""
    handoff_text: str = ""
    page_text: str = ""
    screenshots: list[Path] = field(default_factory=list)
    run_output: list[str] = field(default_factory=list)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise SystemExit("chromium is not installed (make test installs deploy/test-packages.txt)")
    return path


@contextlib.contextmanager
def running(speed: float, outage: str, config: Path) -> Iterator[tuple[str, list[str]]]:
    """``frictionwatch run`` until the block ends; yields its console URL and output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", "--speed", str(speed), "--outage", outage,
         "--config", str(config), "--web-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        start_new_session=True,  # its own group: the embedded broker is stopped with it
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        for raw in process.stdout or ():
            lines.put(raw.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + START_S
        url = ""
        while not url:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("no console URL from frictionwatch run:\n" + "".join(seen))
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
                found = re.match(r"console: (http://\S+)", seen[-1])
                url = found[1] if found else ""
        yield url, seen
    finally:
        _stop_group(process)
        while not lines.empty():
            seen.append(lines.get_nowait())


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the run's own process group, as a terminal would; then SIGKILL to it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _events_total(page: Any) -> int:
    text = page.inner_text("#kpi-events [data-total]")
    return int(re.sub(r"\D", "", text) or 0)


def watch(out: Path, *, speed: float = 20.0, outage: str = "12:6",
          config: Path = ROOT / "deploy" / "outage-demo.toml") -> Seen:
    """Open the console during a run with an outage; return what it showed, with
    screenshots at ``out`` and beside it. Raises (Playwright's TimeoutError) when a step
    does not happen in time."""
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with running(speed, outage, config) as (url, output), sync_playwright() as pw:
        seen = Seen(url, run_output=output)
        browser = pw.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("() => window.fwConsole && window.fwConsole.snapshots > 0",
                                   timeout=STEP_S * 1000)
            page.wait_for_function("() => window.fwConsole.totals.events > 0",
                                   timeout=STEP_S * 1000)
            seen.events_first = _events_total(page)
            page.wait_for_function(
                "n => Number(document.querySelector('#kpi-events [data-total]')"
                ".textContent.replace(/\\D/g, '')) > n", arg=seen.events_first,
                timeout=STEP_S * 1000)
            seen.events_later = _events_total(page)
            page.wait_for_selector("#interventions tr[data-kind='handoff']", timeout=STEP_S * 1000)
            page.wait_for_selector(f"#incidents li.incident[data-key='{INCIDENT_KEY}']",
                                   timeout=INCIDENT_S * 1000)
            seen.incident = page.inner_text(f"#incidents li.incident[data-key='{INCIDENT_KEY}']")
            seen.ticks = page.evaluate("() => window.fwConsole.ticks")
            seen.interventions = page.evaluate("() => window.fwConsole.interventions")
            page.wait_for_timeout(1500)  # a second more of charts for the picture
            seen.page_text = page.inner_text("body")
            page.screenshot(path=str(out))
            seen.screenshots.append(out)
            page.click("#interventions tr[data-kind='handoff']")
            page.wait_for_selector("#handoff:not([hidden]) .summary", timeout=STEP_S * 1000)
            seen.handoff_title = page.inner_text("#handoff-title")
            seen.handoff_text = page.inner_text("#handoff-body")
            second = out.with_name(out.stem + "-handoff" + out.suffix)
            page.screenshot(path=str(second))
            seen.screenshots.append(second)
            context.close()
        finally:
            browser.close()
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_screenshot",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console.png")
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--outage", default="12:6")
    args = parser.parse_args(argv)
    started = time.monotonic()
    seen = watch(args.out, speed=args.speed, outage=args.outage)
    print(f"console {seen.url}: events {seen.events_first} -> {seen.events_later}, "
          f"{len(seen.interventions)} interventions listed, incident: {seen.incident!r}")
    print(f"wrote {', '.join(map(str, seen.screenshots))} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
