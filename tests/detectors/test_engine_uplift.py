"""The engine's decision step with the uplift model: the targeted arm avoids what hurts,
guard rails hold, a cold model changes nothing, outcomes teach it, state stays small,
and the models checkpoint with it."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from detectors.model import Models
from detectors.policy import Policy, in_holdout
from detectors.session import Engine, Outcome, Rules, SessionState
from detectors.uplift_model import UpliftModel
from streamer.tools.simulate import SimSession, generate

Event = dict[str, Any]


def engine_factory(uplift: UpliftModel | None = None, *, share: float = 1.0,
                   holdout: float = 0.0, warmup: int = 10) -> Engine:
    models = Models(uplift_warmup=warmup)
    if uplift is not None:
        models.uplift = uplift
    return Engine(Rules(policy=Policy(uplift_share=share, holdout_share=holdout)), models)


def play(engine: Engine, events: list[Event], session_id: str | None = None,
         *, end: bool = False) -> tuple[SessionState, list[Outcome]]:
    """Step the events as session ``session_id``; ``end``: then expire it (its outcome)."""
    sid = session_id or events[0]["session_id"]
    state = SessionState(sid)
    outcomes = [engine.step(state, dict(e, session_id=sid)) for e in events]
    if end:
        outcomes.append(engine.expire(state))
    return state, outcomes


def browsing_rage() -> SimSession:
    """A low-intent browser with a rage click: the rules nudge it."""
    return next(s for s in generate(seed=3, sessions=400, friction_share=1.0)
                if [lb["type"] for lb in s.labels] == ["rage_click"] and s.shopper
                and s.shopper.stage <= 1)


def keys_of(events: list[Event]) -> list[str]:
    """The uplift context of the session's first decision (from a rules-only engine)."""
    state, _ = play(engine_factory(share=0.0), events)
    keys: list[str] = state.model["uplift"]["keys"]
    return keys


def trained(keys: list[str], p: dict[str, float], n: int = 400) -> UpliftModel:
    """A model that saw ``n`` outcomes of each action in this context, at these rates."""
    model = UpliftModel(warmup=10, seed=5)
    for i in range(n):  # actions in turn, conversions spread evenly: as outcomes arrive
        for action, rate in p.items():
            model.learn(keys, action, int((i + 1) * rate) > int(i * rate))
    return model


def test_the_targeted_arm_leaves_alone_what_the_model_says_hurts() -> None:
    session = browsing_rage()
    prefix = session.events[: session.ending_at]
    hurts = trained(keys_of(prefix), {"none": 0.10, "nudge": 0.02, "handoff": 0.02})
    state, outcomes = play(engine_factory(hurts), prefix)
    points = [o for o in outcomes if o.rules_kind is not None]
    assert points and all(o.decision is None and o.arm == "targeted" for o in points)
    assert points[0].rules_kind == "nudge"
    assert state.policy.get("interventions", 0) == 0 and not state.policy.get("nudged")
    assert state.model["uplift"]["action"] == "none"
    # The same model in the rules arm changes nothing: the rules nudge.
    _, rules = play(engine_factory(hurts, share=0.0), prefix)
    shown = [o.decision for o in rules if o.decision is not None]
    assert shown and shown[0].kind == "nudge" and shown[0].delivered
    assert all(o.arm == "rules" for o in rules if o.rules_kind is not None)


def test_the_targeted_arm_hands_off_where_the_model_says_a_person_helps() -> None:
    session = browsing_rage()
    prefix = session.events[: session.ending_at]
    helps = trained(keys_of(prefix), {"none": 0.10, "nudge": 0.12, "handoff": 0.60})
    _, outcomes = play(engine_factory(helps), prefix)
    decided = [o for o in outcomes if o.decision is not None]
    assert decided[0].decision is not None and decided[0].decision.kind == "handoff"
    assert decided[0].rules_kind == "nudge" and decided[0].context is not None  # a handoff's summary


def _asks_for_help(sid: str) -> list[Event]:
    return [{"session_id": sid, "type": "page_view", "ts": 1000, "page": "/p/x-1"},
            {"session_id": sid, "type": "help_request", "ts": 5000, "channel": "chat"}]


def _fails_to_pay(sid: str) -> list[Event]:
    fail = {"session_id": sid, "type": "checkout_failed", "reason": "declined",
            "code": "card_declined", "page": "/checkout"}
    return [{"session_id": sid, "type": "page_view", "ts": 1000, "page": "/checkout"},
            *(dict(fail, ts=t) for t in (2000, 3000, 4000))]


def test_guard_rails_hold_whatever_the_model_says() -> None:
    """A customer who asks gets a person, held out or not; three failed payments escalate."""
    help_keys = keys_of(_asks_for_help("probe"))
    pay_keys = keys_of(_fails_to_pay("probe"))
    model = UpliftModel(warmup=10, seed=1)
    for keys in (help_keys, pay_keys):  # handoffs "hurt", doing nothing "helps"
        for i in range(300):
            model.learn(keys, "handoff", i % 100 == 0)
            model.learn(keys, "none", i % 3 != 0)
            model.learn(keys, "nudge", i % 100 == 0)
    for holdout in (0.0, 1.0):
        engine = engine_factory(model, holdout=holdout)
        _, outcomes = play(engine, _asks_for_help("asker"))
        d = outcomes[-1].decision
        assert d is not None and (d.kind, d.delivered) == ("handoff", True), holdout
        _, outcomes = play(engine, _fails_to_pay("payer"))
        kinds = [(o.decision.kind, o.decision.delivered) for o in outcomes if o.decision is not None]
        assert kinds[-1] == ("handoff", holdout == 0.0), holdout  # escalated (shown unless held out)


def test_a_cold_model_leaves_every_decision_to_the_rules() -> None:
    sessions = list(generate(seed=8, sessions=300))
    cold = engine_factory(share=1.0, warmup=10**6)
    rules = engine_factory(share=0.0, warmup=10**6)
    for s in sessions:
        _, a = play(cold, s.events)
        _, b = play(rules, s.events)
        assert [o.records() for o in a] == [o.records() for o in b], s.session_id
    assert cold.models is not None and not cold.models.uplift.warm


def test_outcomes_teach_it_control_from_the_holdout_and_the_action_shown() -> None:
    session = browsing_rage()
    keys = keys_of(session.events[: session.ending_at])
    model = trained(keys, {"none": 0.10, "nudge": 0.40, "handoff": 0.10})
    held = next(f"h{i}" for i in range(1000) if in_holdout(f"h{i}", 0.5))
    shown = next(f"h{i}" for i in range(1000) if not in_holdout(f"h{i}", 0.5))
    engine = engine_factory(model, holdout=0.5)
    before = dict(model.learned)
    results = {}
    for sid in (held, shown):
        state, outcomes = play(engine, session.events, sid, end=True)
        ended = [o for o in outcomes if o.result is not None]
        assert len(ended) == 1 and ended[0].arm == "targeted"
        results[sid] = (state.model["uplift"], ended[0])
    assert model.learned["none"] == before["none"] + 1 and model.learned["nudge"] == before["nudge"] + 1
    (held_note, held_end), (shown_note, shown_end) = results[held], results[shown]
    assert held_note["action"] == shown_note["action"] == "nudge"
    assert (held_note["shown"], shown_note["shown"]) == (False, True)
    assert (held_end.group, shown_end.group) == ("holdout", "treated")
    assert (held_end.estimate, shown_end.estimate) == (held_note["estimate"], shown_note["estimate"])
    assert 0.2 < shown_note["estimate"] < 0.4  # what it estimated at the decision: +0.3


def test_the_uplift_slice_of_the_state_is_small_and_json() -> None:
    state, _ = play(engine_factory(share=0.5, warmup=0), browsing_rage().events)
    note = state.model["uplift"]
    assert set(note) == {"keys", "action", "shown", "estimate"}
    assert len(orjson.dumps(note)) < 300
    assert SessionState.from_json(state.to_json()) == state


def test_models_checkpoint_with_the_uplift_model_and_old_checkpoints_restore() -> None:
    session = browsing_rage()
    keys = keys_of(session.events[: session.ending_at])
    models = Models(uplift_warmup=10)
    models.uplift = trained(keys, {"none": 0.1, "nudge": 0.3, "handoff": 0.2})
    copy = pickle.loads(pickle.dumps(models))
    assert copy.summary() == models.summary()
    both = ("nudge", "handoff")
    for _ in range(20):
        assert copy.uplift.choose(keys, both) == models.uplift.choose(keys, both)
    # A checkpoint written before issue 13: no uplift model, one risk learner.
    old = Models()
    del old.__dict__["uplift"], old.__dict__["uplift_warmup"], old.__dict__["funnel"], old.__dict__["stages"]
    risk = old.risk.__dict__
    risk["_model"] = risk.pop("_at_decision")
    del risk["_at_outcome"], risk["_auc_at_decision"], risk["learned_at_decision"]
    restored = pickle.loads(pickle.dumps(old))
    assert restored.uplift.learned == {"none": 0, "nudge": 0, "handoff": 0}
    assert restored.risk.auc_at_decision == 0.0 or restored.risk.learned_at_decision == 0
    _, outcomes = play(Engine(Rules(), restored), session.events, end=True)
    assert any(o.result for o in outcomes) and restored.risk.learned == 1
