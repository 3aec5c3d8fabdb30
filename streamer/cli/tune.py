"""``frictionwatch tune FILE --labels L --sweep detector.key=a:b:step``: the
``replay --labels`` report over a grid of settings, as a table and a plot."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable, Iterator

from streamer.cli import options


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tp = sub.add_parser("tune", help="replay --labels over a grid of settings: the trade-off, "
                        "as a table and a plot")
    options.add_common(tp, kafka=False, web=False)  # --config: the base configuration
    tp.add_argument("file", help="JSONL file of events ('-' for stdin)")
    tp.add_argument("--labels", required=True, help="labels JSONL (from simulate)")
    tp.add_argument("--sweep", action="append", required=True, metavar="SECTION.KEY=START:STOP:STEP",
                    help="a setting and the values to try, STOP included, e.g. "
                    "rage_click.min_clicks=2:5:1 or policy.nudge_threshold=0.3:0.9:0.1; "
                    "repeat for a grid (every combination)")
    tp.add_argument("--plot", metavar="OUT.html",
                    help="write the trade-off as a self-contained HTML page (inline SVG)")
    tp.add_argument("--json", action="store_true",
                    help="print one JSON object: the sweeps and, per grid point, its values, "
                    "summary and the full replay --labels report")
    tp.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from detectors.errors import ConfigError
    from streamer.tools import evaluate, pages, tune

    try:
        sweeps = [tune.parse_sweep(spec) for spec in args.sweep]
        tune.grid(sweeps)  # the size check, before reading anything
    except tune.SweepError as exc:
        return options.fail(str(exc))
    settings = options.settings(args)  # a bad --config file stops here, naming it
    try:
        labels = evaluate.read_labels(args.labels)
    except evaluate.LabelsError as exc:
        return options.fail(str(exc))
    stdin = sys.stdin.buffer.readlines() if args.file == "-" else None

    @contextlib.contextmanager
    def open_lines() -> Iterator[Iterable[bytes]]:
        if stdin is not None:
            yield stdin
        else:
            with open(args.file, "rb") as fh:
                yield fh

    try:
        result = tune.tune(open_lines, settings.detection, sweeps, labels,
                           max_record_bytes=settings.max_record_bytes,
                           idle_ms=settings.idle_timeout_ms, err=sys.stderr)
    except ConfigError as exc:
        return options.fail(str(exc))
    except OSError as exc:
        return options.fail(f"events file {args.file!r}: {exc.strerror or exc}")
    if args.json:
        evaluate.print_json(result)
    else:
        print(f"base = {args.config or 'defaults'}\n")
        print(tune.format_grid(result))
    if args.plot:
        notes = [f"events {args.file}, labels {args.labels}, base config "
                 f"{args.config or 'defaults'}; {result['grid'][0]['report']['sessions']} sessions, "
                 f"{len(labels)} labelled episodes."]
        keys = ", ".join(s.key for s in sweeps)
        page = pages.tune_page(result, title=f"frictionwatch tune: {keys}", notes=notes)
        if not options.write_plot(args.plot, page):
            return 2
    return 0
