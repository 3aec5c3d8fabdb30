"""``frictionwatch run``: the whole product on this machine, for a first look.

An embedded broker, one worker with its web side and the demo shop, and built-in
synthetic shoppers; a live status line; Ctrl-C stops all of it.
"""

from __future__ import annotations

import argparse
import sys
import time

from streamer.cli import options
from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS, EmbeddedBroker, free_port
from streamer.settings import Settings
from streamer.stream import app, worker
from streamer.stream.topics import Topics
from streamer.tools import traffic as traffic_feed
from streamer.tools.outage import Outage


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="embedded broker + worker + web + demo traffic")
    options.add_common(run)
    run.add_argument("--no-traffic", dest="traffic", action="store_false",
                     help="do not feed built-in synthetic traffic")
    run.add_argument("--speed", type=float, default=10.0,
                     help="synthetic traffic runs this many times faster than real time")
    run.add_argument("--seed", type=int, default=1, help="seed of the synthetic traffic")
    run.add_argument("--outage", metavar="START_MIN:DURATION_MIN",
                     help="the payment gateway fails for everyone from START_MIN for DURATION_MIN "
                          "minutes of the synthetic traffic's time (at --speed 20 a minute is 3 s)")
    run.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    outage = None
    if args.outage:
        try:
            outage = Outage.parse(args.outage, start_ts=0)
        except ValueError as exc:
            return options.fail(str(exc))
    return run_local(options.settings(args), traffic=args.traffic, speed=args.speed,
                     seed=args.seed, outage=outage)


def run_local(settings: Settings, *, traffic: bool, speed: float, seed: int,
              outage: Outage | None = None) -> int:
    """Embedded broker, worker, web, demo shop, and synthetic traffic."""
    broker = EmbeddedBroker().start()
    try:
        wanted = settings.web_port
        web_port = wanted if wanted and _port_free(wanted) else free_port()
        settings = settings.with_(broker=f"kafka://{broker.address}", web_port=web_port,
                                  demo=True, **EMBEDDED_GROUP_TIMEOUTS)
        worker.ensure_topics(settings)
        service = app.build(settings)
        out = sys.stdout
        base = f"http://{settings.web_host}:{web_port}"
        print(f"web: {base}/", file=out)
        print(f"console: {base}/", file=out)
        print(f"metrics: {base}/metrics", file=out)
        print(f"demo: {base}/demo", file=out)
        print(f"broker: {broker.address}", file=out)
        print(f"topics: {', '.join(Topics.names(settings)[:4])}", file=out)
        if traffic and outage is not None:
            print(f"outage: payments fail from {outage.start_ts / 1000 / speed:.0f} s to "
                  f"{outage.end_ts / 1000 / speed:.0f} s after the traffic starts", file=out)
        print("Ctrl-C stops everything.", file=out, flush=True)
        if traffic:
            traffic_feed.attach(service, speed=speed, seed=seed, outage=outage)
        _attach_status(service)
        return worker.run(service)
    finally:
        broker.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _attach_status(service: app.Service) -> None:
    """A live line of counts, read from the worker's own metrics."""
    m = service.metrics
    started = time.monotonic()
    tty = sys.stdout.isatty()

    def total(counter: object) -> int:
        return int(sum(s.value for metric in counter.collect()  # type: ignore[attr-defined]
                       for s in metric.samples if s.name.endswith("_total")))

    @service.app.timer(interval=2.0)
    async def print_status() -> None:
        kinds = {"nudge": 0, "handoff": 0}
        for metric in m.interventions.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    kinds[s.labels["kind"]] += int(s.value)
        line = (
            f"[{time.monotonic() - started:6.0f}s] events {total(m.events):>8}  "
            f"signals {total(m.signals):>6}  nudges {kinds['nudge']:>5}  "
            f"handoffs {kinds['handoff']:>5}  invalid {total(m.invalid):>5}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
