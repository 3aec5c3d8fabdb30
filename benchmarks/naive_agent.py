"""The baseline: a naive Faust agent, the way the Faust tutorials write one.

It consumes the very records our pipeline consumes: a record holds one event (a JSON
object) or an array of one session's events. Faust's own ``json`` value serializer
decodes it, and the agent writes its session's table entry (an event count) once per
record, however many events the record holds; memory store. Run as a worker
subprocess by :mod:`benchmarks.pipeline_throughput`::

    python -m benchmarks.naive_agent --broker 127.0.0.1:PORT --app-id ID \\
        --topic TOPIC --partitions 4 --web-port PORT

With ``--floor`` it is the least any Faust agent pays for these records instead: raw
values taken in batches (``take_events``, as our worker takes them), each decoded with
``orjson`` and its events counted, nothing written, nothing sent; with our worker's
Faust settings (uvloop, :class:`~streamer.stream.transport.QuietMonitor`). What is left between
it and (b) is what a Faust agent can save; what is left above it is Faust's own.

``GET /count/`` on the web port answers ``{"count": N, "records": R}``: the events and
records fully processed (table written) so far, read by the harness the same way it
reads our worker's ``/metrics``. Consumer-group timeouts are the embedded broker's
(:data:`streamer.embedded.EMBEDDED_GROUP_TIMEOUTS`), as for our worker in the benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import AsyncIterable, Sequence
from typing import Any

import faust
import orjson

from streamer.embedded import EMBEDDED_GROUP_TIMEOUTS
from streamer.settings import Settings
from streamer.stream.batching import BATCH_MAX
from streamer.stream.transport import QuietMonitor, use_uvloop

#: The floor's batch window: our worker's default (``batch_within_ms``).
WITHIN_S = Settings().batch_within_ms / 1000


def build(broker: str, app_id: str, topic: str, partitions: int, web_port: int,
          floor: bool = False) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{broker}",
        store="memory://",
        datadir=os.path.join(tempfile.gettempdir(), "frictionwatch-bench"),
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        # The consumer-group timeouts our worker gets in the benchmark.
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=EMBEDDED_GROUP_TIMEOUTS["session_timeout_s"],
        broker_heartbeat_interval=EMBEDDED_GROUP_TIMEOUTS["heartbeat_interval_s"],
        broker_rebalance_timeout=EMBEDDED_GROUP_TIMEOUTS["session_timeout_s"],
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=web_port,
        loghandlers=[],
    )
    if floor:
        app.monitor = QuietMonitor()
    processed = {"count": 0, "records": 0}

    @app.page("/count/")
    async def count(web: Any, request: Any) -> Any:
        return web.json(processed)

    if floor:
        raw = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="raw",
                        partitions=partitions)

        @app.agent(raw, name="count_events_floor")
        async def count_events_floor(stream: Any) -> None:
            async for batch in stream.take_events(BATCH_MAX, within=WITHIN_S):
                for event in batch:
                    value = orjson.loads(event.value)
                    processed["count"] += len(value) if isinstance(value, list) else 1
                processed["records"] += len(batch)

        return app

    events = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="json",
                       partitions=partitions)
    session_to_count = app.Table("session_to_count", default=int, partitions=partitions)

    @app.agent(events, name="count_session_events")
    async def count_session_events(stream: AsyncIterable[Any]) -> None:
        async for value in stream:
            batch = value if isinstance(value, list) else [value]
            session_to_count[batch[0]["session_id"]] += len(batch)  # one write per record
            processed["count"] += len(batch)
            processed["records"] += 1

    return app


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="naive_agent", description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True, help="bootstrap server, host:port")
    p.add_argument("--app-id", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--web-port", type=int, required=True)
    p.add_argument("--loglevel", default="warning")
    p.add_argument("--floor", action="store_true",
                   help="batches of raw values, decoded and counted; no table, no sends")
    args = p.parse_args(argv)
    if args.floor:
        use_uvloop()
    app = build(args.broker, args.app_id, args.topic, args.partitions, args.web_port,
                floor=args.floor)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False)
    # As in our worker: no terminal spinner, which would set the root logger to DEBUG
    # (every debug call in Faust and aiokafka then builds a record: ~7% of CPU).
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
