"""``frictionwatch report``: risk AUC and the uplift of interventions, offline or live."""

from __future__ import annotations

import argparse
import contextlib
import sys

from streamer.cli import options


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rt = sub.add_parser("report", help="risk AUC and uplift of interventions: offline over a "
                        "replay, or live from workers' /metrics")
    options.add_common(rt, kafka=False, web=False)
    rt.add_argument("file", nargs="?", help="JSONL file of events to replay ('-' for stdin)")
    rt.add_argument("--metrics", action="append", metavar="URL",
                    help="a worker's /metrics URL instead of a file (repeat for more workers)")
    rt.add_argument("--json", action="store_true", help="the report as one JSON object")
    rt.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from detectors.session import Engine
    from streamer.tools import evaluate

    if (args.file is None) == (not args.metrics):
        return options.fail("report needs a FILE to replay or --metrics URL, not both")
    if args.metrics:
        texts = []
        for url in args.metrics:
            try:
                texts.append(evaluate.fetch_metrics(url))
            except (OSError, ValueError) as exc:
                return options.fail(f"{url}: {exc}")
        try:
            model = evaluate.model_from_text(texts)
        except ValueError as exc:
            return options.fail(f"not Prometheus metrics: {exc}")
    else:
        settings = options.settings(args)
        engine = Engine.from_config(settings.detection)
        with contextlib.ExitStack() as stack:
            source = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
            model = evaluate.offline_report(source, engine, err=sys.stderr,
                                            max_record_bytes=settings.max_record_bytes,
                                            idle_ms=settings.idle_timeout_ms)
    if args.json:
        evaluate.print_json(model)
    else:
        print(evaluate.format_model(model))
    return 0
