"""Fleet-wide incident detection in the stream (and in replay): the Faust side.

The rules are :mod:`detectors.incidents`; this module feeds them. In the stream::

    frictionwatch.signals                 key = session id (every worker's signals)
      | split_signals_by_incident         one observation per counted signal
      v
    <app id>-signals_by_incident-repartition   key = "route|failure"
      | detect_incidents                  per-key state in the table incident_to_state
      v
    frictionwatch.incidents               key = "route|failure": incident_open / _close

Repartitioning by incident key puts every observation of one key, from every session
on every worker, on one partition: fleet-wide, with no coordination of our own. The
per-key state is read once and assigned back once per batch (never mutated in place:
only assignments reach the changelog), so it moves with its partition on a rebalance.

Time here is the fleet's clock, never a browser's: an observation's ``ts`` is the
*server* time of the event that raised the signal (its ``received_at``, else its
record's Kafka timestamp, capped at the worker's wall clock; see
:mod:`streamer.stream.pipeline` and :meth:`~streamer.stream.pipeline.Produced.observations`),
not the signal record's client ``ts``. So a browser's clock can neither skip the
learning period nor push a key's clock into the future and hide a real outage.

Incidents close when that time passes, which needs no observation of their own key:
a timer sends a *tick* (``{"tick": watermark}``, the largest observation ``ts`` this
worker has seen) through the same repartition topic for every open key it owns, so
the state changes in the stream, in order, like any other update. The close ``ts`` is
computed by the rules, not taken from the tick, so the stream and a replay agree.

``frictionwatch replay`` runs the same rules over its output with
:func:`with_incidents` (``replay_lines`` is decorated with :func:`adds_incidents`),
on the same server times (``received_at`` when the file has it, else ``ts``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from detectors.incidents import (
    Change,
    IncidentBook,
    IncidentDetector,
    State,
    decode_state,
    key_of,
)
from streamer.metrics import Metrics
from streamer.stream.batching import in_context_of, owner, partition_batches

if TYPE_CHECKING:  # replay imports this module: no Faust unless it runs a worker
    import faust

    from detectors.session import Engine
    from streamer.settings import Settings
    from streamer.stream.topics import Topics

log = logging.getLogger(__name__)

#: Seconds between ticks of open incidents (and refreshes of the open-incident gauge).
TICK_S = 2.0
#: Largest repartition record the feed sends (a batch's observations of one key are
#: split across several beyond it). One observation is at most ~2 KB (a session id is
#: at most 256 characters), so this is far below any broker's limit.
MAX_FEED_RECORD_BYTES = 64 * 1024


# -- replay ------------------------------------------------------------------------------
#: A record with the server time of the event behind it (None: take the record's ``ts``).
Stamped = tuple[int | None, dict[str, Any]]


def with_incidents(
    stamped: Iterable[Stamped], detector: IncidentDetector
) -> Iterator[dict[str, Any]]:
    """The records, with incident changes inserted where they happen.

    Each record comes with the server time of its event (:data:`Stamped`). Signal
    records are observed at that time (``route`` "other" when a record has none); each
    record's time moves the clock on, and an incident whose close falls before it is
    closed first. Opens follow the signal that caused them.

    >>> detector = IncidentDetector(learn_ms=600_000, min_count=3)
    >>> first = {"kind": "signal", "session_id": "a", "ts": 0, "detector": "rage_click"}
    >>> burst = [{"kind": "signal", "session_id": f"s{i}", "ts": 3_600_000 + i * 100,
    ...           "detector": "checkout_failure", "route": "/checkout"} for i in range(4)]
    >>> later = {"kind": "nudge", "session_id": "x", "ts": 7_200_000}
    >>> [r["kind"] for r in with_incidents([(None, r) for r in [first, *burst, later]], detector)]
    ['signal', 'signal', 'signal', 'signal', 'incident_open', 'signal', 'incident_close', 'nudge']

    A browser whose clock runs 31 minutes fast does not skip the learning period: the
    same burst, received 2 minutes after observation began, opens nothing.

    >>> early = [(120_000 + i * 100, r) for i, r in enumerate(burst)]
    >>> [r["kind"] for r in with_incidents([(0, first), *early], detector)]
    ['signal', 'signal', 'signal', 'signal', 'signal']
    """
    book = IncidentBook(detector)
    for server_ts, record in stamped:
        ts = record.get("ts") if server_ts is None else server_ts
        if isinstance(ts, int) and not isinstance(ts, bool):
            yield from book.advance(ts)
        yield record
        observed = _observed(record if server_ts is None else dict(record, ts=server_ts), detector)
        if observed is not None:
            yield from book.observe(*observed)


def _observed(
    record: dict[str, Any], detector: IncidentDetector
) -> tuple[int, str, str, str | None] | None:
    """(ts, route, failure, session) of a signal record that counts, else None."""
    if record.get("kind") != "signal":
        return None
    ts, failure = record.get("ts"), record.get("detector")
    if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(failure, str):
        return None
    if failure in detector.ignore:
        return None
    route = record.get("route")
    session = record.get("session_id")
    return (ts, route if isinstance(route, str) and route else "other", failure,
            session if isinstance(session, str) else None)


# -- stream ------------------------------------------------------------------------------
def observation(value: bytes | None, detector: IncidentDetector) -> tuple[bytes, bytes] | None:
    """A ``frictionwatch.signals`` record as (key, value) for the repartition topic.

    >>> observation(b'{"kind": "signal", "ts": 5, "detector": "rage_click", "route": "/p/*",'
    ...             b' "session_id": "s1"}', IncidentDetector())
    (b'/p/*|rage_click', b'{"ts":5,"route":"/p/*","failure":"rage_click","session_id":"s1"}')
    """
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    observed = _observed(record, detector) if isinstance(record, dict) else None
    if observed is None:
        return None
    ts, route, failure, session = observed
    body = {"ts": ts, "route": route, "failure": failure, "session_id": session}
    return key_of(route, failure).encode(), orjson.dumps(body)


class IncidentTable:
    """The detector over per-key states in a table (``bytes -> orjson``): no Faust here.

    ``process`` takes one partition's batch of repartitioned records (observations and
    ticks), in order, and returns the changes to publish.
    """

    def __init__(
        self, detector: IncidentDetector, states: MutableMapping[bytes, bytes], metrics: Metrics
    ) -> None:
        self.detector = detector
        self.states = states
        self.metrics = metrics
        #: The largest observation ts this worker has seen: the event-time clock of ticks.
        self.watermark = 0
        self._since: int | None = None
        self._exported: set[tuple[str, str]] = set()

    def since(self, ts: int) -> int:
        """When the fleet's observation began: the earliest ``since`` of any key held."""
        if self._since is None:
            known = [decode_state(raw)["since"] for raw in self.states.values()]
            self._since = min(known, default=ts)
        return self._since

    def process(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[Change]:
        loaded: dict[bytes, State] = {}
        changes: list[Change] = []
        for key, value in records:
            try:
                body = orjson.loads(value or b"")
                key_text = (key or b"").decode()
            except (orjson.JSONDecodeError, UnicodeDecodeError):
                log.warning("skipping an undecodable record on the incident topic")
                continue
            if not isinstance(body, dict) or key is None or not isinstance(
                body.get("observations", []), list
            ):
                continue
            state = loaded.get(key)
            if state is None:
                raw = self.states.get(key)
                if raw is not None:
                    state = loaded[key] = decode_state(raw)
            if "tick" in body:
                if state is not None and isinstance(body["tick"], int):
                    changes += self.detector.advance(state, body["tick"])
                continue
            # One record holds every observation of this key from one batch upstream.
            for item in body.get("observations", [body]):
                ts, failure = item.get("ts"), item.get("failure")
                if not isinstance(ts, int) or not isinstance(failure, str):
                    continue
                self.watermark = max(self.watermark, ts)
                if state is None:
                    route = item.get("route") or key_text.rpartition("|")[0] or "other"
                    state = loaded[key] = self.detector.new_state(route, failure, self.since(ts))
                changes += self.detector.observe(state, ts, item.get("session_id"))
        for key, state in loaded.items():
            # Assign, never mutate in place: only an assignment reaches the changelog.
            self.states[key] = orjson.dumps(state)
            self._export(state)
        for change in changes:
            self.metrics.incident_changes.labels(change["kind"].removeprefix("incident_")).inc()
        return changes

    def due(self, owns: Callable[[bytes], bool]) -> list[bytes]:
        """Keys this worker owns with an open incident whose clock is behind the watermark."""
        due = []
        for key, raw in list(self.states.items()):
            if owns(key):
                state = decode_state(raw)
                if state["open"] is not None and state["clock_ts"] < self.watermark:
                    due.append(key)
        return due

    def refresh_gauges(self, owns: Callable[[bytes], bool]) -> None:
        """Export every owned key (1 open, 0 not); drop keys another worker owns now."""
        exported = set()
        for key, raw in list(self.states.items()):
            if owns(key):
                exported.add(self._export(decode_state(raw)))
        for labels in self._exported - exported:
            self.metrics.incidents_open.remove(*labels)
        self._exported = exported

    def _export(self, state: State) -> tuple[str, str]:
        labels = (state["route"], state["failure"])
        self.metrics.incidents_open.labels(*labels).set(0 if state["open"] is None else 1)
        self._exported.add(labels)
        return labels


class IncidentFeed:
    """What the main agent calls with each batch's observations
    (:meth:`~streamer.stream.pipeline.Produced.observations`: signals at server time).

    Observations go straight to the repartition topic, one record per incident key per
    batch (more when they pass :data:`MAX_FEED_RECORD_BYTES`): reading
    ``frictionwatch.signals`` back would cost Faust's ~200 us per signal a second time,
    for records this worker has just written.
    """

    def __init__(self, detector: IncidentDetector, topic: faust.TopicT) -> None:
        self.detector = detector
        self.topic = topic

    def records(self, records: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        """(key, value) of the repartition records for a batch's observations: one per
        incident key, or more where one would pass :data:`MAX_FEED_RECORD_BYTES`.

        >>> feed = IncidentFeed(IncidentDetector(), topic=None)
        >>> many = [{"kind": "signal", "ts": 1, "detector": "rage_click", "route": "/",
        ...          "session_id": "s" * 250 + str(i)} for i in range(1000)]
        >>> out = feed.records(many)
        >>> len(out) > 1, all(len(v) <= MAX_FEED_RECORD_BYTES for _, v in out)
        (True, True)
        >>> sum(len(orjson.loads(v)["observations"]) for _, v in out)
        1000
        """
        by_key: dict[bytes, list[bytes]] = {}
        for record in records:
            observed = _observed(record, self.detector)
            if observed is not None:
                ts, route, failure, session = observed
                by_key.setdefault(key_of(route, failure).encode(), []).append(orjson.dumps(
                    {"ts": ts, "route": route, "failure": failure, "session_id": session}))
        out = []
        for key, observations in by_key.items():
            chunk: list[bytes] = []
            size = 0
            for item in observations:
                if chunk and size + len(item) + 1 > MAX_FEED_RECORD_BYTES - 32:
                    out.append((key, _observations_value(chunk)))
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item) + 1
            out.append((key, _observations_value(chunk)))
        return out

    async def send(self, records: Iterable[dict[str, Any]]) -> None:
        for key, value in self.records(records):
            await self.topic.send(key=key, value=value)


def _observations_value(items: list[bytes]) -> bytes:
    return b'{"observations":[' + b",".join(items) + b"]}"


def register(
    app: faust.App, topics: Topics, settings: Settings, metrics: Metrics
) -> tuple[IncidentFeed, IncidentTable]:
    """The incident agent and the tick timer; returns the feed for the main agent."""
    from streamer.stream.topics import incident_signals_topic

    detector = IncidentDetector.from_config(settings.detection.get("incidents", {}))
    core = IncidentTable(detector, topics.incident_to_state, metrics)
    owns = owner(app, incident_signals_topic(settings), settings.partitions)

    @app.agent(topics.signals_by_incident, name="detect_incidents")
    async def detect_incidents(stream: AsyncIterable[faust.EventT[Any]]) -> None:
        async for events in partition_batches(stream):
            pairs = [(e.message.key, e.message.value) for e in events]
            for change in in_context_of(events, core.process, pairs):
                await topics.incidents.send(key=change["key"].encode(), value=orjson.dumps(change))

    @app.timer(interval=TICK_S)
    async def tick_open_incidents() -> None:
        tick = orjson.dumps({"tick": core.watermark})
        for key in core.due(owns):
            await topics.signals_by_incident.send(key=key, value=tick)
        core.refresh_gauges(owns)

    return IncidentFeed(detector, topics.signals_by_incident), core


def adds_incidents(
    replay: Callable[..., Iterator[Stamped]],
) -> Callable[..., Iterator[dict[str, Any]]]:
    """Decorates ``replay(lines, engine, ...)``, which yields :data:`Stamped` records:
    its records, with :func:`with_incidents` run over them by the engine's incident
    rules (config section ``[incidents]``)."""

    @functools.wraps(replay)
    def replay_with_incidents(
        lines: Iterable[bytes], engine: Engine, *args: Any, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        return with_incidents(replay(lines, engine, *args, **kwargs), engine.incidents)

    return replay_with_incidents
