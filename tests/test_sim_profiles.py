"""Tests of llmds.sim.profiles: the GPU-profile cost model, its tables and KV capacity.

Two layers. Synthetic profile folders (written to tmp_path in Vidur's CSV layout, from
closed-form op times) check the composition against the naive reference
(tests/reference/sim_profiles.py), the range rules and every bad input, without the
data. Tests marked ``data`` use the real Vidur profiles (skipped without them): the
profiles README's hand-worked figures, fitted points, held-out errors, monotonicity
over the whole range and the scaled (H100, Llama-3-8B) models.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmds.errors import CorruptFileError
from llmds.sim.profiles import (
    GPUS,
    MODELS,
    ProfileCostModel,
    activation_bytes,
    find_profiles_dir,
    fit,
    kv_capacity_tokens,
    kv_pages,
    tables,
)
from llmds.sim.profiles.hardware import GIB
from llmds.sim.profiles.tables import LINEAR_OPS, read_csv
from tests.reference.sim_profiles import vidur_iteration_ms

# ----------------------------------------------------------------- synthetic profiles
# Closed forms the fit reproduces exactly: each linear op a + b*tokens, decode
# attention c0 + c1 b + c2 b kv + c3 kv, prefill c0 + c1 c + c2 c^2 + c3 c kv + c4 kv.
LIN = {op: (0.002 * (i + 1), 1e-4 * (i + 1)) for i, op in enumerate(LINEAR_OPS)}
DEC = (0.005, 0.001, 8e-6, 1e-5)
PRE = (0.006, 1.4e-4, 1.2e-7, 1e-7, 1e-5)
TOKENS = [1, 2, 4, *range(8, 513, 8)]
DEC_KV = (32, 256, 1024)
PRE_CHUNK, PRE_KV = (64, 256, 512), (0, 256, 512, 1024)
CPU_BATCH = (8, 16, 32, 64)


def lin_ms(tokens: float) -> float:
    return sum(a + b * tokens for a, b in LIN.values())


def dec_ms(b: float, kv: float) -> float:
    return DEC[0] + DEC[1] * b + DEC[2] * b * kv + DEC[3] * kv


def pre_ms(c: float, kv: float) -> float:
    return PRE[0] + PRE[1] * c + PRE[2] * c * c + PRE[3] * c * kv + PRE[4] * kv


def pre_grid_ms(c: float, kv: float) -> float:
    """``pre_ms`` as tabulated: chunks every 16 tokens (from 16), linear in between."""
    x = max(c, 16.0) / 16.0
    i = math.floor(x)
    t = x - i
    return pre_ms(16 * i, kv) if t == 0 else (1 - t) * pre_ms(16 * i, kv) + t * pre_ms(
        16 * (i + 1), kv)


def cpu_ms(batch: float) -> float:  # five ops summed: 0.5 + 0.02 * batch
    return 0.5 + 0.02 * batch


def write_linear(root: Path, gpu: str, model: str) -> Path:
    m = MODELS[model]
    folder = root / "data" / "profiling" / "compute" / gpu / m.profile_dir
    folder.mkdir(parents=True, exist_ok=True)
    cols = [f"time_stats.{op}.median" for op in LINEAR_OPS]
    lines = [",".join([*cols, "n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tokens",
                       "num_tensor_parallel_workers"])]
    for tp in (1, 2):
        for t in TOKENS:
            vals = [f"{(a + b * t) / tp:.9f}" for a, b in LIN.values()]
            lines.append(",".join([*vals, str(m.num_q_heads), str(m.num_kv_heads),
                                   str(m.hidden_size), str(m.intermediate_size), str(t),
                                   str(tp)]))
    path = folder / "mlp.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_attention(root: Path, gpu: str = "a100", model: str = "llama-2-7b") -> Path:
    m = MODELS[model]
    folder = root / "data" / "profiling" / "compute" / gpu / m.profile_dir
    folder.mkdir(parents=True, exist_ok=True)
    head = ("n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,"
            "prefill_chunk_size,kv_cache_size,is_prefill,time_stats.attn_decode.median,"
            "time_stats.attn_prefill.median")
    fixed = f"{m.hidden_size},{m.num_q_heads},{m.num_kv_heads},1"
    lines = [head]
    for kv in DEC_KV:
        for b in range(1, 9):
            lines.append(f"{fixed},{b},0,{kv},False,{dec_ms(b, kv):.9f},")
    for c in PRE_CHUNK:
        for kv in PRE_KV:
            lines.append(f"{fixed},1,{c},{kv},True,,{pre_ms(c, kv):.9f}")
    path = folder / "attention_tp1_extract.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_cpu(root: Path) -> Path:
    folder = root / "data" / "profiling" / "a100"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",schedule_median,sampler_e2e_median,prepare_inputs_e2e_median,"
             "process_model_outputs_median,ray_comm_time_mean,model_name,batch_size,"
             "tensor_parallel_degree"]
    for i, b in enumerate(CPU_BATCH):
        each = cpu_ms(b) / 5
        lines.append(f"{i},{each},{each},{each},{each},{each},meta-llama/Llama-2-7b-hf,{b},1")
    path = folder / "cpu_overheads.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    write_linear(tmp_path, "a100", "llama-2-7b")
    write_attention(tmp_path)
    write_cpu(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def synth_model(tmp_path_factory: pytest.TempPathFactory) -> ProfileCostModel:
    root = tmp_path_factory.mktemp("vidur")
    write_linear(root, "a100", "llama-2-7b")
    write_attention(root)
    write_cpu(root)
    return ProfileCostModel.from_profiles(profiles_dir=root)


def reference(model: ProfileCostModel, dec: list[int], pre: list[tuple[int, int]],
              cpu: bool = False, dec_scale: float = 1.0) -> float:
    return vidur_iteration_ms(lin_ms, lambda b, kv: dec_ms(b, kv) * dec_scale, pre_grid_ms,
                              model.model.num_layers, model.model.is_gqa, dec, pre,
                              cpu=(lambda b: cpu_ms(min(max(b, 8), 64))) if cpu else None)


# ----------------------------------------------------------------- composition
def test_synthetic_tables_reproduce_the_closed_forms(synth_model):
    m = synth_model
    m._check()
    assert m.max_tokens == 512 and m.max_decode_batch == 8 and m.max_kv == 1536
    assert m.attention_source == "measured" and m.assumptions == ()
    for t in (8, 64, 200, 512):
        assert m.linear_ms(t) == pytest.approx(lin_ms(math.ceil(t / 8) * 8), rel=1e-9)
    for b in (1, 5, 8):
        for kv in (0, 64, 512, 1024, 1536):
            assert m.decode_attention_ms(b, kv) == pytest.approx(dec_ms(b, kv), rel=1e-9)
    for c in (16, 64, 100, 512):
        for kv in (0, 320, 1536):
            assert m.prefill_attention_ms(c, kv) == pytest.approx(pre_grid_ms(c, kv), rel=1e-9)
            assert m.prefill_attention_ms(c, kv) == pytest.approx(pre_ms(c, kv), rel=1e-3)


@given(
    dec=st.lists(st.integers(0, 1500), max_size=8),
    pre=st.lists(st.tuples(st.integers(1, 150), st.integers(0, 300)), max_size=3),
)
def test_iteration_ms_matches_the_naive_composition(synth_model, dec, pre):
    got = synth_model.iteration_ms(dec, pre)
    assert got == pytest.approx(reference(synth_model, dec, pre), rel=1e-9, abs=1e-12)
    assert synth_model.iteration_ms(np.array(dec, dtype=np.int64), pre) == got


def test_totals_fast_path_equals_iteration_ms(synth_model):
    dec, pre = [100, 300, 900], [(40, 70), (30, 0)]
    kv = sum(-(-k // 64) * 64 for _, k in pre)
    totals = synth_model.iteration_ms_totals(3, 1300, 2, 70, 40 * 40 + 30 * 30, kv)
    assert totals == synth_model.iteration_ms(dec, pre)
    assert synth_model.iteration_ms([], []) == 0.0 == synth_model.iteration_ms_totals(0, 0)


def test_decode_steps_ms_is_the_vectorised_totals(synth_model):
    n = np.array([0, 1, 2, 7, 8, 3], dtype=np.int64)
    kv = np.array([0, 5, 700, 7 * 1400, 8 * 64, 3 * 1536], dtype=np.int64)
    want = [synth_model.iteration_ms_totals(int(a), int(b)) for a, b in zip(n, kv, strict=True)]
    assert synth_model.decode_steps_ms(n, kv).tolist() == pytest.approx(want, rel=1e-12)
    assert synth_model.decode_steps_ms(np.zeros(0, np.int64), np.zeros(0, np.int64)).size == 0
    with pytest.raises(ValueError, match="shapes"):
        synth_model.decode_steps_ms(n, kv[:2])
    with pytest.raises(ValueError, match="ints >= 0"):
        synth_model.decode_steps_ms(n, -kv)


def test_cpu_overhead_held_below_the_smallest_profiled_batch(synth):
    m = ProfileCostModel.from_profiles(profiles_dir=synth, cpu_overhead=True)
    assert m.cpu_overhead and m.cpu_ms(0) == 0.0
    assert m.cpu_ms(1) == m.cpu_ms(8) == pytest.approx(cpu_ms(8))
    assert m.cpu_ms(20) == pytest.approx(cpu_ms(20))
    dec = [500] * 3
    assert m.iteration_ms(dec, [(64, 0)]) == pytest.approx(reference(m, dec, [(64, 0)], cpu=True))
    with pytest.raises(ValueError, match="CPU-overhead batch of 65"):
        m.cpu_ms(65)


def test_monotone_in_tokens_batch_and_kv(synth_model):
    m = synth_model
    prev = 0.0
    for c in range(1, 500, 7):
        now = m.iteration_ms([], [(c, 256)])
        assert now >= prev
        prev = now
    for kv in (0, 100, 700, 1500):
        times = [m.iteration_ms([kv] * b, []) for b in range(1, 9)]
        assert times == sorted(times)
    times = [m.iteration_ms([kv] * 4, []) for kv in range(0, 1537, 32)]
    assert times == sorted(times)


# ----------------------------------------------------------------- ranges
def test_beyond_the_profiled_range_raises_naming_the_quantity(synth_model):
    m = synth_model
    with pytest.raises(ValueError, match=r"decode batch of 9 .*\(<= 8\).*extrapolate=True"):
        m.iteration_ms([10] * 9, [])
    with pytest.raises(ValueError, match="decode KV length of 1600"):
        m.iteration_ms([1600], [])
    with pytest.raises(ValueError, match=r"batch of tokens 520 .*\(<= 512\)"):
        m.iteration_ms([], [(520, 0)])
    with pytest.raises(ValueError, match="summed prefill KV length of 1600"):
        m.iteration_ms([], [(16, 1600)])
    assert m.num_extrapolated == 0 and not m.extrapolate


def test_extrapolation_is_linear_flagged_and_counted(synth):
    m = ProfileCostModel.from_profiles(profiles_dir=synth, extrapolate=True)
    inside = m.iteration_ms([100] * 8, [])
    assert m.num_extrapolated == 0
    beyond = m.iteration_ms([100] * 12, [])
    assert m.num_extrapolated == 1 and beyond > inside
    # the closed forms are linear in batch, so the linear extension is exact here
    assert beyond == pytest.approx(reference(m, [100] * 12, []), rel=1e-9)
    assert m.iteration_ms([], [(1000, 0)]) > m.iteration_ms([], [(500, 0)])
    assert m.num_extrapolated >= 3
    assert m.describe()["extrapolate"] is True


# ----------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("dec", "pre", "exc", "match"),
    [
        ([-1], [], ValueError, r"decode_kv_lens\[0\] must be >= 0"),
        ([1, 2.5], [], TypeError, r"decode_kv_lens\[1\] must be an int"),
        ([True], [], TypeError, r"decode_kv_lens\[0\] must be an int, got bool"),
        (["7"], [], TypeError, r"decode_kv_lens\[0\] must be an int"),
        ([], [(0, 5)], ValueError, r"prefill_chunks\[0\]\[0\] must be >= 1"),
        ([], [(5, -1)], ValueError, r"prefill_chunks\[0\]\[1\] must be >= 0"),
        ([], [(5, 1.5)], TypeError, r"prefill_chunks\[0\]\[1\] must be an int"),
        ([], [(5,)], TypeError, r"prefill_chunks\[0\] must be a \(chunk_tokens, cached"),
        ([], [7], TypeError, r"prefill_chunks\[0\] must be a \(chunk_tokens"),
        (np.array([1.0]), [], ValueError, "decode_kv_lens must be a 1-D array of ints"),
        (np.array([-3]), [], ValueError, "decode_kv_lens must be a 1-D array of ints"),
    ],
)
def test_bad_batches_are_named(synth_model, dec, pre, exc, match):
    with pytest.raises(exc, match=match):
        synth_model.iteration_ms(dec, pre)


def test_bad_totals_are_named(synth_model):
    with pytest.raises(ValueError, match="decode_kv_sum must be >= 0"):
        synth_model.iteration_ms_totals(1, -5)
    with pytest.raises(TypeError, match="num_decode must be an int"):
        synth_model.iteration_ms_totals(1.5, 5)
    with pytest.raises(ValueError, match="prefill totals must be 0 when num_prefill is 0"):
        synth_model.iteration_ms_totals(0, 0, 0, 10)
    with pytest.raises(ValueError, match="decode_kv_sum must be 0 when num_decode is 0"):
        synth_model.iteration_ms_totals(0, 10, 1, 5, 25, 0)


def test_unknown_gpu_and_model_list_the_known_ones(synth):
    with pytest.raises(ValueError, match="gpu must be one of 'a100', 'h100', got 'a10'"):
        ProfileCostModel.from_profiles("a10", profiles_dir=synth)
    with pytest.raises(ValueError, match="model must be one of 'llama-2-7b', 'llama-3-8b'"):
        ProfileCostModel.from_profiles(model="llama-70b", profiles_dir=synth)
    with pytest.raises(TypeError, match="cpu_overhead must be a bool"):
        ProfileCostModel.from_profiles(profiles_dir=synth, cpu_overhead=1)


def test_missing_profile_names_the_file_and_what_exists(synth):
    with pytest.raises(FileNotFoundError, match=r"no linear-op profile for llama-2-7b on h100"
                                                r".*present: a100/llama-2-7b"):
        ProfileCostModel.from_profiles("h100", profiles_dir=synth)
    (synth / "data" / "profiling" / "compute" / "a100" / "meta-llama" / "Llama-2-7b-hf"
     / "attention_tp1_extract.csv").unlink()
    with pytest.raises(FileNotFoundError):
        ProfileCostModel.from_profiles(profiles_dir=synth)


def test_find_profiles_dir(synth, tmp_path_factory, monkeypatch):
    assert find_profiles_dir(synth) == synth.resolve()
    datasets = tmp_path_factory.mktemp("datasets")
    (datasets / "serving").mkdir()
    (synth).rename(datasets / "serving" / "vidur")
    assert find_profiles_dir(datasets) == (datasets / "serving" / "vidur").resolve()
    monkeypatch.setenv("LLMDS_DATA", str(datasets))
    assert find_profiles_dir() == (datasets / "serving" / "vidur").resolve()
    monkeypatch.setenv("LLMDS_DATA", str(datasets / "nope"))
    with pytest.raises(FileNotFoundError, match=r"LLMDS_DATA points to .*not a folder"):
        find_profiles_dir()
    with pytest.raises(FileNotFoundError, match=r"profiles_dir points to .*neither data/prof"):
        find_profiles_dir(datasets / "serving")
    monkeypatch.delenv("LLMDS_DATA")
    monkeypatch.setattr(tables, "_default_datasets", lambda: [datasets / "missing"])
    with pytest.raises(FileNotFoundError, match=r"profiles were not found.*tried"):
        find_profiles_dir()


# ----------------------------------------------------------------- malformed files
def _csv(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "t.csv"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,n\n1.5,2\nnan,3\n", r"line 3, column 'a': expected a finite number >= 0, got 'nan'"),
        ("a,n\n1.5,2\n-1,3\n", r"line 3, column 'a': expected a finite number >= 0, got '-1'"),
        ("a,n\n1.5,2\nx,3\n", r"line 3, column 'a': .* got 'x'"),
        ("a,n\ninf,2\n", r"line 2, column 'a'"),
        ("a,n\n1,2.5\n", r"line 2, column 'n': expected a whole number >= 0, got '2.5'"),
        ("a,n\n1,\n", r"line 2, column 'n'"),
        ("a,n\n1\n", r"line 2: 1 fields, at least 2 expected"),
        ("a\n1\n", r"line 1: missing column\(s\) n"),
        ("", "is empty"),
        ("a,n\n", "has a header but no rows"),
        (b"a,n\n\xff,1\n", "is not UTF-8"),
    ],
)
def test_malformed_csv_names_file_line_and_column(tmp_path, text, match):
    with pytest.raises(CorruptFileError, match=match) as e:
        read_csv(_csv(tmp_path, text), ["a"], integer=["n"])
    assert "t.csv" in str(e.value)


def test_csv_size_cap_and_regular_files_only(tmp_path, monkeypatch):
    p = _csv(tmp_path, "a\n1\n")
    monkeypatch.setattr(tables, "MAX_CSV_BYTES", 3)
    with pytest.raises(CorruptFileError, match="capped at 3"):
        read_csv(p, ["a"])
    monkeypatch.undo()
    with pytest.raises(CorruptFileError, match="a folder"):
        read_csv(tmp_path, ["a"])
    with pytest.raises(FileNotFoundError):
        read_csv(tmp_path / "missing.csv", ["a"])
    cols, texts = read_csv(_csv(tmp_path, "a,b,s\n1,,x\n2,3,y\n"), ["a", "b"], text=["s"],
                           optional=["b"])
    assert cols["a"].tolist() == [1.0, 2.0] and np.isnan(cols["b"][0]) and texts["s"] == ["x", "y"]


def test_profile_of_another_model_is_rejected(synth):
    # the Llama-2-7B shape columns in a file read as Llama-3-8B
    src = synth / "data" / "profiling" / "compute" / "a100" / "meta-llama"
    (src / "Meta-Llama-3-8B").mkdir()
    (src / "Meta-Llama-3-8B" / "mlp.csv").write_bytes((src / "Llama-2-7b-hf" / "mlp.csv")
                                                      .read_bytes())
    with pytest.raises(CorruptFileError, match="'n_kv_head' holds 32, but llama-3-8b has 8"):
        ProfileCostModel.from_profiles(model="llama-3-8b", profiles_dir=synth)


def test_attention_rows_are_checked(synth):
    path = (synth / "data" / "profiling" / "compute" / "a100" / "meta-llama" / "Llama-2-7b-hf"
            / "attention_tp1_extract.csv")
    text = path.read_text().splitlines()
    path.write_text("\n".join([*text[:3], text[3].replace(",False,", ",maybe,"), *text[4:]]))
    with pytest.raises(CorruptFileError, match=r"line 4, column 'is_prefill'.*'maybe'"):
        ProfileCostModel.from_profiles(profiles_dir=synth)
    parts = text[2].split(",")
    parts[-2] = ""
    path.write_text("\n".join([text[0], text[1], ",".join(parts), *text[3:]]))
    with pytest.raises(CorruptFileError, match="decode row has an empty"):
        ProfileCostModel.from_profiles(profiles_dir=synth)


# ----------------------------------------------------------------- fallbacks
def test_scaled_attention_for_a_gqa_model_and_another_gpu(synth):
    write_linear(synth, "a100", "llama-3-8b")
    write_linear(synth, "h100", "llama-2-7b")
    l3 = ProfileCostModel.from_profiles(model="llama-3-8b", profiles_dir=synth)
    l3._check()
    assert l3.attention_source == "scaled" and l3.model.is_gqa
    assert any("decode x 0.25" in a for a in l3.assumptions)
    # GQA: decode x 0.25 (8 of 32 KV heads), x 1.1 for more than one request
    for dec in ([700], [700, 900, 100]):
        assert l3.iteration_ms(dec, []) == pytest.approx(reference(l3, dec, [], dec_scale=0.25))
    two = [(64, 0), (100, 256)]
    assert l3.iteration_ms([], two) == pytest.approx(reference(l3, [], two))
    h = ProfileCostModel.from_profiles("h100", profiles_dir=synth)
    ratio = GPUS["a100"].hbm_tb_s / GPUS["h100"].hbm_tb_s
    assert h.attention_source == "scaled" and "HBM bandwidth" in h.assumptions[0]
    assert h.decode_attention_ms(4, 512) == pytest.approx(dec_ms(4, 512) * ratio, rel=1e-9)
    assert h.prefill_attention_ms(256, 512) == pytest.approx(pre_ms(256, 512) * ratio, rel=1e-9)
    assert h.describe()["attention_source"] == "scaled"


def test_concurrent_calls_match_serial(synth_model):
    rng = np.random.default_rng(0)
    batches = [([int(k) for k in rng.integers(0, 1400, rng.integers(0, 9))],
                [(int(c), int(k)) for c, k in zip(rng.integers(1, 60, 2),
                                                   rng.integers(0, 500, 2), strict=True)])
               for _ in range(300)]
    serial = [synth_model.iteration_ms(d, p) for d, p in batches]
    out: list[list[float]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        out[i] = [synth_model.iteration_ms(d, p) for d, p in batches]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(o == serial for o in out)


# ----------------------------------------------------------------- fitting pieces
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=40))
def test_pav_is_monotone_keeps_sums_and_fixes_monotone_input(ys):
    out = fit.pav(ys)
    assert np.all(np.diff(out) >= -1e-9)
    assert out.sum() == pytest.approx(sum(ys), rel=1e-9, abs=1e-9)
    assert fit.pav(sorted(ys)).tolist() == sorted(ys)


def test_monotone_curve_and_surface_reject_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        fit.MonotoneCurve.fit([1.0, 1.0], [1.0, 2.0])
    curve = fit.MonotoneCurve.fit([1.0, 2.0, 4.0], [1.0, 0.5, 3.0])
    assert curve([1.0, 2.0, 3.0, 9.0]).tolist() == [0.75, 0.75, 1.875, 3.0]


def test_surface_recovers_a_held_out_physical_point():
    b, kv = np.meshgrid(np.arange(1, 9.0), np.array([32.0, 256.0, 1024.0]))
    b, kv = b.ravel(), kv.ravel()
    ms = np.array([dec_ms(x, y) for x, y in zip(b, kv, strict=True)]) * (1 + 0.01 * (b % 2))
    keep = ~((b == 5) & (kv == 256))
    s = fit.decode_surface(b[keep], kv[keep], ms[keep], 8, 1024)
    assert s.at(5, 256) == pytest.approx(ms[~keep][0], rel=0.02)
    assert np.all(np.diff(s.values, axis=0) >= 0) and np.all(np.diff(s.values, axis=1) >= 0)


# ----------------------------------------------------------------- hardware, KV memory
def test_model_shapes_match_published_parameter_counts():
    assert MODELS["llama-2-7b"].num_params == 6_738_415_616
    assert MODELS["llama-3-8b"].num_params == 8_030_261_248
    assert MODELS["llama-2-7b"].kv_bytes_per_token() == 2 * 32 * 32 * 128 * 2  # 512 KiB
    assert MODELS["llama-3-8b"].kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2  # 128 KiB
    assert not MODELS["llama-2-7b"].is_gqa and MODELS["llama-3-8b"].is_gqa


def test_kv_pages_formula_by_hand():
    m, g = MODELS["llama-2-7b"], GPUS["a100"]
    free = g.memory_bytes * 0.9 - m.weight_bytes() - activation_bytes(m, 4096, 256)
    assert kv_pages("a100", "llama-2-7b") == math.floor(free / (m.kv_bytes_per_token() * 16))
    assert kv_capacity_tokens("a100", "llama-2-7b") == 16 * kv_pages("a100", "llama-2-7b")
    # vLLM logged 7449 blocks for this setup (FlightLLM artefact): within 0.5%
    assert abs(kv_pages("a100", "llama-2-7b") / 7449 - 1) < 0.005
    assert kv_pages("a100", "llama-2-7b", page_size=1) >= 16 * 7449
    # GQA: 4x fewer KV bytes per token -> about 4x the tokens (weights differ)
    assert 3.5 < kv_capacity_tokens("a100", "llama-3-8b") / kv_capacity_tokens(
        "a100", "llama-2-7b") < 4.0
    assert kv_pages("a100", "llama-2-7b", gpu_memory_utilization=0.5) < 7449 // 2
    assert kv_pages("a100", "llama-2-7b", kv_dtype_bytes=1) == pytest.approx(2 * 7463, abs=2)
    assert round(g.memory_bytes / GIB, 2) == 79.15


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gpu": "v100"}, ValueError, "gpu must be one of 'a100', 'h100'"),
        ({"model": 7}, TypeError, "model must be one of"),
        ({"gpu_memory_utilization": 0.0}, ValueError, "gpu_memory_utilization must be > 0"),
        ({"gpu_memory_utilization": 1.5}, ValueError, "gpu_memory_utilization must be <= 1"),
        ({"page_size": 0}, ValueError, "page_size must be >= 1"),
        ({"max_num_batched_tokens": -1}, ValueError, "max_num_batched_tokens must be >= 1"),
        ({"gpu_memory_utilization": 0.15}, ValueError, "not one page of 16 tokens"),
    ],
)
def test_kv_pages_bad_settings(kwargs, exc, match):
    args = {"gpu": "a100", "model": "llama-2-7b", **kwargs}
    with pytest.raises(exc, match=match):
        kv_pages(**args)


# ----------------------------------------------------------------- the real profiles
def _real_root() -> Path:
    try:
        return find_profiles_dir()
    except FileNotFoundError:
        pytest.skip("Vidur profiles not found (set LLMDS_DATA or place ../shared/datasets)")


@pytest.fixture(scope="module")
def real() -> dict[str, ProfileCostModel]:
    root = _real_root()
    return {
        "a100": ProfileCostModel.from_profiles("a100", "llama-2-7b", root),
        "a100_cpu": ProfileCostModel.from_profiles("a100", "llama-2-7b", root, cpu_overhead=True),
        "h100": ProfileCostModel.from_profiles("h100", "llama-2-7b", root),
        "l3": ProfileCostModel.from_profiles("a100", "llama-3-8b", root),
    }


@pytest.mark.data
@pytest.mark.parametrize(
    ("key", "dec", "pre", "readme_ms"),
    [
        ("a100", [1024] * 32, [], 19.90),
        ("a100_cpu", [1024] * 32, [], 22.34),
        ("a100", [], [(2048, 0)], 158.5),
        ("a100", [1024] * 31, [(512, 1024)], 52.38),
        ("a100", [1024] * 64, [], 28.96),
        ("a100_cpu", [1024] * 64, [], 33.04),
    ],
)
def test_readme_hand_worked_figures_within_2_percent(real, key, dec, pre, readme_ms):
    assert real[key].iteration_ms(dec, pre) == pytest.approx(readme_ms, rel=0.02)


@pytest.mark.data
def test_real_tables_hold_their_invariants_and_flags(real):
    for m in real.values():
        m._check()
    assert real["a100"].attention_source == "measured" and real["a100"].assumptions == ()
    assert real["h100"].attention_source == "scaled"
    assert real["l3"].attention_source == "scaled" and real["l3"].max_tokens == 32768
    assert real["a100"].max_tokens == 4096 and real["a100"].max_decode_batch == 128
    assert real["a100"].max_kv == 4096 and real["a100"].max_chunk == 4096


@pytest.mark.data
def test_real_fitted_points_within_documented_tolerance():
    from llmds.sim.profiles.cost import load_profiles

    root = _real_root()
    for gpu, model in (("a100", "llama-2-7b"), ("h100", "llama-2-7b"), ("a100", "llama-3-8b")):
        lin, *_ = load_profiles(gpu, model, root)
        m = ProfileCostModel.from_profiles(gpu, model, root)
        on8 = lin.tokens % 8 == 0
        measured = sum(lin.medians[op][on8] for op in LINEAR_OPS)
        pred = np.array([m.linear_ms(int(t)) for t in lin.tokens[on8]])
        s = fit.error_summary(pred, measured)
        assert s["median"] < 0.015 and s["p95"] < 0.05 and s["max"] < 0.12, (gpu, model, s)
    a = load_profiles("a100", "llama-2-7b", root)[1]
    m = ProfileCostModel.from_profiles("a100", "llama-2-7b", root)
    d = fit.error_summary(m.decode_surface.at(a.decode_batch, a.decode_kv), a.decode_ms)
    assert d["max"] < 0.02
    p = fit.error_summary(m.prefill_surface.at(a.prefill_chunk, a.prefill_kv), a.prefill_ms)
    assert p["median"] < 0.001 and p["p95"] < 0.07 and p["max"] < 0.16


@pytest.mark.data
def test_real_monotone_over_the_whole_range(real):
    for m in real.values():
        t = [m.iteration_ms([], [(c, 0)]) for c in range(1, min(m.max_tokens, m.max_chunk), 13)]
        assert t == sorted(t)
        t = [m.iteration_ms([], [(512, kv)]) for kv in range(0, 3585, 31)]
        assert t == sorted(t)
        for kv in (0, 500, 4096):
            t = [m.iteration_ms([kv] * b, []) for b in range(1, 129)]
            assert t == sorted(t)
        t = [m.iteration_ms([kv] * 16, []) for kv in range(0, 4097, 17)]
        assert t == sorted(t)


@pytest.mark.data
def test_real_held_out_errors_meet_the_goals():
    from llmds.sim.profiles.validation import holdout_errors

    rows = holdout_errors(_real_root())
    assert {r["op"] for r in rows} >= {*LINEAR_OPS, "attn_decode", "attn_prefill", "cpu_overhead"}
    for r in rows:
        assert r["median"] < 0.05, r
        # H100 GEMMs step by up to 48% at tile boundaries (512 -> 520 tokens): the
        # profile's own neighbours miss by ~17% at p95 there, so the goal is A100's
        limit = 0.15 if r["gpu"] == "a100" else 0.18
        assert r["p95"] < limit, r


@pytest.mark.data
def test_real_beyond_range_and_gqa(real):
    with pytest.raises(ValueError, match=r"decode batch of 129 .*\(<= 128\)"):
        real["a100"].iteration_ms([100] * 129, [])
    with pytest.raises(ValueError, match=r"batch of tokens 4100"):
        real["a100"].iteration_ms([], [(4100, 0)])
    l3 = real["l3"]
    one = l3.decode_attention_ms(2, 1024)
    lin = l3.linear_ms(2)
    assert l3.iteration_ms([1024, 1024], []) == pytest.approx((lin + 1.1 * one) * 32)


@pytest.mark.data
def test_real_gqa_decode_rule_within_10_percent_of_llama3_rows():
    from llmds.sim.profiles.validation import gqa_decode_check

    for r in gqa_decode_check(_real_root()):
        assert abs(r["error"]) < 0.10, r
        assert r["unscaled_ms"] > 3 * r["measured_ms"]


@pytest.mark.data
def test_real_published_comparisons_and_bench_tables():
    from llmds.sim.profiles.validation import published_comparisons

    rows = published_comparisons(_real_root(), simulate=False)
    first = [r for r in rows if r["metric"].startswith("first-token")]
    assert len(first) == 2 and all(abs(r["error"]) < 0.21 for r in first)
    assert all(r["differences"] for r in rows)
    assert any(r["extrapolated"] for r in rows)  # batch 384 is beyond the profiled 128
    assert not any("requests/s" in r["metric"] for r in rows)  # simulated ones left out


@pytest.mark.data
@pytest.mark.slow
def test_bench_module_runs_quick(tmp_path):
    from llmds.bench import bench_sim_profiles
    from llmds.bench.harness import BenchContext

    _real_root()
    rec = bench_sim_profiles.run(BenchContext(quick=True, repeat=1, out_dir=tmp_path))
    kinds = {r["experiment"] for r in rec["rows"]}
    assert kinds == {"held-out error", "hand figure", "published", "kv capacity", "call cost",
                     "gqa decode check", "prefill rule"}
    sim = [r for r in rec["rows"] if r["experiment"] == "published"
           and "requests/s" in r.get("metric", "")]
    assert len(sim) == 3 and all(r["predicted"] > 0 and r["differences"] for r in sim)
    assert all(r["met"] for r in rec["ratios"] if r["name"].startswith("hand figure"))
