"""``llmds simulate --config FILE``: the schema, its errors, and the CLI entry point."""

from __future__ import annotations

import json
import os
import sys

import pytest

from llmds.cli import main
from llmds.sim import simulate
from llmds.sim.config import load_config, parse_config

_FULL = {
    "requests": 80,
    "seed": 3,
    "workload": {"source": "synthetic", "rate": 20.0, "process": "gamma", "cv": 2.5,
                 "prompt": {"kind": "uniform", "low": 16, "high": 200},
                 "output": {"kind": "exponential", "mean": 20, "high": 64}},
    "slo_classes": [{"name": "interactive", "weight": 1, "ttft_ms": 300},
                    {"name": "batch", "weight": 2, "e2e_ms": 20000}],
    "tenants": [{"name": "a", "share": 3, "qps_limit": 8.0},
                {"name": "b", "weight": 2}],
    "server": {"mode": "continuous", "policy": "fair", "max_num_seqs": 16,
               "max_num_batched_tokens": 1024, "chunked_prefill": True,
               "kv_backend": "radix", "kv_page_size": 8, "kv_pages": 2048,
               "prefix_caching": True, "qps_limit": 50.0},
    "cost": {"overhead_ms": 5.0, "per_token_ms": 0.05, "prefill_quad_ms": 1e-6,
             "per_kv_token_ms": 2e-4},
}


def test_full_config_builds_what_it_says():
    spec = parse_config(_FULL)
    reqs, cfg = spec.build()
    assert len(reqs) == 80 and spec.seed == 3
    assert cfg.policy == "fair" and cfg.kv_backend == "radix" and cfg.kv_page_size == 8
    assert cfg.cost.overhead_ms == 5.0 and cfg.qps_limit == 50.0
    assert [t.name for t in cfg.tenants] == ["a", "b"] and cfg.tenants[0].qps_limit == 8.0
    assert {r.slo_class for r in reqs} == {"interactive", "batch"}
    assert {r.tenant for r in reqs} == {"a", "b"}
    assert all(16 <= r.prompt_tokens <= 200 and r.output_tokens <= 64 for r in reqs)
    res = simulate(reqs, cfg)
    assert res.metrics["completed"] + res.metrics["num_rejected"] == 80
    assert set(res.metrics["by_tenant"]) == {"a", "b"}
    reqs2, _ = spec.build(num_requests=10, seed=4)  # CLI overrides
    assert len(reqs2) == 10


def test_empty_config_uses_defaults():
    spec = parse_config({})
    assert spec.requests == 2000 and spec.source == "synthetic" and spec.rate == 5.0
    assert spec.config.kv_backend == "kvcache" and spec.config.policy == "default"


def test_chat_trace_source_and_trace_options():
    spec = parse_config({"requests": 30, "workload": {
        "source": "chat_trace", "rate": 3.0,
        "trace": {"num_system_prompts": 2, "output_tokens": [5, 10], "follow_up_prob": 0.5}}})
    reqs, _ = spec.build()
    assert len(reqs) == 30 and all(5 <= r.output_tokens <= 10 for r in reqs)
    assert all(r.token_ids is not None for r in reqs)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"servr": {}}, "unknown key 'servr'"),
        ({"server": {"kv_pagez": 3}}, "unknown key 'server.kv_pagez'"),
        ({"workload": {"prompt": {"kind": "uniform", "lo": 1}}},
         "unknown key 'workload.prompt.lo'"),
        ({"tenants": [{"name": "a"}, {"name": "b", "sharee": 1}]},
         "unknown key 'tenants\\[1\\].sharee'"),
        ({"requests": 0}, "'requests' must be >= 1"),
        ({"requests": 2.5}, "'requests' must be an int"),
        ({"seed": -1}, "'seed'"),
        ({"workload": {"rate": -2}}, "'workload.rate' must be > 0"),
        ({"workload": {"rate": "fast"}}, "'workload.rate'"),
        ({"workload": {"source": "csv"}}, "'workload.source' must be one of"),
        ({"workload": {"process": "weibull"}}, "'workload.process'"),
        ({"workload": {"prompt": {"kind": "zipf"}}}, "'workload.prompt': kind"),
        ({"workload": {"source": "chat_trace", "prompt": {"kind": "constant"}}},
         "'workload.prompt': only for source 'synthetic'"),
        ({"workload": {"trace": {"vocab_size": 5}}}, "'workload.trace': only for"),
        ({"workload": {"source": "chat_trace", "trace": {"output_tokens": [9, 2]}}},
         "'workload.trace.output_tokens'"),
        ({"workload": {"source": "chat_trace", "trace": {"follow_up_prob": 2}}},
         "'workload.trace.follow_up_prob'"),
        ({"slo_classes": {"name": "x"}}, "'slo_classes' must be a list"),
        ({"slo_classes": [{"name": "x", "ttft_ms": -1}]}, "'slo_classes\\[0\\]': ttft_ms"),
        ({"tenants": [{"name": "a", "weight": 0}]}, "'tenants\\[0\\]': weight"),
        ({"tenants": [{"name": "a"}, {"name": "a"}]}, "'server': tenants must have distinct"),
        ({"server": {"policy": "lifo"}}, "'server': policy must be one of"),
        ({"server": {"mode": "static"}}, "'server': mode"),
        ({"server": {"kv_backend": "lru"}}, "'server': kv_backend must be one of"),
        ({"server": {"kv_pages": 0}}, "'server': kv_pages must be >= 1"),
        ({"server": {"qps_limit": -5}}, "'server': qps_limit"),
        ({"server": {"chunked_prefill": "yes"}}, "'server': chunked_prefill"),
        ({"server": []}, "'server' must be a table"),
        ({"cost": {"overhead_ms": -1.0}}, "'cost': overhead_ms"),
        ({"cost": {"per_token": 1.0}}, "unknown key 'cost.per_token'"),
        ([1, 2], "must be a table"),
    ],
)
def test_bad_configs_name_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        parse_config(data)


def test_load_config_files(tmp_path):
    j = tmp_path / "sim.json"
    j.write_text(json.dumps({"requests": 5, "server": {"kv_backend": "radix"}}))
    assert load_config(j).config.kv_backend == "radix"
    if sys.version_info >= (3, 11):
        t = tmp_path / "sim.toml"
        t.write_text('requests = 7\n[server]\npolicy = "edf"\n[[tenants]]\nname = "x"\n')
        spec = load_config(t)
        assert spec.requests == 7 and spec.config.policy == "edf"
        assert spec.tenants[0].name == "x"
        t.write_text("requests = [")
        with pytest.raises(ValueError, match="not valid TOML"):
            load_config(t)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(bad)
    with pytest.raises(ValueError, match=r"config file .*missing\.json' does not exist"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="is not a regular file"):
        load_config(tmp_path)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_config(deep)
    if sys.version_info >= (3, 11):
        deep_toml = tmp_path / "deep.toml"
        deep_toml.write_text("a = " + "[" * 100_000 + "]" * 100_000)
        with pytest.raises(ValueError, match="nested too deeply"):
            load_config(deep_toml)
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20) + "{}")
    with pytest.raises(ValueError, match="more than 1,048,576"):
        load_config(big)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"seed": 1}\xff')
    with pytest.raises(ValueError, match="not UTF-8"):
        load_config(latin)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_config(fifo)  # refused without blocking on the FIFO


def test_cli_simulate_config(tmp_path, capsys):
    cfg = dict(_FULL, requests=10_000)  # --requests overrides the file's count
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(cfg))
    assert main(["simulate", "--config", str(path), "--requests", "60", "--seed", "1"]) == 0
    out = capsys.readouterr()
    assert "requests" in out.out and " 60" in out.out
    assert "tenant a" in out.out and "tenant b" in out.out
    assert "sim.json" in out.err  # the progress bar names the config


def test_cli_simulate_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"server": {"kv_pages": -1}}))
    assert main(["simulate", "--config", str(path)]) == 2
    assert "server" in capsys.readouterr().err
    good = tmp_path / "ok.json"
    good.write_text("{}")
    assert main(["simulate", "chat", "--config", str(good)]) == 2  # not both
    assert main(["simulate", "--config", str(tmp_path / "nope.json")]) == 2
    assert main(["simulate", "--config", str(good), "--requests", "0"]) == 2
