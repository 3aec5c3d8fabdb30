"""Faust's aiokafka transport with one setting it hard-codes made configurable.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. Kafka answers a waiting
fetch as soon as data arrives, so there the wait costs nothing; the embedded broker
(Tansu) holds the fetch for the full wait instead, which put ~0.7 s between a
customer's third failed payment and the handoff. A short wait costs a few idle
fetches per second and nothing else.

And one fix, of the commit stall after a restart (issue 11). When table recovery is
done, ``Recovery.on_recovery_completed`` resumes the stream partitions, *then* awaits the
seek to the committed offsets, and only then resumes the flow, which clears the
streams' queues. Records fetched in between reach the streams (some are processed,
some are cleared from a queue unprocessed), and the seek sets each read offset back to
the committed offset while records fetched before it keep coming. The next one looks
like a jump over those just delivered, and ``Consumer._add_gap`` files them as a gap
(offsets that will never come). At commit time ``_new_offset`` merges the gap into the
acked offsets, where each processed one is now twice: its run of consecutive offsets
stops at every duplicate, so each commit moved the partition on by one offset
(hundreds of processed records stayed uncommitted for minutes, and every next restart
re-delivered them); a cleared record inside the gap would be committed unprocessed.
Here the stream partitions stay paused from the seek until the flow resumes: nothing
reaches a stream in between, and reading restarts at the committed offsets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, CollectionT, EventT, Message, StreamT

from streamer.stream.outbox import OutputHealth

#: The producer's batch size per partition (Faust's default is 16 KB, four session
#: states): a send whose partition's batch is full waits for it to reach the broker,
#: and one request carries one batch per partition.
PRODUCER_BATCH_BYTES = 512 * 1024


def use_uvloop() -> bool:
    """New event loops (the worker's and its consumer thread's) are uvloop's; False,
    changing nothing, where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return False
    if not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy):
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class QuietMonitor(Monitor):
    """Faust's default sensor without its per-record bookkeeping.

    Faust calls its sensors for every message in and out, every stream event in and
    out, every table read and write: counters and timings for Faust's own ``/stats``
    page, which nothing here reads (our metrics are Prometheus', health reads the
    consumer). Commits, rebalances and sends keep their statistics.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        pass

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        pass

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        pass


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    #: Stream partitions perform_seek paused, until resume_flow resumes them.
    _paused_for_seek: frozenset[Any] = frozenset()

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # Nothing may reach a stream between here and the flow's resume (which clears
        # the streams' queues and reads on from the read offsets this seek sets).
        streams = frozenset(tp for tp in self._get_active_partitions()
                            if self.app.topics.acks_enabled_for(tp.topic))
        if streams:
            self.pause_partitions(streams)
            self._paused_for_seek |= streams
        await super().perform_seek()

    def resume_flow(self) -> None:
        super().resume_flow()
        if self.app.in_recovery:
            return  # the flow resumed to read changelogs: the streams wait for its end
        paused, self._paused_for_seek = self._paused_for_seek, frozenset()
        if paused:
            self.resume_partitions(paused & self.assignment())


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: Whether the agent's output sends fail right now (``/healthz``: outputs_failing).
        self.output_health = OutputHealth()
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        """The web server without Faust's ``{"status": "OK"}`` index: the worker serves
        its own page at ``/``, the operator console (:mod:`streamer.web.console`)."""
        from faust.web import drivers as web_drivers

        driver = web_drivers.by_url(self.conf.web)

        class Web(driver):  # type: ignore[valid-type,misc]
            # Faust's production index would take GET / before the console could.
            production_blueprints: list[tuple[str, str]] = []

        return Web(self)
