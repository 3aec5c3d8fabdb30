"""``frictionwatch`` (also ``python -m streamer``): one module per command.

Each command module has ``add(subparsers)`` declaring its flags and ``main(args)``
running it; heavy imports happen inside ``main``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from detectors.errors import DetectorError
from streamer.cli import bench, compare, replay, report, run, simulate, tune, worker

COMMANDS = (run, worker, replay, compare, tune, report, simulate, bench)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frictionwatch",
        description="Real-time friction detection: clickstream in, nudges and handoffs out.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DetectorError as exc:
        print(f"frictionwatch: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        # A path the user typed: say which, without a traceback.
        print(f"frictionwatch: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
