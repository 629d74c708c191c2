"""llmds.sim.workloads: the chat trace's arguments, its size cap, and that it never changes."""

from __future__ import annotations

import hashlib
import time

import pytest

from llmds.bench import workloads as bench_workloads
from llmds.sim.workloads import (
    MAX_TURN_TOKENS,
    TRACE_PARAMS,
    check_chat_trace_size,
    check_trace_params,
    multi_turn_chat_trace,
)


def _fingerprint(trace) -> str:
    h = hashlib.sha256()
    for r in trace:
        h.update(repr((r.request_id, r.conversation, r.turn)).encode())
        h.update(r.prompt.tobytes())
        h.update(r.output.tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, "194a9d902f2e609c"),
    ({"follow_up_prob": 0.9, "recent_conversations": 3}, "5d9178bc6b1e6ba6"),
    ({"follow_up_prob": 1.0, "recent_conversations": 1, "output_tokens": (1, 5)},
     "b16c0c0b96d22767"),
])
def test_trace_is_the_same_on_every_machine(params, expected):
    # Fingerprints of the trace as first written: results stay comparable across runs.
    assert _fingerprint(multi_turn_chat_trace(300, seed=7, **params)) == expected


def test_bench_reexports_the_simulators_trace():
    assert bench_workloads.multi_turn_chat_trace is multi_turn_chat_trace


def test_recent_conversations_bounds_the_follow_ups():
    trace = multi_turn_chat_trace(400, follow_up_prob=0.8, recent_conversations=2, seed=1)
    newest: list[int] = []  # the two most recently used conversations
    for r in trace:
        if r.turn > 0:
            assert r.conversation in newest
        newest = ([c for c in newest if c != r.conversation] + [r.conversation])[-2:]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"num_requests": -1}, ValueError, "num_requests"),
    ({"num_requests": 2.0}, TypeError, "num_requests must be an int"),
    ({"seed": -1}, ValueError, "seed"),
    ({"vocab_size": 0}, ValueError, "vocab_size"),
    ({"num_system_prompts": True}, TypeError, "num_system_prompts"),
    ({"follow_up_prob": 1.5}, ValueError, "follow_up_prob"),
    ({"follow_up_prob": float("nan")}, ValueError, "follow_up_prob"),
    ({"user_tokens": (9, 5)}, ValueError, r"user_tokens must be a \(low, high\) pair"),
    ({"output_tokens": (0, 5)}, ValueError, r"output_tokens\[0\]"),
    ({"follow_up_tokens": (1, 2, 3)}, ValueError, "follow_up_tokens"),
    ({"follow_up_tokens": "ab"}, TypeError, "follow_up_tokens"),
    ({"output_tokens": {1: 2}}, TypeError, "output_tokens"),
    ({"system_prompt_tokens": MAX_TURN_TOKENS + 1}, ValueError, "system_prompt_tokens"),
])
def test_bad_arguments_are_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        multi_turn_chat_trace(**{"num_requests": 5, **kwargs})


def test_direct_calls_are_capped_before_drawing():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="chat trace of 200000 requests"):
        multi_turn_chat_trace(200_000, follow_up_prob=0.99)
    with pytest.raises(ValueError, match="chat trace of 1000 requests"):
        multi_turn_chat_trace(1000, system_prompt_tokens=MAX_TURN_TOKENS)
    assert time.perf_counter() - t0 < 1.0  # refused before anything was drawn


def test_check_trace_params_names_keys_the_callers_way():
    got = check_trace_params({"user_tokens": [3, 4]}, lambda k: f"config key 'trace.{k}'")
    assert got == {"user_tokens": (3, 4)}
    with pytest.raises(ValueError, match=r"config key 'trace\.vocab_size' must be in"):
        check_trace_params({"vocab_size": 0}, lambda k: f"config key 'trace.{k}'")
    with pytest.raises(TypeError, match="no argument 'seed'"):
        check_trace_params({"seed": 1})
    assert set(TRACE_PARAMS) == {k for k in multi_turn_chat_trace.__kwdefaults__ if k != "seed"}
    assert check_chat_trace_size(0) == 0
