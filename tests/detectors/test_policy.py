"""The policy: from signals to nothing, a nudge or a human, on event time only."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.base import Signal
from detectors.errors import ConfigError
from detectors.policy import DEFAULT_MESSAGES, Policy, in_holdout, intervention_id


def rage(ts: int, strength: float = 0.7) -> Signal:
    return Signal("rage_click", strength, ts=ts)


def help_asked(ts: int) -> Signal:
    return Signal("help_request", 1.0, ts=ts, action="handoff")


def checkout_handoff(ts: int) -> Signal:
    return Signal("checkout_failure", 1.0, ts=ts, action="handoff")


def kinds(policy: Policy, batches: list[list[Signal]], session_id: str = "s1") -> list[Any]:
    """Decide each batch in order (seq = position); the kind decided or None."""
    state: dict[str, Any] = {}
    return [
        getattr(policy.decide(state, session_id, seq, signals), "kind", None)
        for seq, signals in enumerate(batches, start=1)
    ]


def test_no_signals_no_decision() -> None:
    state: dict[str, Any] = {}
    assert Policy().decide(state, "s1", 1, []) is None
    assert state == {}


def test_a_nudge_carries_reasons_message_and_risk() -> None:
    weak, strong = Signal("dead_click", 0.35, ts=90), rage(100)
    decision = Policy().decide({}, "s1", 4, [weak, strong])
    assert decision is not None
    # Both signals count, the earlier one decayed by 10 ms of its 120 s half-life.
    assert decision.score == pytest.approx(0.35 * 0.5 ** (10 / 120_000) + 0.7, abs=1e-4)
    assert (decision.kind, decision.ts, decision.delivered) == ("nudge", 100, True)
    assert decision.risk == pytest.approx(decision.score / 1.5, abs=1e-4)
    assert decision.reasons == (strong, weak)  # strongest first
    assert decision.message == DEFAULT_MESSAGES["rage_click"]


@pytest.mark.parametrize(("gap", "second"), [(59_999, None), (60_000, "nudge")])
def test_cooldown_boundary(gap: int, second: str | None) -> None:
    assert kinds(Policy(cooldown_ms=60_000), [[rage(1000)], [rage(1000 + gap)]]) == [
        "nudge",
        second,
    ]


def test_cooldown_is_event_time_not_arrival_order() -> None:
    # An earlier-stamped signal after a nudge is inside the cooldown, never a negative gap.
    assert kinds(Policy(), [[rage(100_000)], [rage(50_000)]]) == ["nudge", None]


def test_cap_on_interventions() -> None:
    batches = [[rage(t * 60_000)] for t in range(5)]
    assert kinds(Policy(max_interventions=2), batches) == ["nudge", "nudge", None, None, None]


def test_help_request_bypasses_the_cap_and_the_handoff_latch() -> None:
    batches = [[rage(0)], [help_asked(1)], [help_asked(2)], [rage(10**7)], [help_asked(3)]]
    assert kinds(Policy(max_interventions=1), batches) == [
        "nudge",
        "handoff",
        "handoff",
        None,
        "handoff",
    ]


def test_help_request_ignores_the_cooldown() -> None:
    assert kinds(Policy(), [[rage(0)], [help_asked(1)]]) == ["nudge", "handoff"]


def test_nothing_but_help_after_a_handoff() -> None:
    batches = [
        [checkout_handoff(0)],
        [rage(10**8)],
        [checkout_handoff(10**8 + 1)],
        [help_asked(10**8 + 2)],
    ]
    assert kinds(Policy(), batches) == ["handoff", None, None, "handoff"]


def test_handoff_message_and_help_among_other_signals() -> None:
    decision = Policy().decide({}, "s1", 1, [rage(5, 0.9), help_asked(6)])
    assert decision is not None and decision.kind == "handoff"
    assert decision.message == DEFAULT_MESSAGES["handoff"] and decision.ts == 6


@pytest.mark.parametrize(("strength", "kind"), [(0.49, None), (0.5, "nudge"), (1.0, "nudge")])
def test_nudge_threshold(strength: float, kind: str | None) -> None:
    assert kinds(Policy(nudge_threshold=0.5), [[rage(0, strength)]]) == [kind]


def test_a_requested_handoff_does_not_need_the_threshold() -> None:
    weak_handoff = Signal("checkout_failure", 0.1, ts=0, action="handoff")
    assert kinds(Policy(nudge_threshold=0.9), [[weak_handoff]]) == ["handoff"]


def test_a_refused_nudge_only_remembers_the_score() -> None:
    state: dict[str, Any] = {}
    assert Policy().decide(state, "s1", 1, [rage(0, 0.1)]) is None
    assert state == {"score": 0.1, "score_ts": 0}


def test_the_score_decays_with_event_time() -> None:
    weak = [[Signal("dead_click", 0.3, ts=t)] for t in (0, 5_000)]
    assert kinds(Policy(), weak) == [None, "nudge"]  # 0.3 + 0.3 close together
    far = [[Signal("dead_click", 0.3, ts=t)] for t in (0, 600_000)]
    assert kinds(Policy(), far) == [None, None]  # five half-lives apart: 0.3 + 0.009


def test_a_nudge_that_did_not_help_escalates_to_a_handoff() -> None:
    batches = [[rage(0)], [rage(10_000)], [rage(20_000)]]
    assert kinds(Policy(), batches) == ["nudge", None, "handoff"]
    # Without the earlier nudge the same score only nudges: escalation needs a try first.
    assert kinds(Policy(nudge_threshold=2.5, handoff_threshold=2.6), [[rage(0, 3.0)]]) == [
        "nudge"
    ]


def test_weights_scale_a_detector() -> None:
    assert kinds(Policy(weights={"rage_click": 0.5}), [[rage(0)]]) == [None]
    assert kinds(Policy(weights={"rage_click": 2}), [[rage(0, 0.3)]]) == ["nudge"]


def test_config_section_with_unknown_or_bad_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key policy\.cooldown \(known: "):
        Policy.from_config({"cooldown": 5})
    with pytest.raises(ConfigError, match=r"policy\.handoff_threshold = 0\.2 must be >="):
        Policy.from_config({"handoff_threshold": 0.2})
    with pytest.raises(ConfigError, match=r"policy\.weights\.rage_click"):
        Policy.from_config({"weights": {"rage_click": -1}})
    assert Policy.from_config({"cooldown_ms": 5}).cooldown_ms == 5


def test_custom_messages_fall_back_to_defaults() -> None:
    policy = Policy(messages={"rage_click": "Stuck?"})
    assert policy.decide({}, "s1", 1, [rage(0)]).message == "Stuck?"  # type: ignore[union-attr]
    assert policy.messages["handoff"] == [DEFAULT_MESSAGES["handoff"]]
    unnamed = policy.decide({}, "s1", 1, [Signal("new_detector", 0.8, ts=0)])
    assert unnamed is not None and unnamed.message == DEFAULT_MESSAGES["default"]


# -- holdout -------------------------------------------------------------------------

SESSIONS = [f"session-{i}" for i in range(10_000)]


def test_holdout_share_zero_and_one() -> None:
    assert not any(in_holdout(s, 0.0) for s in SESSIONS)
    assert all(in_holdout(s, 1.0) for s in SESSIONS)


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5])
def test_holdout_share_over_many_sessions(share: float) -> None:
    held = sum(in_holdout(s, share) for s in SESSIONS) / len(SESSIONS)
    assert abs(held - share) < 0.02  # > 4 standard deviations at n = 10k
    assert [in_holdout(s, share) for s in SESSIONS[:50]] == [
        in_holdout(s, share) for s in SESSIONS[:50]
    ]


def test_holdout_is_nested_as_the_share_grows() -> None:
    # A session held out at 10 % stays held out at 30 %: raising the share only adds.
    assert all(in_holdout(s, 0.3) for s in SESSIONS if in_holdout(s, 0.1))


def test_holdout_decisions_are_recorded_but_not_delivered() -> None:
    held = next(s for s in SESSIONS if in_holdout(s, 0.3))
    shown = next(s for s in SESSIONS if not in_holdout(s, 0.3))
    policy = Policy(holdout_share=0.3)
    for session, delivered in ((held, False), (shown, True)):
        state: dict[str, Any] = {}
        nudge = policy.decide(state, session, 1, [rage(0)])
        handoff = policy.decide(state, session, 2, [checkout_handoff(1)])
        assert nudge is not None and handoff is not None
        assert (nudge.kind, nudge.delivered) == ("nudge", delivered)
        assert (handoff.kind, handoff.delivered) == ("handoff", delivered)
        # The undelivered decision still counts, so both arms see the same cooldown.
        assert state["interventions"] == 2
        assert policy.decide(state, session, 3, [rage(2)]) is None
        # A customer who asks for a person gets one, held out or not (a guard rail).
        asked = policy.decide(state, session, 4, [help_asked(3)])
        assert asked is not None and (asked.kind, asked.delivered) == ("handoff", True)
    assert all(
        not Policy(holdout_share=1.0).decide({}, s, 1, [rage(0)]).delivered  # type: ignore[union-attr]
        for s in SESSIONS[:200]
    )


# -- intervention ids ----------------------------------------------------------------


def test_intervention_ids_are_deterministic() -> None:
    batches = [[rage(0)], [rage(60_000)], [help_asked(60_001)]]

    def ids() -> list[str]:
        state: dict[str, Any] = {}
        return [
            Policy().decide(state, "s1", seq, b).intervention_id  # type: ignore[union-attr]
            for seq, b in enumerate(batches, start=1)
        ]

    first = ids()
    assert first == ids()
    assert len(set(first)) == 3
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in first)
    assert first[0] == intervention_id("s1", 1, "nudge")


def test_intervention_ids_differ_by_session_position_and_kind() -> None:
    base = intervention_id("s1", 1, "nudge")
    assert base == intervention_id("s1", 1, "nudge")
    assert (
        len(
            {
                base,
                intervention_id("s2", 1, "nudge"),
                intervention_id("s1", 2, "nudge"),
                intervention_id("s1", 1, "handoff"),
                intervention_id("s11", 1, "nudge"),
            }
        )
        == 5
    )


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"cooldown_ms": -1}, "policy.cooldown_ms"),
        ({"max_interventions": 0}, "policy.max_interventions"),
        ({"nudge_threshold": -0.1}, "policy.nudge_threshold"),
        ({"holdout_share": -0.1}, "policy.holdout_share"),
        ({"holdout_share": "0.3"}, "policy.holdout_share"),
        ({"messages": {"rage_click": "  "}}, "policy.messages.rage_click"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Policy(**settings)


def test_settings_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Policy().cooldown_ms = 5  # type: ignore[misc]
