"""The baseline: a naive Faust agent, the way the Faust tutorials write one.

One event per Kafka record, Faust's own ``json`` value serializer, one Table write per
event (a per-session event count), memory store. Run as a worker subprocess by
:mod:`benchmarks.pipeline_throughput`::

    python -m benchmarks.naive_agent --broker 127.0.0.1:PORT --app-id ID \\
        --topic TOPIC --partitions 4 --web-port PORT

``GET /count/`` on the web port answers ``{"count": N}``: the events fully processed
(table written) so far, read by the harness the same way it reads our worker's
``/metrics``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import AsyncIterable, Sequence
from typing import Any

import faust


def build(broker: str, app_id: str, topic: str, partitions: int, web_port: int) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{broker}",
        store="memory://",
        datadir=os.path.join(tempfile.gettempdir(), "frictionwatch-bench"),
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        # The same short consumer-group timeouts as streamer/app.py.
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=web_port,
        loghandlers=[],
    )
    events = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="json",
                       partitions=partitions)
    session_to_count = app.Table("session_to_count", default=int, partitions=partitions)
    processed = {"count": 0}

    @app.agent(events, name="count_session_events")
    async def count_session_events(stream: AsyncIterable[Any]) -> None:
        async for event in stream:
            session_to_count[event["session_id"]] += 1
            processed["count"] += 1

    @app.page("/count/")
    async def count(web: Any, request: Any) -> Any:
        return web.json(processed)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="naive_agent", description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True, help="bootstrap server, host:port")
    p.add_argument("--app-id", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--web-port", type=int, required=True)
    p.add_argument("--loglevel", default="warning")
    args = p.parse_args(argv)
    app = build(args.broker, args.app_id, args.topic, args.partitions, args.web_port)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
