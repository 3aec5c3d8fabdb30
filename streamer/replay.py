"""Offline replay: the streaming pipeline over a JSONL file, with a dict for state.

Each input line is one event (or an array of one session's events), as produced to
``frictionwatch.events``. The output is one JSON line per signal and per
intervention, the same records the stream publishes. Lines that do not decode are
reported on stderr with their line number and the reason, and counted; they never
stop the replay.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline


def replay_lines(
    lines: Iterator[bytes], engine: Engine, *, max_record_bytes: int, errors: IO[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield every output record for the given input lines, in order."""
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(engine, states, Metrics(), max_record_bytes=max_record_bytes)
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        produced = pipeline.process(None, line, topic="replay", offset=number)
        for dead in produced.dead_letters:
            if errors is not None:
                reason = dict(dead.headers)
                errors.write(
                    f"line {number}: {reason['fw-reason'].decode()}: "
                    f"{reason['fw-detail'].decode()}\n"
                )
        for outcome in produced.outcomes:
            yield from outcome.records()


def replay_file(path: str | Path, engine: Engine, out: IO[bytes], *, max_record_bytes: int) -> int:
    """Replay ``path`` (``-`` for stdin) writing JSON lines to ``out``; return lines written."""
    written = 0
    source = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for record in replay_lines(
            iter(source), engine, max_record_bytes=max_record_bytes, errors=sys.stderr
        ):
            out.write(orjson.dumps(record) + b"\n")
            written += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return written
