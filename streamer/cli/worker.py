"""``frictionwatch worker``: one worker of the consumer group, against any Kafka."""

from __future__ import annotations

import argparse

from streamer.cli import options


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wk = sub.add_parser("worker", help="a worker against a Kafka cluster (production path)")
    options.add_common(wk)
    wk.add_argument("--broker", help="bootstrap servers, e.g. kafka1:9092,kafka2:9092")
    wk.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                    help="do not create missing topics at start")
    wk.add_argument("--demo", action="store_true", default=None,
                    help="also serve the demo shop at /demo (off in production)")
    wk.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamer.stream import worker

    settings = options.settings(args, demo=args.demo)
    if args.create_topics:
        worker.ensure_topics(settings)
    return worker.run_worker(settings)
