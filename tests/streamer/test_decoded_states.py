"""The pipeline's cache of decoded session states (``Pipeline._load``) changes nothing.

A session's state is decoded from the table once and kept decoded between batches,
valid only while the table holds the very bytes object the pipeline wrote. These
tests run the same records with the cache off, tiny (evicting all the time) and at its
default size, and compare every output and every stored byte; and check that a state
written to the table by anything else (a rebalance, the sweep) is decoded, not reused.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from benchmarks import datasets
from detectors.session import Engine, SessionState
from streamer.metrics import Metrics
from streamer.stream.pipeline import Pipeline, Record

BATCH = 40


def records(kind: str) -> list[Record]:
    traffic = datasets.storm(3000) if kind == "storm" else datasets.simulator_mix(3000)
    # Array records and single-event records, so a session's records cross batches.
    shaped = datasets.arrays(traffic, 7) + datasets.singles(traffic)[::3]
    # The singles repeat events already sent in arrays: duplicates (seen event ids).
    return [Record(k, v, "frictionwatch.events", hash(k) % 4, i, 1_767_225_600.0 + i / 100)
            for i, (k, v) in enumerate(shaped)]


def run(recs: list[Record], decoded_states: int) -> tuple[list[Any], dict[bytes, bytes]]:
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(Engine.from_config(), states, Metrics(), max_record_bytes=1 << 20,
                        wall_clock=None, decoded_states=decoded_states)
    outputs: list[Any] = []
    for n in range(0, len(recs), BATCH):
        out = pipeline.process_batch(recs[n:n + BATCH])
        outputs.append([o.records() for o in out.outcomes])
        outputs.append([(d.key, d.value, d.headers) for d in out.dead_letters])
        if n % (BATCH * 10) == 0:
            outputs.append([o.records() for o in pipeline.sweep(60_000)])
        for key, (raw, state) in pipeline._decoded.items():  # noqa: SLF001
            # The invariant the cache rests on: what it keeps is what the table holds.
            assert states[key] is raw
            assert SessionState.from_json(raw) == state
    return outputs, states


@pytest.mark.parametrize("kind", ["storm", "sim"])
def test_the_cache_changes_no_output_and_no_stored_byte(kind: str) -> None:
    recs = records(kind)
    off = run(recs, 0)
    assert run(recs, 3) == off
    assert run(recs, 4096) == off
    assert any(off[0]), "the traffic raised nothing: the comparison would prove nothing"


def view(sid: str, ts: int) -> bytes:
    return orjson.dumps({"session_id": sid, "type": "page_view", "ts": ts, "page": f"/{ts}"})


def test_a_state_another_hand_wrote_is_decoded_not_reused() -> None:
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(Engine.from_config(), states, Metrics(), max_record_bytes=4096)
    pipeline.process(b"s", view("s", 1), partition=0, offset=1)
    # Another worker owned the session meanwhile (a rebalance) and wrote its own state.
    elsewhere = SessionState("s", seq=40, applied={"0": 50})
    states[b"s"] = elsewhere.encode()[0]
    pipeline.process(b"s", view("s", 2), partition=0, offset=51)
    assert SessionState.from_json(states[b"s"]).seq == 41


def test_a_session_the_sweep_ended_starts_afresh() -> None:
    states: dict[bytes, bytes] = {}
    pipeline = Pipeline(Engine.from_config(), states, Metrics(), max_record_bytes=4096,
                        wall_clock=None)
    for offset in range(3):
        pipeline.process(b"s", view("s", 1000 + offset), partition=0, offset=offset,
                         timestamp_s=1.0 + offset)
    pipeline.process(b"t", view("t", 10**7), partition=0, offset=3, timestamp_s=10_000.0)
    (expired,) = pipeline.sweep(60_000)
    assert expired.session_id == "s"
    assert SessionState.from_json(states[b"s"]).ended_at is not None  # its tombstone
    pipeline.process(b"s", view("s", 10**7 + 1), partition=0, offset=4, timestamp_s=10_001.0)
    state = SessionState.from_json(states[b"s"])
    assert (state.seq, state.ended_at) == (1, None)
