"""The simulated world's causal model, and its potential outcomes in the labels file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamer.tools import world
from streamer.tools.evaluate import read_labels
from streamer.tools.simulate import POTENTIAL_OUTCOMES, generate, write_jsonl
from streamer.tools.world import Friction, Shopper


def shopper_factory(stage: int, kind: str | None = None, *, severity: float = 0.5,
                    recovered: bool = False, minutes: float = 0.5, payment: str | None = None,
                    items: int = 0) -> Shopper:
    frictions = () if kind is None else (
        Friction(kind, severity, recovered, 0, round(minutes * 60_000), payment),)
    return Shopper(stage, items, frictions)


def p0(shopper: Shopper) -> float:
    return world.conversion_probability(shopper, "none")


def test_intent_raises_conversion_and_friction_lowers_it() -> None:
    assert p0(shopper_factory(0)) < p0(shopper_factory(1)) < p0(shopper_factory(2)) < p0(
        shopper_factory(3))
    assert p0(shopper_factory(2, items=3)) > p0(shopper_factory(2, items=0))
    clean = p0(shopper_factory(3, items=1))
    declined = p0(shopper_factory(3, "checkout_failure", payment="decline", items=1))
    searched = p0(shopper_factory(3, "search_struggle", items=1))
    assert clean > searched > declined  # a declined card costs more than an empty search
    worse = p0(shopper_factory(3, "checkout_failure", severity=1.0, payment="decline", items=1))
    assert worse < declined
    assert p0(shopper_factory(2, "http_error_burst", recovered=True)) > p0(
        shopper_factory(2, "http_error_burst"))
    assert p0(shopper_factory(2, "rage_click", minutes=4)) < p0(shopper_factory(2, "rage_click"))


@pytest.mark.parametrize(("shopper", "action", "effect"), [
    (shopper_factory(3, "checkout_failure", payment="decline"), "nudge", 0.22),
    (shopper_factory(3, "checkout_failure", payment="technical"), "nudge", 0.0),
    (shopper_factory(3, "checkout_failure", payment="technical"), "handoff", 0.35),
    (shopper_factory(3, "form_struggle"), "handoff", 0.35),
    (shopper_factory(3, "rage_click"), "handoff", 0.15),
    (shopper_factory(2, "dead_click"), "handoff", 0.08),
    (shopper_factory(1, "dead_click"), "handoff", -0.02),
    (shopper_factory(1, "search_struggle"), "nudge", 0.02),
    (shopper_factory(1, "rage_click"), "nudge", -0.03),
    (shopper_factory(2, "rage_click"), "nudge", 0.05),
    (shopper_factory(1, "help_request"), "handoff", 0.25),
    (shopper_factory(1, "rage_click"), "none", 0.0),
])
def test_heterogeneous_effects_are_the_documented_ones(shopper: Shopper, action: str,
                                                        effect: float) -> None:
    assert world.effect(shopper, action) == effect


def test_potential_outcomes_share_one_draw() -> None:
    paying = shopper_factory(3, "checkout_failure", payment="decline", items=2)
    for fate in (0.0, 0.2, 0.5, 0.7, 0.9, 0.995):
        po = world.potential_outcomes(paying, fate)
        assert po.y == {a: fate < p for a, p in po.p.items()}
        assert po.y["nudge"] >= po.y["none"] and po.y["handoff"] >= po.y["nudge"]  # helpful: monotone
    uniform = world.potential_outcomes(paying, 0.5, effects="uniform", uniform_effect=0.1)
    assert uniform.p["nudge"] == uniform.p["handoff"] == pytest.approx(uniform.p["none"] + 0.1)
    nothing = world.potential_outcomes(paying, 0.5, effects="uniform")
    assert not nothing.varies and len(set(nothing.p.values())) == 1
    assert world.conversion_probability(shopper_factory(3, items=3), "handoff",
                                        effects="uniform", uniform_effect=0.5) == world.P_MAX
    with pytest.raises(ValueError, match="effects"):
        world.conversion_probability(paying, "none", effects="some")
    with pytest.raises(ValueError, match="action"):
        world.effect(paying, "call")


def test_the_generator_reads_the_shopper_off_the_session() -> None:
    for s in generate(seed=9, sessions=300):
        assert s.shopper is not None and s.outcomes is not None
        assert len(s.shopper.frictions) == len({lb["episode"] for lb in s.labels})
        pages = {e["page"] for e in s.events[: s.ending_at] if e["type"] == "page_view"}
        deepest = max((3 if p.startswith("/checkout") else 2 if p.startswith("/cart") else
                       1 if p.startswith("/p/") else 0) for p in pages)
        assert s.shopper.stage == deepest
        for f in s.shopper.frictions:
            assert 0.0 <= f.severity <= 1.0 and f.start_ts <= f.end_ts
            assert (f.payment is not None) == (f.kind == "checkout_failure")


def test_potential_outcomes_go_to_the_labels_file_beside_the_labels(tmp_path: Path) -> None:
    sessions = list(generate(seed=4, sessions=120, effects="heterogeneous", holdout_share=0.2))
    events, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    _, n_labels = write_jsonl(sessions, events, labels, potential_outcomes=True)
    lines = read_labels(labels)  # every line is a valid label line
    outcomes = [lb for lb in lines if lb["type"] == POTENTIAL_OUTCOMES]
    assert len(outcomes) == 120 and len(lines) - len(outcomes) == n_labels == sum(
        len(s.labels) for s in sessions)
    by_id = {s.session_id: s for s in sessions}
    for line in outcomes:
        s = by_id[line["session_id"]]
        assert s.outcomes is not None and line["onset_ts"] == s.events[0]["ts"]
        assert line["y"] == s.outcomes.y and line["converted"] == s.converted
        assert line["action"] == s.action
        if s.action is not None:
            assert line["y"][s.action] == s.converted
    write_jsonl(sessions, None, labels)  # without the flag: the labels alone, as before
    assert all(orjson.loads(x)["type"] != POTENTIAL_OUTCOMES for x in labels.read_bytes().splitlines())
