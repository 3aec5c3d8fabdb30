"""Outcomes end to end: simulated conversions with causes, one outcome per replayed
session, the risk model's honest AUC (at decision too), and an uplift report that finds
the effect that is there, checked against the simulator's potential outcomes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.registry import REGISTRY
from detectors.session import Engine, Outcome, SessionState
from streamer.cli import main
from streamer.metrics import Metrics
from streamer.tools.evaluate import model_from_metrics, model_from_text, model_report
from streamer.tools.replay import replay_lines
from streamer.tools.simulate import (
    POTENTIAL_OUTCOMES,
    RulesAction,
    SimSession,
    generate,
    ground_truth,
    write_jsonl,
)
from tests.conftest import serving_metrics

MAX_BYTES = 1 << 20
#: Longer than any pause inside a simulated session (at most ~140 s), so a sweep with
#: this timeout only ever ends sessions that are over.
IDLE_MS = 180_000


def _kinds(s: SimSession) -> list[str]:
    return [e["type"] for e in s.events]


def _rate(sessions: list[SimSession]) -> float:
    return sum(s.converted for s in sessions) / len(sessions)


def _near(sessions: list[SimSession], action: str | dict[str, str] = "none") -> bool:
    """Is the conversion rate within 3.5 standard errors of the world's mean probability
    (of ``action``, or of each session's action in a dict)?"""
    ps = [s.outcomes.p[action if isinstance(action, str) else action[s.session_id]]  # type: ignore[union-attr]
          for s in sessions]
    mean = sum(ps) / len(ps)
    variance = sum(p * (1 - p) for p in ps) / len(ps)
    return abs(_rate(sessions) - mean) <= 3.5 * math.sqrt(variance / len(sessions))


@pytest.fixture(scope="module")
def effect_sessions() -> list[SimSession]:
    return list(generate(seed=21, sessions=3000, nudge_effect=0.2, holdout_share=0.3))


# -- the simulator's outcome model ---------------------------------------------------------
def test_every_session_ends_converted_or_abandoned(effect_sessions: list[SimSession]) -> None:
    ended, silent = 0, 0
    for s in effect_sessions:
        kinds = _kinds(s)
        assert kinds.count("purchase") == (1 if s.converted else 0)
        if s.converted:  # paid after a checkout, nothing but the confirmation after it
            bought = kinds.index("purchase")
            assert "checkout_attempt" in kinds[:bought]
            assert set(kinds[bought + 1:]) <= {"page_view", "session_end"}
        else:
            ended += kinds[-1] == "session_end"
            silent += kinds[-1] != "session_end"
        assert kinds.count("session_end") <= 1 and "session_end" not in kinds[:-1]
    # both ways of leaving are common: a goodbye, or silence for the idle sweep to find
    assert ended > 0.5 * (ended + silent) and silent > 0.3 * (ended + silent)


def test_conversion_follows_the_world_and_clean_leavers_leave_early() -> None:
    sessions = list(generate(seed=5, sessions=4000))
    clean = [s for s in sessions if not s.friction]
    rough = [s for s in sessions if s.friction]
    assert _near(clean) and _near(rough)  # no effect configured: everyone converts at p0
    # Friction costs conversions at the same depth of the funnel, and depth is intent.
    for stage in (1, 2):
        at = [s for s in clean if s.shopper and s.shopper.stage == stage]
        hit = [s for s in rough if s.shopper and s.shopper.stage == stage]
        assert _rate(at) > _rate(hit) + 0.05, stage
    at_checkout = [s for s in rough if s.shopper and s.shopper.stage == 3]
    browsing = [s for s in rough if s.shopper and s.shopper.stage <= 1]
    assert _rate(at_checkout) > 0.4 > 0.1 > _rate(browsing)
    leavers = [s for s in clean if not s.converted]
    buyers = [s for s in clean if s.converted]
    no_checkout = sum("checkout_attempt" not in _kinds(s) for s in leavers) / len(leavers)
    assert no_checkout > 0.95  # they leave before paying; some from the checkout page
    assert sum("/checkout" in {e["page"] for e in s.events} for s in leavers) > 0.15 * len(leavers)
    def mean_events(group: list[SimSession]) -> float:
        return sum(len(s.events) for s in group) / len(group)

    assert mean_events(leavers) < 0.6 * mean_events(buyers)


def test_a_uniform_effect_reaches_the_sessions_the_rules_treat(
    effect_sessions: list[SimSession],
) -> None:
    """The events realise what the rules alone deliver: +0.2 for those they reach."""
    rules = RulesAction(holdout_share=0.3)
    action = {s.session_id: rules(s.events[: s.ending_at]) for s in effect_sessions}
    treated = [s for s in effect_sessions if action[s.session_id] != "none"]
    friction_held = [s for s in effect_sessions if s.friction and s.holdout]
    assert len(friction_held) == pytest.approx(
        0.3 * sum(s.friction for s in effect_sessions), rel=0.15)
    # Held out, nothing reaches them, except the person a customer asked for.
    asked = {s.session_id for s in friction_held if any(lb["type"] == "help_request" for lb in s.labels)}
    assert {s.session_id for s in friction_held if action[s.session_id] != "none"} == asked
    held = [s for s in friction_held if s.session_id not in asked]
    assert _near(treated, action) and _near(held)
    assert all(s.outcomes and s.outcomes.p[a] == pytest.approx(min(0.99, s.outcomes.p["none"] + 0.2))
               for s in effect_sessions for a in ("nudge", "handoff"))
    assert all(s.action == action[s.session_id] for s in effect_sessions if s.action is not None)


def test_the_effect_changes_outcomes_only(effect_sessions: list[SimSession]) -> None:
    """Same seed without the effect: same shoppers, same friction, same labels; only
    some sessions an intervention reached now buy instead of leaving."""
    plain = list(generate(seed=21, sessions=3000, holdout_share=0.3))
    flipped = 0
    for a, b in zip(plain, effect_sessions, strict=True):
        assert (a.session_id, a.labels, a.friction, a.holdout, a.shopper) == (
            b.session_id, b.labels, b.friction, b.holdout, b.shopper)
        if a.converted != b.converted:
            assert b.converted and b.action in ("nudge", "handoff")
            flipped += 1
        else:
            assert a.events == b.events
    assert flipped > 0


def test_heterogeneous_effects_differ_by_context_and_realise_by_action() -> None:
    sessions = list(generate(seed=6, sessions=3000, effects="heterogeneous"))
    effects = {(s.shopper.primary.kind if s.shopper and s.shopper.primary else None,
                s.shopper.stage if s.shopper else None, a): round(s.outcomes.p[a] - s.outcomes.p["none"], 6)
               for s in sessions if s.outcomes for a in ("nudge", "handoff")}
    assert any(v < 0 for v in effects.values()) and max(effects.values()) >= 0.3
    for s in sessions:
        assert s.outcomes is not None
        for a in ("none", "nudge", "handoff"):  # the shared draw: y_a = fate < p_a
            converted, events = s.realise(a)
            assert converted == s.outcomes.y[a]
            assert ("purchase" in [e["type"] for e in events]) == converted
            assert events[: s.ending_at] == s.events[: s.ending_at]
    with pytest.raises(ValueError, match="nudge_effect is the size of a uniform effect"):
        next(generate(seed=1, sessions=1, effects="heterogeneous", nudge_effect=0.1))


def test_ground_truth_is_recoverable_from_the_written_files(
    effect_sessions: list[SimSession], tmp_path: Path
) -> None:
    some = effect_sessions[:400]
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    write_jsonl(some, events, labels)
    truth = ground_truth(map(orjson.loads, events.read_bytes().splitlines()),
                         map(orjson.loads, labels.read_bytes().splitlines()), holdout_share=0.3)
    assert truth == {s.session_id: (s.converted, s.friction, s.holdout) for s in some}
    assert {sid for sid, t in truth.items() if t.treated} == {
        s.session_id for s in some if s.friction and not s.holdout
    }


def test_outcome_events_never_fire_a_rule(effect_sessions: list[SimSession]) -> None:
    """With outcomes drawn, labels still equal exactly what the rule detectors fire."""
    engine = Engine.from_config({"model": {"enabled": False}})
    for s in effect_sessions[:1500]:
        state = SessionState(s.session_id)
        first: dict[str, int] = {}
        for event in s.events:
            for signal in engine.step(state, dict(event)).signals:
                if signal.detector in REGISTRY:
                    first.setdefault(signal.detector, signal.ts)
        assert first == {label["type"]: label["onset_ts"] for label in s.labels}, s.session_id


def test_simulate_cli_takes_the_effect_and_refuses_impossible_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    assert main(["simulate", "--seed", "2", "--sessions", "50", "--nudge-effect", "0.3",
                 "--holdout-share", "0.5", "--events-out", str(events),
                 "--labels-out", str(labels)]) == 0
    written = ground_truth(map(orjson.loads, events.read_bytes().splitlines()),
                           map(orjson.loads, labels.read_bytes().splitlines()), holdout_share=0.5)
    expected = generate(seed=2, sessions=50, nudge_effect=0.3, holdout_share=0.5)
    assert written == {s.session_id: (s.converted, s.friction, s.holdout) for s in expected}
    assert main(["simulate", "--sessions", "5", "--nudge-effect", "0.9"]) == 2
    assert "nudge_effect = 0.9 must be between" in capsys.readouterr().err
    assert main(["simulate", "--sessions", "5", "--holdout-share", "1.5"]) == 2
    assert "holdout_share = 1.5" in capsys.readouterr().err


# -- replay: every session gets one outcome ---------------------------------------------
class _Recording:
    """An ``on_outcome`` callback noting the watermark (largest ts stepped so far)
    whenever a session is expired."""

    def __init__(self) -> None:
        self.now = 0
        self.expired: list[tuple[str, int, int | None]] = []

    def __call__(self, state: SessionState, event: dict[str, Any] | None, _: Outcome) -> None:
        if event is not None:
            self.now = max(self.now, event["ts"])
        else:
            self.expired.append((state.session_id, self.now, state.last_ts))


def _lines(sessions: list[SimSession], tmp_path: Path) -> list[bytes]:
    events = tmp_path / "events.jsonl"
    write_jsonl(sessions, events, tmp_path / "labels.jsonl")
    return events.read_bytes().splitlines()


def _outcomes(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["result"], s.labels["group"]): s.value
        for family in metrics.registry.collect() for s in family.samples
        if s.name == "frictionwatch_outcomes_total"
    }


def test_replay_gives_every_session_exactly_one_outcome(tmp_path: Path) -> None:
    sessions = list(generate(seed=8, sessions=1000, nudge_effect=0.2, holdout_share=0.3))
    recording = _Recording()
    engine = Engine.from_config({"policy": {"holdout_share": 0.3}}).observed(on_outcome=recording)
    metrics = Metrics()
    list(replay_lines(iter(_lines(sessions, tmp_path)), engine, max_record_bytes=MAX_BYTES,
                      idle_ms=IDLE_MS, sweep_every=200, metrics=metrics))
    counts = _outcomes(metrics)
    assert sum(counts.values()) == 1000
    assert sum(v for (result, _), v in counts.items() if result == "converted") == sum(
        s.converted for s in sessions)
    assert engine.models is not None and engine.models.risk.learned == 1000
    # Silent sessions ended during the replay, idle past the timeout of event time ...
    during = [(sid, now, last) for sid, now, last in recording.expired if now < recording.now]
    assert len(during) > 100
    assert all(last is not None and now - last > IDLE_MS for _, now, last in during)
    # ... and what was still open at the end of the input was ended then.
    assert any(now == recording.now for _, now, _ in recording.expired)
    silent = {s.session_id for s in sessions if _kinds(s)[-1] != "session_end"}
    assert {sid for sid, _, _ in recording.expired} == silent


def test_replay_output_does_not_depend_on_the_sweep(tmp_path: Path) -> None:
    """Sweeps end sessions and teach the model, but emit no lines of their own."""
    lines = _lines(list(generate(seed=9, sessions=200)), tmp_path)
    rules = {"model": {"enabled": False}}
    often = list(replay_lines(iter(lines), Engine.from_config(rules), max_record_bytes=MAX_BYTES,
                              idle_ms=IDLE_MS, sweep_every=10))
    never = list(replay_lines(iter(lines), Engine.from_config(rules), max_record_bytes=MAX_BYTES,
                              sweep_every=10**9))
    assert often == never and often


# -- the risk model's AUC: `simulate --seed 1 --sessions 10000`, then replay --------------
def test_risk_auc_at_decision_after_10000_simulated_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13's first acceptance: the scores decisions use rank abandonment (>= 0.80)."""
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    assert main(["simulate", "--seed", "1", "--sessions", "10000", "--events-out", str(events),
                 "--labels-out", str(labels)]) == 0
    capsys.readouterr()
    assert main(["replay", str(events), "--labels", str(labels), "--json"]) == 0
    model = orjson.loads(capsys.readouterr().out)["model"]
    # Rolling ROC AUC over the last 2000 outcomes, each scored before it was learned: of
    # those scored at a decision, and of all (most scored only when the outcome came).
    assert model["risk_auc_at_decision"] >= 0.8
    assert model["risk_auc"] >= model["risk_auc_at_decision"]
    assert model["outcomes"] == model["outcomes_learned"] == 10000
    assert model["uplift"]["holdout"]["sessions"] == 0  # no holdout configured
    assert model["uplift"]["estimate"] is None and model["targeting"] is None


# -- uplift: the interval finds the effect that is there, and no effect when there is none ---
def _replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], effect: float) -> dict[str, Any]:
    events, labels = tmp_path / f"events-{effect}.jsonl", tmp_path / f"labels-{effect}.jsonl"
    config = tmp_path / "holdout.toml"
    config.write_text("[policy]\nholdout_share = 0.3\n")
    assert main(["simulate", "--seed", "1", "--sessions", "5000", "--nudge-effect", str(effect),
                 "--holdout-share", "0.3", "--events-out", str(events), "--labels-out", str(labels),
                 "--potential-outcomes"]) == 0
    capsys.readouterr()
    assert main(["replay", str(events), "--labels", str(labels), "--config", str(config),
                 "--json"]) == 0
    report: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return report


def test_uplift_interval_contains_the_true_effect_and_excludes_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _replay(tmp_path, capsys, 0.2)
    u, truth = report["model"]["uplift"], report["truth"]
    assert u["treated"]["sessions"] > 800 and u["holdout"]["sessions"] > 300
    assert u["low"] > 0
    # The truth, from the potential outcomes of what the replay decided: +0.2 for nearly
    # every session decided for (less where p0 + 0.2 passes 0.99), within the interval.
    assert 0.18 < truth["true_uplift"] <= 0.2 and truth["true_uplift_within_interval"] is True
    assert truth["sessions"] == 5000 and truth["agree"] > 0.97
    # the potential-outcome lines are no detector's labels
    assert POTENTIAL_OUTCOMES not in report["detectors"]
    assert report["labelled_sessions"] < 2000


def test_uplift_interval_includes_zero_without_an_effect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _replay(tmp_path, capsys, 0.0)
    u, truth = report["model"]["uplift"], report["truth"]
    assert u["low"] <= 0.0 <= u["high"]
    assert truth["true_uplift"] == 0.0 and truth["agree"] == 1.0
    assert truth["converted_realised"] == truth["converted_in_file"]


# -- the report command -----------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("outcomes")
    events, labels, config = root / "events.jsonl", root / "labels.jsonl", root / "h.toml"
    sessions = list(generate(seed=4, sessions=800, nudge_effect=0.3, holdout_share=0.4))
    write_jsonl(sessions, events, labels)
    config.write_text("[policy]\nholdout_share = 0.4\n")
    return events, labels, config


def test_replay_table_and_json_show_the_model(
    small: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels, config = small
    assert main(["replay", str(events), "--labels", str(labels), "--config", str(config),
                 "--json"]) == 0
    model = orjson.loads(capsys.readouterr().out)["model"]
    assert set(model["uplift"]) >= {"estimate", "low", "high", "treated", "holdout"}
    assert model["outcomes"] == 800 and 0.5 < model["risk_auc"] <= 1.0
    assert main(["replay", str(events), "--labels", str(labels), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"{model['risk_auc']:.4f}" in text and f"{model['uplift']['estimate']:.4f}" in text
    assert "uplift (treated - holdout)" in text and "uplift 95% low" in text

    off = tmp_path / "off.toml"
    off.write_text("[model]\nenabled = false\n")
    assert main(["replay", str(events), "--labels", str(labels), "--config", str(off),
                 "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["model"] is None


def test_report_offline_prints_auc_conversion_and_uplift(
    small: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events, _, config = small
    assert main(["report", str(events), "--config", str(config), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    u = report["uplift"]
    assert report["outcomes"] == 800 and report["models"] is True
    assert u["treated"]["sessions"] and u["holdout"]["sessions"] and u["low"] < u["estimate"] < u["high"]
    assert main(["report", str(events), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"{report['risk_auc']:.4f}" in text
    assert f"({u['treated']['converted']} / {u['treated']['sessions']})" in text
    assert f"95% CI [{u['low']:+.4f}, {u['high']:+.4f}]" in text
    # without the holdout configured, there is nothing to compare with, and it says so
    assert main(["report", str(events)]) == 0
    assert "no holdout sessions: set [policy] holdout_share" in capsys.readouterr().out


def test_report_live_reads_a_workers_metrics(
    small: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker's /metrics gives the same report as the replay that produced them."""
    events, _, _ = small
    engine = Engine.from_config({"policy": {"holdout_share": 0.4}})
    metrics = Metrics()
    list(replay_lines(iter(events.read_bytes().splitlines()), engine, max_record_bytes=MAX_BYTES,
                      metrics=metrics))
    offline = model_from_metrics(metrics, engine)
    with serving_metrics(metrics.registry) as url:
        assert main(["report", "--metrics", url, "--json"]) == 0
        live = orjson.loads(capsys.readouterr().out)
        assert main(["report", "--metrics", url]) == 0
        text = capsys.readouterr().out
    assert live == offline
    assert live["risk_auc"] == round(engine.models.risk.auc, 4)  # type: ignore[union-attr]
    assert "conversion holdout" in text and "95% CI" in text


def test_report_live_adds_up_workers() -> None:
    def text(converted: int, abandoned: int, auc: float, learned: int) -> str:
        return (
            f'frictionwatch_outcomes_total{{result="converted",group="treated"}} {converted}\n'
            f'frictionwatch_outcomes_total{{result="abandoned",group="treated"}} {abandoned}\n'
            f'frictionwatch_outcomes_total{{result="converted",group="holdout"}} 1\n'
            f'frictionwatch_outcomes_total{{result="abandoned",group="holdout"}} 9\n'
            f"frictionwatch_model_risk_auc {auc}\n"
            f"frictionwatch_model_outcomes_learned {learned}\n"
        )

    both = model_from_text([text(30, 70, 0.9, 300), text(10, 10, 0.6, 100)])
    assert both["uplift"]["treated"] == {"converted": 40, "sessions": 120, "rate": 40 / 120}
    assert both["uplift"]["holdout"]["sessions"] == 20 and both["outcomes"] == 140
    assert both["risk_auc"] == pytest.approx((0.9 * 300 + 0.6 * 100) / 400)
    assert [w["risk_auc"] for w in both["workers"]] == [0.9, 0.6]
    # models off: the gauge sits at 0 with nothing learned, which is no AUC at all
    assert model_from_text([text(3, 7, 0.0, 0)])["risk_auc"] is None


def test_report_needs_a_file_or_metrics_and_names_what_failed(
    small: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report"]) == 2
    assert "FILE" in capsys.readouterr().err
    assert main(["report", str(small[0]), "--metrics", "http://127.0.0.1:9/metrics"]) == 2
    capsys.readouterr()
    assert main(["report", "--metrics", "http://127.0.0.1:9/metrics"]) == 2
    assert "http://127.0.0.1:9/metrics" in capsys.readouterr().err


def test_model_report_counts_groups() -> None:
    counts = {("converted", "none"): 5, ("abandoned", "none"): 15, ("converted", "treated"): 2}
    r = model_report(counts, risk_auc=None)
    assert r["outcomes"] == 22 and r["none"]["rate"] == 0.25 and r["risk_auc"] is None
    assert r["uplift"]["estimate"] is None  # no holdout
