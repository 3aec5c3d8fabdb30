"""Click to human, in a real browser: the third failed payment -> the handoff banner.

``python -m benchmarks.browser_handoff [--trials 20]`` starts an embedded broker, a
worker (``python -m streamer worker``) and headless Chromium (Debian's, driven by
Playwright). Each trial is a new customer on the demo shop's checkout who pays with
the saved card three times; all three are declined. Timed inside the page, with
``performance.now()``: from the third click on "Pay with saved card" to the moment
the handoff banner is in the DOM. That covers the SDK (urgent flush), the collect
endpoint, Kafka, the pipeline agent, the interventions topic, this worker's fan-out
and the SSE stream. Prints every trial, then p50/p95/max, and where the server's
share of the time went (from the worker's own histograms).

Everything started here is stopped by pid on the way out, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streamer.embedded import EmbeddedBroker, create_topics, free_port
from streamer.settings import Settings
from streamer.stream.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage",
]
# Marks the third click and the banner's arrival, both in page time.
MEASURE_JS = """() => {
  window.__fwBench = {clicks: 0};
  document.getElementById('pay-saved').addEventListener('click', () => {
    if (++window.__fwBench.clicks === 1) window.__fwBench.click = performance.now();
  }, true);
  new MutationObserver(() => {
    if (!window.__fwBench.banner && document.querySelector('[data-fw-handoff]'))
      window.__fwBench.banner = performance.now();
  }).observe(document.body, {childList: true, subtree: true});
}"""


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"worker exited with {process.returncode} while waiting for {what}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def metrics(web: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{web}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.name + str(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def answers(web: str) -> bool:
    try:
        metrics(web)
    except OSError:
        return False
    return True


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def produce_probe(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("frictionwatch.events", key=b"probe",
                                     value=b'{"session_id":"probe","type":"page_view","ts":1,"page":"/"}')
    finally:
        await producer.stop()


def start_worker(broker: EmbeddedBroker, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    settings = Settings.load(broker=broker.address, app_id="fw-bench-browser", partitions=2)
    asyncio.run(create_topics(broker.address, Topics.names(settings), settings.partitions))
    log = log_dir / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "worker", "--broker", broker.address, "--app-id",
             "fw-bench-browser", "--partitions", "2", "--web-port", str(port), "--demo"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )
    web = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(web), 90, f"the worker's web server (log {log})", process)
    asyncio.run(produce_probe(broker.address))
    wait_for(lambda: metrics(web).get("frictionwatch_records_total[]", 0) >= 1, 120,
             f"the worker to join its group and consume (log {log})", process)
    return process, web


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def trial(browser: Any, web: str) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(f"{web}/demo/checkout")
        page.wait_for_function("() => frictionwatch.debug().connected")
        for attempt in range(3):
            if attempt == 2:
                page.evaluate(MEASURE_JS)
            page.evaluate("document.getElementById('pay-error').textContent = ''")
            page.click("#pay-saved")
            page.wait_for_function(
                "() => /declined/.test(document.getElementById('pay-error').textContent)"
                " && !document.getElementById('pay-saved').disabled")
        page.wait_for_function("() => window.__fwBench.banner !== undefined")
        return float(page.evaluate("window.__fwBench.banner - window.__fwBench.click")) / 1000
    finally:
        context.close()


def histogram_mean(samples: dict[str, float], name: str) -> float:
    count = samples.get(f"{name}_count[]", 0.0)
    return samples.get(f"{name}_sum[]", 0.0) / count if count else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: bash deploy/install-system-packages.sh deploy/test-packages.txt",
              file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="fw-bench-browser-") as tmp, EmbeddedBroker() as broker:
        os.environ.pop("FW_SITE_KEYS", None)  # the demo page sends none
        process, web = start_worker(broker, Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
                try:
                    trial(browser, web)  # warm-up: first page load, JIT, connections
                    times = []
                    for i in range(args.trials):
                        times.append(trial(browser, web))
                        print(f"trial {i + 1:>3}: {times[-1] * 1000:7.1f} ms", flush=True)
                finally:
                    browser.close()
            samples = metrics(web)
        finally:
            stop(process)
    print(f"\nthird failed payment click -> handoff banner, {len(times)} trials (headless "
          f"Chromium, embedded broker, {os.cpu_count()} cores):")
    print(f"  p50 {percentile(times, 0.50) * 1000:7.1f} ms   p95 {percentile(times, 0.95) * 1000:7.1f} ms"
          f"   max {max(times) * 1000:7.1f} ms")
    print("  server share, means over the run: "
          f"events record -> decision "
          f"{histogram_mean(samples, 'frictionwatch_decision_latency_seconds') * 1000:.1f} ms, "
          f"intervention record -> SSE write "
          f"{histogram_mean(samples, 'frictionwatch_sse_delivery_latency_seconds') * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
