"""Incidents from simulated traffic: replay (acceptance test 5), the CLI, the stream.

The outage scenario injects a payment-gateway outage into simulated shopping
(streamer/outage.py) and must open exactly one incident, /checkout x
checkout_failure, within 2 minutes of event time of the outage start, and close it
after the end; clean traffic over hours must open none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detectors.incidents import IncidentDetector
from detectors.session import Engine
from streamer.cli import main
from streamer.embedded import EmbeddedBroker
from streamer.metrics import Metrics
from streamer.stream.incidents import IncidentTable, observation
from streamer.tools import outage, simulate
from streamer.tools.replay import replay_lines
from tests.conftest import RULES_ONLY, consume, produce, start_worker, stop_process, wait_for

MIN = 60_000
#: Sessions per hour of event time: the simulator starts one every 200-800 ms.
SESSIONS_PER_HOUR = 7200
CHECKOUT = "/checkout|checkout_failure"


def replay_factory(sessions: list[simulate.SimSession], config: dict | None = None) -> list[dict]:
    records = simulate.interleave(sessions)
    engine = Engine.from_config({**RULES_ONLY, **(config or {})})
    return list(replay_lines((v for _, v in records), engine, max_record_bytes=1 << 18))


def incidents(records: list[dict]) -> list[dict]:
    return [r for r in records if r["kind"] in ("incident_open", "incident_close")]


def test_outage_opens_and_closes_exactly_one_incident() -> None:
    window = outage.Outage.parse("45:10")
    sessions = outage.inject(simulate.generate(seed=21, sessions=int(1.5 * SESSIONS_PER_HOUR)), window)
    records = replay_factory(sessions)
    found = incidents(records)
    assert [(r["kind"], r["key"]) for r in found] == [("incident_open", CHECKOUT),
                                                      ("incident_close", CHECKOUT)], found
    opened, closed = found
    assert window.start_ts <= opened["ts"] <= window.start_ts + 2 * MIN
    assert window.end_ts < closed["ts"] <= window.end_ts + 15 * MIN
    assert opened["route"] == "/checkout" and opened["failure"] == "checkout_failure"
    assert closed["incident_id"] == opened["incident_id"]
    # Replay prints them where they happen: after the signal that opened it, before the
    # first record past its close.
    at = records.index(opened)
    assert records[at - 1]["kind"] == "signal" and records[at - 1]["ts"] == opened["ts"]
    after = records[records.index(closed) + 1:]
    assert after and all(r["ts"] >= closed["ts"] for r in after[:1])


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_clean_traffic_opens_no_incident(seed: int) -> None:
    sessions = list(simulate.generate(seed=seed, sessions=2 * SESSIONS_PER_HOUR))
    hours = (sessions[-1].events[-1]["ts"] - sessions[0].events[0]["ts"]) / (60 * MIN)
    assert hours > 1.9
    records = replay_factory(sessions)
    assert sum(r["kind"] == "signal" for r in records) > 5000
    assert incidents(records) == []


def _help(sid: str, ts: int, page: str) -> bytes:
    return orjson.dumps({"session_id": sid, "type": "help_request", "ts": ts, "page": page})


def test_replay_cli_prints_incident_lines_and_the_report_ignores_them(tmp_path: Path) -> None:
    base = simulate.DEFAULT_START_TS
    lines = [_help("early", base, "/")]  # observation begins
    lines += [_help(f"h{i}", base + 60 * MIN + i * 3000, "/checkout?step=2") for i in range(8)]
    lines.append(_help("late", base + 120 * MIN, "/"))  # event time moves on: it closes
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(events), "--out", str(out)]) == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    found = incidents(records)
    assert [(r["kind"], r["key"]) for r in found] == [
        ("incident_open", "/checkout|help_request"), ("incident_close", "/checkout|help_request")]
    assert all({"kind", "ts", "key", "route", "failure", "incident_id"} <= set(r) for r in found)

    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(orjson.dumps({"session_id": "h0", "type": "help_request",
                                     "onset_ts": base + 60 * MIN}) + b"\n")
    report_out = tmp_path / "report.jsonl"
    assert main(["replay", str(events), "--labels", str(labels), "--out", str(report_out)]) == 0
    assert incidents([orjson.loads(x) for x in report_out.read_bytes().splitlines()]) == found


def test_simulate_cli_injects_an_outage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    assert main(["simulate", "--seed", "4", "--sessions", "400", "--outage", "1:2",
                 "--events-out", str(events), "--labels-out", str(labels)]) == 0
    assert "outage" in capsys.readouterr().err
    window = outage.Outage.parse("1:2")
    failed = [e for e in map(orjson.loads, events.read_bytes().splitlines())
              if e["type"] == "checkout_failed" and e.get("code") == "gateway_timeout"
              and window.start_ts <= e["ts"] <= window.end_ts + 60_000]
    assert len(failed) > 20
    assert any(lb.get("episode") == "outage" for lb in map(orjson.loads, labels.read_bytes().splitlines()))
    assert main(["simulate", "--sessions", "1", "--outage", "soon"]) == 2


# -- the stream's table side, without Kafka ---------------------------------------------
def test_incident_table_assigns_state_exports_gauges_and_counts_changes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    states: dict[bytes, bytes] = {}
    table = IncidentTable(IncidentDetector(learn_ms=0), states, metrics)
    signal = {"kind": "signal", "ts": 0, "detector": "rage_click", "route": "/", "session_id": "a"}
    batch = [observation(orjson.dumps(signal), table.detector)]
    burst = [dict(signal, ts=3_600_000 + i * 1000, detector="checkout_failure", route="/checkout",
                  session_id=f"s{i}") for i in range(6)]
    batch += [observation(orjson.dumps(r), table.detector) for r in burst]
    changes = table.process([kv for kv in batch if kv is not None])
    assert [(c["kind"], c["key"]) for c in changes] == [("incident_open", CHECKOUT)]
    assert set(states) == {b"/|rage_click", CHECKOUT.encode()}
    assert all(isinstance(v, bytes) for v in states.values())  # assigned back, as JSON

    def gauge(route: str, failure: str) -> float | None:
        return registry.get_sample_value("frictionwatch_incidents_open",
                                         {"route": route, "failure": failure})

    assert gauge("/checkout", "checkout_failure") == 1 and gauge("/", "rage_click") == 0
    assert table.due(lambda key: True) == []  # its clock is the watermark already
    table.watermark = 7_200_000
    assert table.due(lambda key: True) == [CHECKOUT.encode()]
    closed = table.process([(CHECKOUT.encode(), orjson.dumps({"tick": table.watermark}))])
    assert [c["kind"] for c in closed] == ["incident_close"]
    assert gauge("/checkout", "checkout_failure") == 0
    assert registry.get_sample_value("frictionwatch_incident_changes_total", {"kind": "open"}) == 1
    assert registry.get_sample_value("frictionwatch_incident_changes_total", {"kind": "close"}) == 1
    # A key another worker owns now is no longer exported here.
    table.refresh_gauges(lambda key: key == CHECKOUT.encode())
    assert gauge("/", "rage_click") is None and gauge("/checkout", "checkout_failure") == 0
    # A restarted worker learns when observation began from the states it recovers.
    assert IncidentTable(table.detector, states, metrics).since(99) == 0


@pytest.mark.parametrize("value", [
    b"not json", b"[]", b'{"kind": "nudge", "ts": 1}',
    b'{"kind": "signal", "ts": "x", "detector": "rage_click"}',
    b'{"kind": "signal", "ts": 1, "detector": "anomalous_session"}',
])
def test_observation_skips_what_does_not_count(value: bytes) -> None:
    assert observation(value, IncidentDetector()) is None


def test_observation_without_route_is_other() -> None:
    keyed = observation(b'{"kind": "signal", "ts": 1, "detector": "rage_click"}', IncidentDetector())
    assert keyed is not None and keyed[0] == b"other|rage_click"


# -- the stream, on its own embedded broker ----------------------------------------------
def collected(records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The beacons as the collector publishes them: each event stamped with the beacon's
    receive time (``received_at``), here the time of its last event.

    The stream's incidents run on server time, never on a browser's ``ts``: simulated
    traffic produced as a backlog in seconds must carry the times it was "received" at.
    """
    out = []
    for key, value in records:
        events = orjson.loads(value)
        received = max(e["ts"] for e in events)
        out.append((key, orjson.dumps([dict(e, received_at=received) for e in events])))
    return out


@pytest.fixture(scope="module")
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of its own: fleet-wide means every signal on it, so no other test's."""
    with EmbeddedBroker() as b:
        yield b


@pytest.mark.broker
def test_stream_opens_and_closes_the_outage_incident(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    config = tmp_path / "incidents.toml"
    config.write_text("[model]\nenabled = false\n\n[incidents]\nlearn_ms = 600000\n")
    window = outage.Outage.parse("12:6")
    sessions = outage.inject(simulate.generate(seed=41, sessions=int(32 / 60 * SESSIONS_PER_HOUR)),
                             window)
    # One partition: the whole outage is produced at once, as a backlog, and only one
    # partition keeps its signals in event-time order, as a live feed has them. With
    # several, a worker catching up reads one partition's half hour before the next's,
    # and the detector, which takes late observations as decayed, opens late.
    w = start_worker(own_broker, tmp_path, "fw-incidents", "--config", str(config),
                     partitions=1)
    try:
        w.wait_consuming(own_broker)
        bootstrap = w.settings.bootstrap_servers
        records = collected(simulate.interleave(sessions))
        asyncio.run(produce(bootstrap, records))

        def closed(records: list) -> bool:
            return any(orjson.loads(r.value)["kind"] == "incident_close" for r in records)

        found = [orjson.loads(r.value) for r in asyncio.run(
            consume(bootstrap, "frictionwatch.incidents", closed, timeout=240))]
        assert [(r["kind"], r["key"]) for r in found] == [
            ("incident_open", CHECKOUT), ("incident_close", CHECKOUT)], f"{found} (log {w.log})"
        opened, close = found
        assert window.start_ts <= opened["ts"] <= window.start_ts + 2 * MIN
        # Replay over the same records (received_at included) opens the same incident.
        engine = Engine.from_config({**RULES_ONLY, "incidents": {"learn_ms": 600_000}})
        again = incidents(list(replay_lines((v for _, v in records), engine,
                                            max_record_bytes=1 << 18)))
        assert again[0] == opened
        assert close["ts"] > window.end_ts and close["incident_id"] == opened["incident_id"]
        labels = {"route": "/checkout", "failure": "checkout_failure"}
        wait_for(lambda: w.metric("frictionwatch_incident_changes_total", kind="close") >= 1, 30,
                 "the incident counter")
        assert w.metric("frictionwatch_incident_changes_total", kind="open") == 1
        assert "frictionwatch_incidents_open{" in w.metrics_text()
        assert w.metric("frictionwatch_incidents_open", **labels) == 0  # closed, still exported
        assert w.metric("frictionwatch_friction_by_route_total", route="/checkout",
                        detector="checkout_failure") > 100
    finally:
        stop_process(w.process)
