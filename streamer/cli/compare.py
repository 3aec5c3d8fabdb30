"""``frictionwatch compare FILE --labels L A.toml B.toml``: two configs side by side."""

from __future__ import annotations

import argparse
import contextlib
import sys

from detectors.errors import ConfigError
from detectors.session import Engine
from streamer.cli import options
from streamer.settings import load_detection_config


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cp = sub.add_parser("compare", help="two detector/policy configs over one file, side by side")
    cp.add_argument("file", help="JSONL file of events ('-' for stdin)")
    cp.add_argument("config_a", metavar="A.toml", help="detector/policy TOML of config A")
    cp.add_argument("config_b", metavar="B.toml", help="detector/policy TOML of config B")
    cp.add_argument("--labels", required=True, help="labels JSONL (from simulate)")
    cp.add_argument("--json", action="store_true", help='print {"a": report, "b": report}')
    cp.add_argument("--plot", metavar="OUT.html",
                    help="also write per-detector precision and recall, A vs B, as a "
                    "self-contained HTML page (inline SVG)")
    cp.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamer.tools import evaluate

    engines = []
    for path in (args.config_a, args.config_b):
        try:
            engines.append(Engine.from_config(load_detection_config(path)))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        labels = evaluate.read_labels(args.labels)
    except evaluate.LabelsError as exc:
        return options.fail(str(exc))
    settings = options.settings(args)
    stdin = sys.stdin.buffer.readlines() if args.file == "-" else None
    reports = []
    for name, engine in zip("AB", engines, strict=True):
        with contextlib.ExitStack() as stack:
            source = stdin if stdin is not None else stack.enter_context(open(args.file, "rb"))
            reports.append(evaluate.replay_report(
                source, engine, labels, err=sys.stderr, what=f"replay {name}",
                max_record_bytes=settings.max_record_bytes, idle_ms=settings.idle_timeout_ms))
    if args.json:
        evaluate.print_json({"a": reports[0], "b": reports[1]})
    else:
        print(f"A = {args.config_a}\nB = {args.config_b}\n")
        print(evaluate.format_comparison(reports[0], reports[1]))
    if args.plot:
        from streamer.tools.pages import comparison_page

        page = comparison_page(reports[0], reports[1], ("A", "B"), title="frictionwatch compare",
                               notes=[f"A = {args.config_a}", f"B = {args.config_b}",
                                      f"events {args.file}, labels {args.labels}"])
        if not options.write_plot(args.plot, page):
            return 2
    return 0
