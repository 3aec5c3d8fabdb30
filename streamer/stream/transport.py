"""Faust's aiokafka transport with one setting it hard-codes made configurable.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. Kafka answers a waiting
fetch as soon as data arrives, so there the wait costs nothing; the embedded broker
(Tansu) holds the fetch for the full wait instead, which put ~0.7 s between a
customer's third failed payment and the handoff. A short wait costs a few idle
fetches per second and nothing else.

And one fix, of the commit stall after a restart (issue 11). When table recovery is
done, Faust resumes the stream partitions and *then* awaits the seek to the committed
offsets (``Recovery.on_recovery_completed``); records fetched meanwhile are delivered
to the stream, and the seek then sets each partition's read offset back to the
committed offset. The next record looks like a jump over the ones just delivered, and
``Consumer._add_gap`` files them as a gap (offsets that will never come). At commit
time ``_new_offset`` merges the gap into the acked offsets, where each of them is now
twice; its run of consecutive offsets stops at every duplicate, so each commit moved
the partition on by one offset: hundreds of records stayed uncommitted for minutes
after everything was processed, and every next restart re-delivered them. Here the
read offset is never set back below a record delivered during the seek.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    _delivered_during_seek: dict[Any, int | None] | None = None

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        before = dict(self._read_offset)
        await super().perform_seek()
        during, self._delivered_during_seek = self._delivered_during_seek, None
        for tp, last in (during or {}).items():
            # Written by the fetch loop while the seek was awaited: delivered, not to be
            # read again (the next offset to read is the one after it).
            if last is not None and last != before.get(tp):
                current = self._read_offset.get(tp)
                if current is None or last + 1 > current:
                    self._read_offset[tp] = last + 1
                    log.info("%s: records up to offset %d came in while seeking to the "
                             "committed offset %s; reading on from %d", tp, last, current,
                             last + 1)

    async def seek_to_committed(self) -> Any:
        committed = await super().seek_to_committed()
        # The read offsets as the fetch loop left them, just before perform_seek
        # overwrites them with the committed offsets (no await in between).
        self._delivered_during_seek = dict(self._read_offset)
        return committed


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """faust.App whose consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
