"""The engine's rules apart from its models, callbacks instead of subclasses, and the
session state's model slice with named keys (old states in changelogs still read)."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from detectors.model import Models
from detectors.policy import Policy, decayed
from detectors.session import Engine, Learned, Outcome, Rules, SessionState

TS = 1_767_225_600_000
VARIANTS = {"policy": {"messages": {"checkout_failure": ["Try again?", "Another card?"]}}}


def _nudged(engine: Engine) -> tuple[SessionState, str]:
    """A session nudged on its second failed payment, with a variant of the message."""
    state = SessionState("s1")
    nudge = None
    for n in (1, 2):
        outcome = engine.step(state, {"session_id": "s1", "type": "checkout_failed",
                                      "ts": TS + n * 1000, "page": "/checkout"})
        nudge = outcome.decision or nudge
    assert nudge is not None and nudge.kind == "nudge"
    return state, nudge.intervention_id


def _as_old_workers_wrote_it(state: SessionState) -> bytes:
    data = orjson.loads(state.to_json())
    snap, variant = data["model"]["snap"], data["model"]["variant"]
    data["model"]["snap"] = {"x": snap["features"], "p": snap["predicted"]}
    data["model"]["variant"] = [variant["message_key"], variant["arm"],
                                variant["intervention_id"], variant["rewarded"]]
    return orjson.dumps(data)


def test_model_slice_has_named_keys_and_old_states_still_decode() -> None:
    state, intervention_id = _nudged(Engine.from_config(VARIANTS))
    assert set(state.model["snap"]) == {"features", "predicted"}
    assert state.model["variant"]["intervention_id"] == intervention_id
    assert state.model["variant"]["rewarded"] is False
    old = SessionState.from_json(_as_old_workers_wrote_it(state))
    assert old == SessionState.from_json(state.to_json()) == state

    # The old state goes on as a new one: the variant is rewarded, the snapshot learned.
    engine = Engine.from_config(VARIANTS)
    engine.step(old, {"session_id": "s1", "type": "intervention_accepted", "ts": TS + 3000,
                      "intervention_id": intervention_id})
    assert old.model["variant"]["rewarded"] is True
    learned: list[Learned] = []
    Engine(engine.rules, engine.models, on_learn=learned.append).expire(old)
    assert engine.models is not None and engine.models.risk.learned == 1
    assert [(x.session_id, x.abandoned, x.scored_at) for x in learned] == [("s1", True, "signal")]
    assert learned[0].features == state.model["snap"]["features"]


def test_callbacks_see_every_step_and_outcome_and_are_not_pickled_with_the_models() -> None:
    seen: list[tuple[str | None, bool]] = []
    learned: list[Learned] = []

    def on_outcome(state: SessionState, event: dict[str, Any] | None, outcome: Outcome) -> None:
        seen.append((event and event["type"], outcome.decision is not None))

    base = Engine.from_config({"routes": {"patterns": ["/checkout"]}})
    engine = base.observed(on_outcome=on_outcome).observed(on_learn=learned.append)
    assert engine.rules is base.rules and engine.models is base.models
    state, _ = _nudged(engine)
    snap = dict(state.model["snap"])
    engine.expire(state)
    assert seen == [("checkout_failed", False), ("checkout_failed", True), (None, False)]
    assert [(x.features, x.predicted, x.scored_at) for x in learned] == [
        (snap["features"], snap["predicted"], "signal")]
    # A local function cannot be pickled: the checkpoint would fail if the models held it.
    restored = pickle.loads(pickle.dumps(engine.models))
    assert isinstance(restored, Models) and restored.risk.learned == 1


def test_rules_can_be_replaced_under_a_running_engine() -> None:
    engine = Engine.from_config()
    models = engine.models
    engine.rules = Rules.from_config({"checkout_failure": {"nudge_after": 1},
                                      "routes": {"patterns": ["/pay"]}, "model": {}})
    state = SessionState("s1")
    outcome = engine.step(state, {"session_id": "s1", "type": "checkout_failed", "ts": TS,
                                  "page": "/pay"})
    assert [s.detector for s in outcome.signals] == ["checkout_failure"]
    assert outcome.route == "/pay" and engine.models is models


def test_one_decay_for_the_policy_and_the_features() -> None:
    policy = Policy(half_life_ms=1000)
    assert decayed(2.0, TS, TS + 2000, 1000) == 0.5
    assert decayed(2.0, TS, TS - 5, 1000) == decayed(2.0, None, TS, 1000) == 2.0
    state = SessionState("s1", first_ts=TS, last_ts=TS + 1000,
                         policy={"score": 1.0, "score_ts": TS})
    engine = Engine(Rules(policy=policy))
    assert engine.features(state)["friction"] == 0.5
    # The lowest threshold there is: nudge_threshold 0.5 halved for a high-risk session.
    assert policy.could_tip(state.policy, TS + 2000, 0.0)  # 0.25
    assert not policy.could_tip(state.policy, TS + 3000, 0.0)  # 0.125


def test_the_server_time_given_to_step_is_on_the_outcomes_that_carry_signals() -> None:
    engine, state = Engine(Rules()), SessionState("s1")
    view = engine.step(state, {"session_id": "s1", "type": "page_view", "ts": TS, "page": "/"},
                       TS + 5)
    helped = engine.step(state, {"session_id": "s1", "type": "help_request", "ts": TS + 1},
                         TS + 7)
    unstamped = engine.step(SessionState("s2"), {"session_id": "s2", "type": "help_request",
                                                 "ts": TS})
    assert (view.signals, view.server_ts) == ((), None)  # the shared quiet outcome
    assert helped.signals and helped.server_ts == TS + 7
    assert unstamped.signals and unstamped.server_ts is None  # replay, tests: not given
