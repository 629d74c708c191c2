"""The GPU-profile cost model inside the simulator (SimConfig.on_gpu, config files, CLI).

Synthetic profile folders (tests/test_sim_profiles.py's writers: closed-form op times in
Vidur's CSV layout) make every check run without the data: iteration times through the
engine equal ProfileCostModel's for hand-made batches, the KV pool comes from the model
shape and bounds every batch, beyond-range batches raise or are counted, and bad
GPUs, models and profile files are named. Tests marked ``data`` use the real profiles.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmds.cli import main
from llmds.errors import CorruptFileError
from llmds.sim.arrivals import LengthDist, SimRequest, synthetic_workload, trace_workload
from llmds.sim.config import SimConfig, move_to_gpu, parse_config, profile_cost
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import Simulator, simulate
from llmds.sim.profiles import ProfileCostModel, find_profiles_dir, kv_pages
from llmds.sim.workloads import multi_turn_chat_trace
from tests.test_sim_profiles import write_attention, write_cpu, write_linear


@pytest.fixture(scope="module")
def vidur(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vidur")
    write_linear(root, "a100", "llama-2-7b")
    write_linear(root, "h100", "llama-2-7b")
    write_attention(root)
    write_cpu(root)
    return root


class Recording(ProfileCostModel):
    """A ProfileCostModel that remembers every iteration the engine asks about."""

    def __init__(self, base: ProfileCostModel) -> None:
        super().__init__(base.gpu, base.model, base.linear_per_layer_ms, base.decode_surface,
                         base.prefill_surface, None, extrapolate=base.extrapolate)
        self.calls: list[tuple[int, int, list[tuple[int, int]], float]] = []

    def iteration_ms_mix(self, num_decode: int, decode_kv_sum: int,
                         prefill_chunks: Any) -> float:
        ms = super().iteration_ms_mix(num_decode, decode_kv_sum, prefill_chunks)
        self.calls.append((num_decode, decode_kv_sum, list(prefill_chunks), ms))
        return ms


def _durations(res: Any) -> list[float]:
    times = [0.0] + [t for t, _ in res.kv_utilisation]
    return [b - a for a, b in itertools.pairwise(times)]


# ------------------------------------------------------- iteration times via the engine
def test_continuous_iterations_equal_the_profile_model(vidur):
    m = ProfileCostModel.from_profiles(profiles_dir=vidur)
    prompts = [40, 90, 130, 60]
    reqs = [SimRequest(i, 0.0, p, 3) for i, p in enumerate(prompts)]
    res = simulate(reqs, SimConfig(cost=m, kv_pages=64, max_num_batched_tokens=512))
    # 1: the four prompts in one batch; 2-3: four decodes reading prompt, prompt + 1
    want = [m.iteration_ms([], [(p, 0) for p in prompts]),
            m.iteration_ms(prompts, []),
            m.iteration_ms([p + 1 for p in prompts], [])]
    assert _durations(res) == pytest.approx([w / 1000.0 for w in want], rel=1e-12)
    assert [r.first_token for r in res.records] == pytest.approx([want[0] / 1000.0] * 4)


def test_chunked_prefill_with_a_cached_prefix_is_costed_with_its_cached_tokens(vidur):
    m = ProfileCostModel.from_profiles(profiles_dir=vidur)
    shared = np.arange(64, dtype=np.int64)
    a = SimRequest(0, 0.0, 100, 2, token_ids=np.concatenate([shared, 1000 + np.arange(38)]))
    b = SimRequest(1, 5.0, 150, 2, token_ids=np.concatenate([shared, 2000 + np.arange(88)]))
    rec = Recording(m)
    res = simulate([a, b], SimConfig(cost=rec, kv_pages=64, max_num_batched_tokens=48))
    assert res.records[1].cached_tokens == 64  # four whole pages of the shared prefix
    # request a: 100 tokens in chunks of 48, 48, 4 (+ nothing cached); b: 86 after 64 cached
    prefills = [c for _, _, chunks, _ in rec.calls for c in chunks]
    assert prefills == [(48, 0), (48, 48), (4, 96), (48, 64), (38, 112)]
    # every iteration's time is the model's for the batch the engine formed
    for num_decode, kv, chunks, ms in rec.calls:
        assert num_decode <= 1 and ms == m.iteration_ms([kv] * num_decode, chunks)


def test_micro_batch_prefill_packs_the_token_budget_and_decodes_by_totals(vidur):
    m = ProfileCostModel.from_profiles(profiles_dir=vidur)
    reqs = [SimRequest(0, 0.0, 100, 3), SimRequest(1, 0.0, 90, 2)]
    cfg = SimConfig(cost=m, mode="micro_batch", policy="fcfs", max_num_seqs=2,
                    max_wait_ms=0.0, kv_pages=64, max_num_batched_tokens=128)
    res = simulate(reqs, cfg)
    prefill = m.iteration_ms([], [(100, 0), (28, 0)]) + m.iteration_ms([], [(62, 28)])
    step1 = m.iteration_ms([100, 90], [])  # output 1 fed back: the prompts are cached
    step2 = m.iteration_ms([101], [])
    r0, r1 = res.records
    assert r0.first_token == r1.first_token == pytest.approx(prefill / 1000.0)
    assert r1.last_token == pytest.approx((prefill + step1) / 1000.0)
    assert r0.last_token == pytest.approx((prefill + step1 + step2) / 1000.0)


def test_old_cost_model_answers_the_same_calls():
    c = CostModel(2.0, 0.5, 0.01, 0.001)
    assert c.iteration_ms_mix(3, 900, [(10, 64), (5, 0)]) == c.iteration_ms(18, 125, 900)
    steps = c.decode_steps_ms(np.array([0, 2]), np.array([0, 400]))
    assert steps.tolist() == [0.0, c.iteration_ms(2, 0, 400)]


# ------------------------------------------------------------------ KV memory
def test_on_gpu_sizes_the_pool_as_vllm_and_rejects_more_than_memory(vidur):
    cfg = SimConfig.on_gpu("a100", "llama-2-7b", profiles_dir=vidur)
    assert cfg.kv_pages == kv_pages("a100", "llama-2-7b") == 7463
    assert isinstance(cfg.cost, ProfileCostModel) and cfg.cost.extrapolate
    assert SimConfig.on_gpu(profiles_dir=vidur, kv_page_size=32).kv_pages == \
        kv_pages("a100", "llama-2-7b", 32)
    assert SimConfig.on_gpu(profiles_dir=vidur, gpu_memory_utilization=0.5).kv_pages == \
        kv_pages("a100", "llama-2-7b", gpu_memory_utilization=0.5)
    most = kv_pages("a100", "llama-2-7b", gpu_memory_utilization=1.0)
    SimConfig(cost=cfg.cost, kv_pages=most)
    with pytest.raises(ValueError, match=rf"kv_pages must be <= {most} for llama-2-7b on a100"):
        SimConfig(cost=cfg.cost, kv_pages=most + 1)
    # a GQA model holds 4x the tokens (8 KV heads instead of 32)
    l3 = kv_pages("a100", "llama-3-8b")
    assert l3 > 3.5 * cfg.kv_pages
    with pytest.raises(TypeError, match="cost must be a CostModel or a ProfileCostModel"):
        SimConfig(cost="a100")  # type: ignore[arg-type]


def test_no_iteration_holds_more_kv_than_the_pool(vidur):
    base = ProfileCostModel.from_profiles(profiles_dir=vidur, extrapolate=True)
    rec = Recording(base)
    # no prefix sharing: each request's KV is its own, so the sum is what the pool holds
    cfg = SimConfig(cost=rec, kv_pages=40, max_num_seqs=8, max_num_batched_tokens=256,
                    prefix_caching=False)
    reqs = trace_workload(multi_turn_chat_trace(60, seed=4, system_prompt_tokens=100,
                                                user_tokens=(20, 80), output_tokens=(5, 40),
                                                follow_up_tokens=(10, 40)), 50.0, seed=4)
    res = simulate(reqs, cfg)
    assert res.metrics["completed"] == 60 and res.metrics["preemptions"] > 0
    slots = cfg.kv_pages * cfg.kv_page_size
    for _, kv, chunks, _ in rec.calls:
        # decode rows and prefill chunks all read KV held in the pool at once
        assert kv + sum(c + cached for c, cached in chunks) <= slots


# ------------------------------------------------------ beyond the profiled range
def test_beyond_range_is_counted_per_run_or_raises(vidur):
    reqs = synthetic_workload(30, 1e4, prompt=LengthDist("constant", mean=20),
                              output=LengthDist("constant", mean=4), seed=1)
    cfg = SimConfig.on_gpu(profiles_dir=vidur, max_num_seqs=16)  # synthetic profile: batch <= 8
    first = simulate(reqs, cfg).metrics["num_extrapolated"]
    assert first > 0
    assert simulate(reqs, cfg).metrics["num_extrapolated"] == first  # per run, not cumulative
    strict = ProfileCostModel.from_profiles(profiles_dir=vidur)
    with pytest.raises(ValueError, match=r"decode batch of \d+ .*profiled range.*extrapolate"):
        simulate(reqs, SimConfig(cost=strict, kv_pages=256, max_num_seqs=16))
    assert simulate(reqs, SimConfig(kv_pages=256)).metrics["num_extrapolated"] == 0


def test_prefill_rules_agree_on_one_chunk_and_per_request_sums(vidur):
    vid = ProfileCostModel.from_profiles(profiles_dir=vidur)
    per = ProfileCostModel.from_profiles(profiles_dir=vidur, prefill_rule="per_request")
    assert per.iteration_ms([100], [(64, 128)]) == vid.iteration_ms([100], [(64, 128)])
    chunks = [(64, 130), (100, 0), (32, 512)]
    lin = vid.linear_ms(3 + sum(c for c, _ in chunks))
    dec = vid.decode_attention_ms(3, 300)
    att = sum(vid.prefill_attention_ms(c, -(-k // 64) * 64) for c, k in chunks)
    want = (lin + dec + att) * vid.model.num_layers
    assert per.iteration_ms([300] * 3, chunks) == pytest.approx(want, rel=1e-12)
    assert per.iteration_ms_mix(3, 900, chunks) == per.iteration_ms([300] * 3, chunks)
    with pytest.raises(ValueError, match="prefill_rule must be one of 'vidur', 'per_request'"):
        ProfileCostModel.from_profiles(profiles_dir=vidur, prefill_rule="sum")


# -------------------------------------------------------------- config files, CLI
def test_config_file_gpu_keys(vidur):
    spec = parse_config({"cost": {"gpu": "h100", "model": "llama-2-7b"}}, vidur)
    assert spec.config.cost.gpu.name == "h100" and spec.config.kv_pages == 7458
    assert not spec.kv_pages_given
    spec = parse_config({"server": {"kv_pages": 1000}, "cost": {"gpu": "a100"}}, vidur)
    assert spec.config.kv_pages == 1000 and spec.kv_pages_given
    spec = parse_config({"server": {"kv_page_size": 32}, "cost": {
        "gpu": "a100", "gpu_memory_utilization": 0.8, "prefill_rule": "per_request",
        "cpu_overhead": True}}, vidur)
    assert spec.config.kv_pages == kv_pages("a100", "llama-2-7b", 32, gpu_memory_utilization=0.8)
    assert spec.config.cost.prefill_rule == "per_request" and spec.config.cost.cpu_overhead
    assert profile_cost(profiles_dir=vidur) is profile_cost("a100", "llama-2-7b", vidur)


@pytest.mark.parametrize(("cost", "server", "match"), [
    ({"gpu": "v100"}, {}, "config key 'cost.gpu' must be one of 'a100', 'h100', got 'v100'"),
    ({"model": "llama-65b"}, {}, "config key 'cost.model' must be one of 'llama-2-7b'"),
    ({"gpu": "a100", "per_token_ms": 1.0}, {}, "not both"),
    ({"gpu": "a100", "gpu_memory_utilization": 1.5}, {},
     "config key 'cost.gpu_memory_utilization' must be <= 1"),
    ({"gpu": "a100", "prefill_rule": "max"}, {}, "prefill_rule must be one of"),
    ({"gpu": "a100", "cpu_overhead": "yes"}, {}, "cpu_overhead"),
    ({"gpu": "a100"}, {"kv_pages": 9000}, "config key 'server': kv_pages must be <= 8476"),
    ({"gpu": "a100", "nvlink": 1}, {}, "unknown key 'cost.nvlink'"),
])
def test_bad_gpu_config_names_the_key(vidur, cost, server, match):
    with pytest.raises(ValueError, match=match):
        parse_config({"cost": cost, "server": server}, vidur)


def test_missing_and_malformed_profiles_are_named(vidur, tmp_path):
    with pytest.raises(ValueError, match=r"config key 'cost.gpu': .*holds neither"):
        parse_config({"cost": {"gpu": "a100"}}, tmp_path)
    # the H100 has no cpu table need but a linear table; remove it: FileNotFoundError named
    bad = tmp_path / "vidur"
    write_attention(bad)
    with pytest.raises(FileNotFoundError, match=r"mlp\.csv"):
        SimConfig.on_gpu(profiles_dir=bad)
    write_linear(bad, "a100", "llama-2-7b")
    mlp = next(bad.rglob("mlp.csv"))
    mlp.write_text(mlp.read_text().replace("0.0", "x.0", 1))
    with pytest.raises(CorruptFileError, match=r"mlp.csv.*line"):
        SimConfig.on_gpu(profiles_dir=bad)
    with pytest.raises(ValueError, match=r"config key 'cost'.*mlp\.csv"):
        parse_config({"cost": {"gpu": "a100"}}, bad)


def test_cli_simulate_on_a_gpu(vidur, tmp_path, capsys):
    assert main(["simulate", "chat", "--requests", "30", "--gpu", "a100", "--data",
                 str(vidur)]) == 0
    out = capsys.readouterr().out
    assert "completed                             30" in out
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"requests": 20, "server": {"kv_pages": 500},
                                "cost": {"gpu": "a100"}}))
    assert main(["simulate", "--config", str(path), "--data", str(vidur),
                 "--model", "llama-2-7b"]) == 0
    assert "completed                             20" in capsys.readouterr().out


def test_move_to_gpu_keeps_or_replaces_the_pool(vidur):
    cfg = SimConfig(kv_pages=500, policy="edf")
    moved = move_to_gpu(cfg, "h100", profiles_dir=vidur)
    assert moved.kv_pages == 7458 and moved.policy == "edf" and moved.cost.gpu.name == "h100"
    assert move_to_gpu(cfg, profiles_dir=vidur, keep_kv_pages=True).kv_pages == 500
    with pytest.raises(ValueError, match="gpu must be one of"):
        move_to_gpu(cfg, "tpu", profiles_dir=vidur)


def test_validate_still_rejects_requests_larger_than_the_pool(vidur):
    cfg = SimConfig.on_gpu(profiles_dir=vidur, kv_pages=4)
    with pytest.raises(ValueError, match="kv_pages=4"):
        Simulator(cfg).validate([SimRequest(0, 0.0, 100, 1)])


# ----------------------------------------------------------------- the real profiles
def _real_root() -> Path:
    try:
        return find_profiles_dir()
    except FileNotFoundError:
        pytest.skip("Vidur profiles not found (set LLMDS_DATA or place ../shared/datasets)")


@pytest.mark.data
def test_real_a100_run_matches_the_readme_decode_figure():
    cfg = SimConfig.on_gpu("a100", "llama-2-7b", profiles_dir=_real_root(), mode="micro_batch",
                           max_num_seqs=32, max_wait_ms=0.0, max_num_batched_tokens=4096)
    # a batch of 32 requests with 1024-token prompts: their first decode step reads 1024
    # KV tokens each, the profiles README's hand-worked 19.90 ms
    res = simulate([SimRequest(i, 0.0, 1024, 2) for i in range(32)], cfg)
    assert {round(r.itls[0] * 1000.0, 9) for r in res.records} == {
        round(cfg.cost.iteration_ms([1024] * 32, []), 9)}
    assert res.records[0].itls[0] * 1000.0 == pytest.approx(19.90, rel=0.02)
    # its prefill: eight 4096-token iterations of four whole prompts
    assert res.records[0].first_token * 1000.0 == pytest.approx(
        8 * cfg.cost.iteration_ms([], [(1024, 0)] * 4))
