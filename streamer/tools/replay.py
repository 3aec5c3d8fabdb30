"""Offline replay: the streaming pipeline over a JSONL file, with a dict for state.

Each input line is one event (or an array of one session's events), as produced to
``frictionwatch.events``. The output is one JSON line per signal and per
intervention, the same records the stream publishes, and per incident open or close
(:mod:`streamer.stream.incidents`). Lines that do not decode are
reported on stderr with their line number and the reason, and counted; they never
stop the replay.

Time is taken as the stream takes it: an event's server time is its ``received_at``
when the file has one (as the collector stamps them), else its ``ts`` (a file of
events without it). Nothing caps it at the wall clock: a file's times are what they
are. Sessions end as they do in the stream: at ``session_end``, or when idle for
``idle_ms`` of that time, found by the same :meth:`Pipeline.sweep` every
``sweep_every`` lines. At the end of the input every session still open is ended
too (abandoned, unless it converted), so each session gets exactly one outcome and
the risk model learns from all of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from detectors.session import Engine
from streamer.metrics import Metrics
from streamer.settings import Settings
from streamer.stream.incidents import Stamped, adds_incidents
from streamer.stream.pipeline import Pipeline

#: Input lines between two sweeps for idle sessions. A sweep reads every open
#: session's state, so it is not done per line; idle timeouts are minutes of event
#: time, far more than this many lines of any real traffic.
SWEEP_EVERY = 5000
#: :meth:`Pipeline.sweep` with this ``idle_ms`` ends every session: all are idle
#: since before one ms past the watermark.
_EVERYTHING = -1


@adds_incidents
def replay_lines(
    lines: Iterator[bytes],
    engine: Engine,
    *,
    max_record_bytes: int,
    errors: IO[str] | None = None,
    idle_ms: int = Settings.idle_timeout_ms,
    sweep_every: int = SWEEP_EVERY,
    metrics: Metrics | None = None,
) -> Iterator[Stamped]:
    """Yield every output record for the given input lines, in order (with the server
    time of its event, for :func:`~streamer.stream.incidents.adds_incidents`, which
    strips it: callers get the records).

    ``metrics`` (a fresh bundle if None) counts what the stream counts, outcomes
    included, for a report to read when the replay is done.
    """
    if sweep_every < 1:
        raise ValueError(f"sweep_every = {sweep_every} must be >= 1")
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(
        engine, states, Metrics() if metrics is None else metrics,
        max_record_bytes=max_record_bytes, wall_clock=None,
    )
    for number, line in enumerate(lines, 1):
        if number % sweep_every == 0:
            pipeline.sweep(idle_ms)
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
            for record in outcome.records():
                yield outcome.server_ts, record
    # End of input: nothing more will come, so every open session has ended.
    pipeline.sweep(_EVERYTHING)


def replay_file(
    path: str | Path,
    engine: Engine,
    out: IO[bytes],
    *,
    max_record_bytes: int,
    idle_ms: int = Settings.idle_timeout_ms,
) -> int:
    """Replay ``path`` (``-`` for stdin) writing JSON lines to ``out``; return lines written."""
    written = 0
    source = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for record in replay_lines(
            iter(source), engine, max_record_bytes=max_record_bytes, errors=sys.stderr,
            idle_ms=idle_ms,
        ):
            out.write(orjson.dumps(record) + b"\n")
            written += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return written
