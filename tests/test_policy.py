"""Effect policies: attempts per type, capped exponential backoff, idempotency keys."""

from __future__ import annotations

from enum import Enum

import pytest

from abstractrt_cli import (
    DefaultEffectPolicy,
    Effect,
    EffectType,
    NoRetryPolicy,
    RetryPolicy,
    RunState,
)
from abstractrt_cli.core.policy import compute_idempotency_key


def _run() -> RunState:
    return RunState.new(workflow_id="wf", entry_node="a", run_id="run-1")


def test_default_policy_one_attempt_for_everything():
    pol = DefaultEffectPolicy()
    for t in list(EffectType) + ["custom"]:
        assert pol.max_attempts(Effect(t)) == 1


def test_no_retry_policy():
    assert NoRetryPolicy().max_attempts(Effect(EffectType.LLM_CALL)) == 1


def test_retry_policy_defaults_and_overrides():
    pol = RetryPolicy()
    assert pol.max_attempts(Effect(EffectType.LLM_CALL)) == 3
    assert pol.max_attempts(Effect("tool_calls")) == 2
    assert pol.max_attempts(Effect("custom")) == 1
    pol = RetryPolicy(llm_max_attempts=5, max_attempts=4, effect_max_attempts={"custom": 7})
    assert pol.max_attempts(Effect("llm_call")) == 5
    assert pol.max_attempts(Effect("other")) == 4
    assert pol.max_attempts(Effect("custom")) == 7


def test_per_type_keys_may_be_enums_or_look_alikes():
    class Foreign(Enum):
        TOOL_CALLS = "tool_calls"

    pol = DefaultEffectPolicy(effect_max_attempts={EffectType.LLM_CALL: 4, Foreign.TOOL_CALLS: 6})
    assert pol.max_attempts(Effect("llm_call")) == 4
    assert pol.max_attempts(Effect(Foreign.TOOL_CALLS)) == 6
    assert DefaultEffectPolicy(effect_max_attempts=None).max_attempts(Effect("x")) == 1


def test_max_attempts_never_below_one():
    assert DefaultEffectPolicy(default_max_attempts=0).max_attempts(Effect("x")) == 1


def test_exponential_backoff_is_capped():
    pol = DefaultEffectPolicy(default_backoff_base=1.0, default_backoff_max=5.0)
    eff = Effect("x")
    assert [pol.backoff_seconds(effect=eff, attempt=a) for a in range(1, 7)] == [
        1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    pol = RetryPolicy(backoff_base=0.5, backoff_max=3.0)
    assert [pol.backoff_seconds(effect=eff, attempt=a) for a in range(1, 5)] == [
        0.5, 1.0, 2.0, 3.0]
    assert RetryPolicy(backoff_base=0).backoff_seconds(effect=eff, attempt=9) == 0


def test_idempotency_key_is_stable_for_the_same_step():
    run = _run()
    eff = Effect("x", {"a": 1, "b": [1, 2]})
    k1 = DefaultEffectPolicy().idempotency_key(run=run, node_id="n", effect=eff)
    k2 = compute_idempotency_key(run=_run(), node_id="n",
                                 effect=Effect("x", {"b": [1, 2], "a": 1}))
    assert k1 == k2


def test_idempotency_key_distinguishes_visits_and_inputs():
    run = _run()
    base = compute_idempotency_key(run=run, node_id="n", effect=Effect("x", {"a": 1}))
    run.effect_seq += 1  # the same node and payload, reached again later (a loop)
    assert compute_idempotency_key(run=run, node_id="n", effect=Effect("x", {"a": 1})) != base
    run.effect_seq -= 1
    others = {
        compute_idempotency_key(run=run, node_id="m", effect=Effect("x", {"a": 1})),
        compute_idempotency_key(run=run, node_id="n", effect=Effect("y", {"a": 1})),
        compute_idempotency_key(run=run, node_id="n", effect=Effect("x", {"a": 2})),
        compute_idempotency_key(run=RunState.new(workflow_id="wf", entry_node="a",
                                                 run_id="run-2"),
                                node_id="n", effect=Effect("x", {"a": 1})),
    }
    assert base not in others and len(others) == 4


def test_idempotency_key_same_for_enum_and_string_type():
    run = _run()
    assert compute_idempotency_key(run=run, node_id="n", effect=Effect(EffectType.LLM_CALL)) == \
        compute_idempotency_key(run=run, node_id="n", effect=Effect("llm_call"))


@pytest.mark.parametrize("payload", [{"when": object()}, {"s": {1, 2}}])
def test_idempotency_key_tolerates_non_json_payload(payload):
    assert compute_idempotency_key(run=_run(), node_id="n", effect=Effect("x", payload))
