"""Simulator size caps and seeds: checked before anything is allocated (issue 12, section 4)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from llmds.sim.arrivals import (
    MAX_REQUESTS,
    LengthDist,
    arrival_times,
    check_chat_trace_size,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import SimConfig, Simulator
from llmds.sim.scenarios import scenario
from llmds.sim.workloads import multi_turn_chat_trace


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kv_pages": 10**9}, "kv_pages must be <= 4194304"),
    ({"kv_pages": 2**22, "kv_page_size": 256}, "kv_pages \\* kv_page_size"),
    ({"kv_page_size": 2**17}, "kv_page_size must be <="),
    ({"max_num_seqs": 2**21}, "max_num_seqs must be <="),
    ({"max_num_batched_tokens": 2**31}, "max_num_batched_tokens must be <="),
])
def test_server_sizes_are_capped_before_allocating(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimConfig(**kwargs)


@pytest.mark.parametrize("call", [
    lambda: synthetic_workload(10**12, 5.0),
    lambda: scenario("micro-batch", 10**12),
    lambda: scenario("chat", 500_000),  # ~5.6e8 token ids: over the trace cap
])
def test_huge_workloads_fail_fast(call):
    t0 = time.perf_counter()
    with pytest.raises(ValueError):
        call()
    assert time.perf_counter() - t0 < 1.0  # refused before drawing anything


@pytest.mark.parametrize("call", [
    lambda: synthetic_workload(5, 5.0, seed=-1),
    lambda: arrival_times(5, 5.0, seed=-1),
    lambda: trace_workload(multi_turn_chat_trace(2, seed=0), 1.0, seed=-1),
    lambda: scenario("micro-batch", 5, seed=-1),
    lambda: synthetic_workload(5, 5.0, seed=1.5),
    lambda: synthetic_workload(5, 5.0, seed=True),
])
def test_seeds_must_be_nonnegative_ints(call):
    with pytest.raises((TypeError, ValueError), match="seed"):
        call()


def test_lengths_and_cost_are_capped():
    with pytest.raises(ValueError, match="high must be <="):
        LengthDist("uniform", low=1, high=2**29)
    with pytest.raises(ValueError, match="mean must be <="):
        LengthDist("constant", mean=1e300)
    with pytest.raises(ValueError, match="overhead_ms must be <="):
        CostModel(overhead_ms=1e300)
    with pytest.raises(ValueError, match=r"cv must be >= 0\.001"):
        arrival_times(5, 1.0, "gamma", cv=1e-300)


def test_extreme_lognormal_draws_are_clipped_without_warnings():
    dist = LengthDist("lognormal", mean=100.0, sigma=1e300, low=2, high=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        out = dist.sample(np.random.default_rng(0), 1000)
    assert out.dtype == np.int64 and out.min() >= 2 and out.max() <= 50


@pytest.mark.parametrize("params", [{}, {"follow_up_prob": 0.9},
                                    {"follow_up_prob": 1.0, "recent_conversations": 1}])
def test_chat_trace_estimate_is_close(params):
    n = 300
    trace = multi_turn_chat_trace(n, seed=0, **params)
    actual = sum(len(r.prompt) + len(r.output) for r in trace)
    assert 0.7 * actual <= check_chat_trace_size(n, **params) <= 1.3 * actual


def test_chat_trace_estimate_refuses_endless_conversations():
    with pytest.raises(ValueError, match="chat trace of 100000 requests"):
        check_chat_trace_size(100_000, follow_up_prob=1.0)
    assert check_chat_trace_size(MAX_REQUESTS // 10) < 2**28


def test_validate_names_the_request_that_cannot_fit():
    reqs = synthetic_workload(3, 5.0, prompt=LengthDist("constant", mean=600), seed=0)
    with pytest.raises(ValueError, match="kv_pages=2"):
        Simulator(SimConfig(kv_pages=2)).validate(reqs)
    with pytest.raises(ValueError, match="max_num_batched_tokens=512"):
        Simulator(SimConfig(chunked_prefill=False, max_num_batched_tokens=512)).validate(reqs)
    Simulator(SimConfig()).validate(reqs)  # fits
