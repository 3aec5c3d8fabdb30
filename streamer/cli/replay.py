"""``frictionwatch replay FILE``: the worker's pipeline offline, over a JSONL file.

Without ``--labels`` it prints one JSON line per signal, intervention and incident
change; with ``--labels`` (from ``simulate``) a precision/recall report instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from detectors.session import Engine
from streamer.cli import options


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("replay", help="run detectors and policy offline over a JSONL file")
    options.add_common(rp, kafka=False, web=False)
    rp.add_argument("file", help="JSONL file of events ('-' for stdin)")
    rp.add_argument("--out", help="write output lines here instead of stdout")
    rp.add_argument("--labels", help="labels JSONL (from simulate): print a precision/recall report")
    rp.add_argument("--json", action="store_true", help="with --labels: the report as one JSON object")
    rp.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from streamer.tools import evaluate
    from streamer.tools.replay import replay_file

    settings = options.settings(args)
    engine = Engine.from_config(settings.detection)
    limits: dict[str, Any] = {"max_record_bytes": settings.max_record_bytes,
                              "idle_ms": settings.idle_timeout_ms}
    if args.labels:
        try:
            labels = evaluate.read_labels(args.labels)
        except evaluate.LabelsError as exc:
            return options.fail(str(exc))
        with contextlib.ExitStack() as stack:
            source = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
            out = stack.enter_context(open(args.out, "wb")) if args.out else None
            report = evaluate.replay_report(source, engine, labels, out=out, err=sys.stderr, **limits)
        if args.json:
            evaluate.print_json(report)
        else:
            print(evaluate.format_report(report))
        return 0
    if args.json:
        return options.fail("replay --json needs --labels")
    if args.out:
        with open(args.out, "wb") as out:
            written = replay_file(args.file, engine, out, **limits)
        print(f"wrote {written} lines to {args.out}", file=sys.stderr)
    else:
        replay_file(args.file, engine, sys.stdout.buffer, **limits)
    return 0
