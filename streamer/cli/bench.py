"""``frictionwatch bench``: the throughput benchmark (``benchmarks/``)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bn = sub.add_parser("bench", help="throughput benchmark on the embedded broker")
    bn.add_argument("--events", type=int, default=200_000)
    bn.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmarks import pipeline_throughput

    return int(pipeline_throughput.main(["--events", str(args.events)]))
