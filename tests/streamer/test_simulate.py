"""The synthetic traffic generator: reproducible, valid, and labelled exactly."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import orjson
import pytest

from detectors.events import decode_record, url_path, validate_event
from detectors.registry import REGISTRY
from detectors.session import Engine, SessionState
from streamer.tools.simulate import (
    DEFAULT_START_TS,
    EPISODES,
    SimSession,
    generate,
    interleave,
    to_records,
    write_jsonl,
)

QUALITY_SESSIONS = 2000


@pytest.fixture(scope="module")
def sessions() -> list[SimSession]:
    return list(generate(seed=1, sessions=QUALITY_SESSIONS))


def _dump(sessions: list[SimSession]) -> bytes:
    return orjson.dumps(
        [[s.session_id, s.events, s.labels, s.friction] for s in sessions]
    ) + b"".join(value for _, value in interleave(sessions))


def _fired(session: SimSession, engine: Engine) -> dict[str, int]:
    """Detector -> ts of its first signal in the session.

    Only the registry's detectors: the session engine's learned anomaly signal has no
    labels to agree with (it is judged by its own tests).
    """
    state = SessionState(session.session_id)
    first: dict[str, int] = {}
    for event in session.events:
        for signal in engine.step(state, dict(event)).signals:
            if signal.detector in REGISTRY:
                first.setdefault(signal.detector, signal.ts)
    return first


def test_same_seed_is_byte_identical_and_other_seeds_differ() -> None:
    a = _dump(list(generate(seed=42, sessions=200)))
    assert a == _dump(list(generate(seed=42, sessions=200)))
    assert a != _dump(list(generate(seed=43, sessions=200)))


def test_a_session_depends_only_on_seed_and_index() -> None:
    short = list(generate(seed=5, sessions=20))
    assert short == list(generate(seed=5, sessions=300))[:20]
    assert [s.session_id for s in short[:2]] == ["sim-5-000000", "sim-5-000001"]


def test_start_ts_shifts_time_and_nothing_else() -> None:
    base = list(generate(seed=3, sessions=30))
    moved = list(generate(seed=3, sessions=30, start_ts=DEFAULT_START_TS + 1000))
    assert base[0].events[0]["ts"] == DEFAULT_START_TS
    for a, b in zip(base, moved, strict=True):
        assert [e["ts"] + 1000 for e in a.events] == [e["ts"] for e in b.events]
        assert [lb["onset_ts"] + 1000 for lb in a.labels] == [lb["onset_ts"] for lb in b.labels]


def as_decoded(event: dict) -> dict:
    """The simulator's event as decoding keeps it: URLs without query strings (they are
    there as confounders, and decoding strips them: they may carry personal data)."""
    return {k: url_path(v, keep_origin=True) if k in ("page", "url", "referrer") else v
            for k, v in event.items()}


def test_every_event_is_valid_v1_with_unique_ids_in_ts_order(
    sessions: list[SimSession],
) -> None:
    event_ids = set()
    for s in sessions:
        assert s.events[0]["type"] == "page_view"
        ts = [e["ts"] for e in s.events]
        assert ts == sorted(ts)
        for event in s.events:
            assert validate_event(dict(event)) == as_decoded(event)
            assert event["session_id"] == s.session_id
            assert isinstance(event["page"], str) and event["page"].startswith("/")
            event_ids.add(event["event_id"])
    assert len(event_ids) == sum(len(s.events) for s in sessions)


def test_sessions_overlap_like_live_traffic(sessions: list[SimSession]) -> None:
    starts = [s.events[0]["ts"] for s in sessions]
    gaps = [b - a for a, b in pairwise(starts)]
    assert min(gaps) >= 200 and max(gaps) <= 800
    # most sessions are still going when the next one starts
    overlapping = sum(a.events[-1]["ts"] > b.events[0]["ts"] for a, b in pairwise(sessions))
    assert overlapping > 0.9 * (len(sessions) - 1)


def test_friction_share_is_roughly_honoured(sessions: list[SimSession]) -> None:
    share = sum(s.friction for s in sessions) / len(sessions)
    assert 0.26 <= share <= 0.34
    assert all(bool(s.labels) == s.friction for s in sessions)
    assert not any(s.friction for s in generate(seed=2, sessions=100, friction_share=0.0))
    assert all(s.friction for s in generate(seed=2, sessions=100, friction_share=1.0))
    with pytest.raises(ValueError, match="friction_share"):
        next(generate(seed=1, sessions=1, friction_share=1.5))


def _confounders(s: SimSession) -> Counter[str]:
    """What a clean session does that a naive detector would take for friction."""
    seen: Counter[str] = Counter()
    clicks = [e for e in s.events if e["type"] == "click"]
    seen["slow_reaction"] += any(1000 <= (e.get("reaction_ms") or 0) <= 2000 for e in clicks)
    for a, b in pairwise(clicks):
        if a["target"] == b["target"]:
            quick = b["ts"] - a["ts"] < 1000
            text_input = a["target"].startswith(("input", "textarea"))
            pager = (a.get("text") or "").strip().lower() in ("+", "−", "-", "next", "prev",
                                                               "previous", ">", "<", "›", "‹")
            seen[
                "triple_select"
                if quick and text_input
                else "quick_stepper_or_pager"
                if quick and pager
                else "double_click"
                if quick
                else "spaced_repeat"
            ] += 1
    for e in clicks:
        if "reaction_ms" not in e:
            target = e["target"]
            seen[
                "no_reaction_new_tab"
                if "_blank" in target or e.get("opens_new_tab")
                else "no_reaction_download"
                if "download" in target or e.get("download")
                else "no_reaction_file_picker"
                if "type=file" in target
                else "no_reaction_form_field"
            ] += 1
    kinds = [e["type"] for e in s.events]
    seen["fail_then_purchase"] += "checkout_failed" in kinds and "purchase" in kinds
    seen["help_page_no_request"] += "/help" in {e["page"] for e in s.events}
    seen["purchase"] += "purchase" in kinds
    seen["session_end"] += kinds[-1] == "session_end"
    seen["js_error_no_click"] += "js_error" in kinds
    statuses = [e["status"] for e in s.events if e["type"] == "http_error"]
    seen["single_5xx"] += sum(st >= 500 for st in statuses) == 1
    seen["some_4xx"] += any(st < 500 for st in statuses)
    fields = Counter(e["field"] for e in s.events if e["type"] == "form_error")
    seen["typo_fixed"] += bool(fields)
    results = [e["results"] for e in s.events if e["type"] == "search"]
    seen["empty_then_good_search"] += any(a == 0 < b for a, b in pairwise(results))
    views = [e for e in s.events if e["type"] == "page_view"]
    seen["quick_back_once"] += any(
        a["page"] == c["page"] != b["page"] and c["ts"] - b["ts"] < 3000
        for a, b, c in zip(views, views[1:], views[2:], strict=False)
    )
    ups = [e for e in s.events if e["type"] == "scroll" and e["direction"] == "up"]
    seen["scroll_back_up"] += bool(ups)
    return seen


def test_every_kind_and_confounder_is_present(sessions: list[SimSession]) -> None:
    episodes = Counter(lb["episode"] for s in sessions for lb in s.labels)
    assert set(episodes) == set(EPISODES)
    assert sum(len({lb["episode"] for lb in s.labels}) == 2 for s in sessions) > 20
    seen: Counter[str] = Counter()
    for s in sessions:
        if not s.friction:
            seen.update(_confounders(s))
    for name in (
        "slow_reaction",
        "triple_select",
        "quick_stepper_or_pager",
        "double_click",
        "spaced_repeat",
        "no_reaction_new_tab",
        "no_reaction_download",
        "no_reaction_file_picker",
        "no_reaction_form_field",
        "fail_then_purchase",
        "help_page_no_request",
        "purchase",
        "session_end",
        "js_error_no_click",
        "single_5xx",
        "some_4xx",
        "typo_fixed",
        "empty_then_good_search",
        "quick_back_once",
        "scroll_back_up",
    ):
        assert seen[name] >= 20, (name, seen)


def test_signals_match_labels_exactly(sessions: list[SimSession]) -> None:
    """The key quality check: every label fires at its onset, nothing else fires."""
    engine = Engine.from_config()
    fired: dict[tuple[str, str], int] = {}
    for s in sessions:
        for detector, ts in _fired(s, engine).items():
            fired[s.session_id, detector] = ts
    labelled: dict[tuple[str, str], int] = {}
    for s in sessions:
        for label in s.labels:
            key = (label["session_id"], label["type"])
            assert key not in labelled, f"two onsets for {key}"
            labelled[key] = label["onset_ts"]
    false_positives = sorted(set(fired) - set(labelled))
    missed = sorted(set(labelled) - set(fired))
    assert not false_positives and not missed, (false_positives[:5], missed[:5])
    late_or_early = {k: (labelled[k], fired[k]) for k in labelled if fired[k] != labelled[k]}
    assert not late_or_early, list(late_or_early.items())[:5]
    assert {d for _, d in labelled} == set(REGISTRY)


def test_beacons_carry_each_session_in_order(sessions: list[SimSession]) -> None:
    for s in sessions[:300]:
        records = to_records(s)
        seen = []
        for key, value in records:
            assert key == s.session_id.encode()
            events, errors = decode_record(value, key=key)
            assert not errors and 1 <= len(events) <= 20
            seen.extend(events)
        assert seen == [as_decoded(e) for e in s.events]
    assert to_records(sessions[0]) == to_records(sessions[0])


def test_interleave_orders_beacons_by_event_time(sessions: list[SimSession]) -> None:
    some = sessions[:300]
    records = interleave(some)
    assert len(records) == sum(len(to_records(s)) for s in some)
    firsts = [orjson.loads(value)[0]["ts"] for _, value in records]
    assert firsts == sorted(firsts)
    per_session: dict[bytes, list[bytes]] = {}
    for key, value in records:
        per_session.setdefault(key, []).append(value)
    assert all(per_session[s.session_id.encode()] == [v for _, v in to_records(s)] for s in some)
    # traffic really interleaves: consecutive beacons mostly come from different sessions
    switches = sum(a[0] != b[0] for a, b in pairwise(records))
    assert switches > 0.8 * len(records)


def test_write_jsonl(tmp_path: Path) -> None:
    some = list(generate(seed=9, sessions=50, friction_share=0.5))
    n_events, n_labels = write_jsonl(some, tmp_path / "events.jsonl", tmp_path / "labels.jsonl")
    events = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    labels = [orjson.loads(line) for line in (tmp_path / "labels.jsonl").read_bytes().splitlines()]
    assert n_events == len(events) == sum(len(s.events) for s in some)
    assert n_labels == len(labels) == sum(len(s.labels) for s in some)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert sorted(events, key=lambda e: e["event_id"]) == sorted(
        (e for s in some for e in s.events), key=lambda e: e["event_id"]
    )
    assert {(lb["session_id"], lb["type"]) for lb in labels} == {
        (lb["session_id"], lb["type"]) for s in some for lb in s.labels
    }
    assert set(labels[0]) == {"session_id", "type", "onset_ts", "episode"}
