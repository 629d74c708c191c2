import json
from pathlib import Path

import numpy as np
import pytest

from llmds.bench import BENCHMARKS, available, load
from llmds.bench.datasets import find_data_dir
from llmds.bench.harness import (
    BenchContext,
    measure,
    measure_interleaved,
    peer,
    ratio,
    result_record,
    skipped,
    write_record,
)
from llmds.bench.workloads import multi_turn_chat_trace, zipf_keys


def test_measure_runs_setup_each_time_and_counts_ops():
    calls = {"setup": 0, "fn": 0}

    def setup():
        calls["setup"] += 1
        return [1, 2, 3]

    def fn(state):
        assert state == [1, 2, 3]
        state.clear()  # destructive: a fresh state is needed per run
        calls["fn"] += 1

    m = measure(fn, ops=3, setup=setup, repeat=5, warmup=2)
    assert calls == {"setup": 7, "fn": 7}
    assert len(m.wall_s) == len(m.cpu_s) == 5
    d = m.to_dict()
    assert d["ops"] == 3 and d["wall_s"]["min"] <= d["wall_s"]["median"] <= d["wall_s"]["max"]
    assert m.peak_rss_mb > 0


def test_measure_rejects_zero_repeat():
    with pytest.raises(ValueError, match="repeat"):
        measure(lambda s: None, ops=1, repeat=0)


def test_ratio_handles_missing_peer():
    assert ratio(10.0, 5.0) == 2.0
    assert ratio(10.0, None) is None
    assert ratio(10.0, 0.0) is None
    assert ratio(10.0, float("nan")) is None


def test_peer_missing_is_reported_not_dropped():
    assert peer("llmds_no_such_peer_library") is None
    assert "not importable" in skipped("llmds_no_such_peer_library")
    assert peer("json") is json


def test_result_record_marks_goals(tmp_path):
    ctx = BenchContext(quick=True)
    rec = result_record(
        "demo", "Demo", ctx=ctx, params={"n": 1}, data="synthetic, seed 0",
        rows=[{"impl": "llmds", "ops_per_s": np.float64(3.0)}, {"impl": "peer", "skipped": "x"}],
        ratios=[
            {"name": "a", "value": 3.0, "goal": 2.0},
            {"name": "b", "value": 1.0, "goal": 2.0},
            {"name": "c", "value": 0.5, "goal": 1.0, "higher_is_better": False},
            {"name": "d", "value": None, "goal": 1.0},
        ],
    )
    assert [r["met"] for r in rec["ratios"]] == [True, False, True, None]
    assert rec["size"] == "quick" and rec["env"]["versions"]["numpy"]
    path = write_record(rec, tmp_path)
    assert json.loads(path.read_text())["rows"][0]["ops_per_s"] == 3.0


def test_find_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMDS_DATA", raising=False)
    assert find_data_dir(tmp_path) == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="--data"):
        find_data_dir(tmp_path / "missing")
    monkeypatch.setenv("LLMDS_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="LLMDS_DATA"):
        find_data_dir()
    monkeypatch.setenv("LLMDS_DATA", str(tmp_path))
    assert find_data_dir() == tmp_path.resolve()


def test_context_dataset_lookup(tmp_path):
    (tmp_path / "ir" / "adi").mkdir(parents=True)
    ctx = BenchContext(data_dir=tmp_path)
    assert ctx.dataset("ir", "adi") == tmp_path / "ir" / "adi"
    assert ctx.dataset("ir", "nope") is None
    assert BenchContext().dataset("ir") is None


def test_unknown_benchmark_name():
    with pytest.raises(KeyError, match="unknown benchmark"):
        load("no-such-bench")


def test_every_available_benchmark_has_the_protocol():
    for name in available():
        module = load(name)
        assert name == module.NAME
        assert isinstance(module.TITLE, str) and callable(module.run)
    assert set(available()) <= set(BENCHMARKS)


def test_zipf_keys_seeded_and_skewed():
    a = zipf_keys(20_000, 1000, s=1.1, seed=3)
    assert np.array_equal(a, zipf_keys(20_000, 1000, s=1.1, seed=3))
    assert a.min() >= 0 and a.max() < 1000
    counts = np.bincount(a, minlength=1000)
    top = np.sort(counts)[::-1]
    assert top[0] > 20 * np.median(counts)  # heavy head
    with pytest.raises(ValueError):
        zipf_keys(10, 0)


def test_chat_trace_follow_ups_extend_history():
    trace = multi_turn_chat_trace(400, seed=5)
    assert [r.request_id for r in trace] == list(range(400))
    last = {}
    follow_ups = 0
    for r in trace:
        assert 20 <= len(r.output) <= 300
        if r.turn == 0:
            assert 550 <= len(r.prompt) <= 1000
        else:
            follow_ups += 1
            prev = last[r.conversation]
            history = np.concatenate([prev.prompt, prev.output])
            assert np.array_equal(r.prompt[: len(history)], history)
            assert 20 <= len(r.prompt) - len(history) <= 200
            assert r.turn == prev.turn + 1
        last[r.conversation] = r
    assert 0.3 < follow_ups / 400 < 0.5
    again = multi_turn_chat_trace(400, seed=5)
    assert all(np.array_equal(a.prompt, b.prompt) for a, b in zip(trace, again, strict=True))


def test_chat_trace_bad_args():
    with pytest.raises(ValueError, match="num_requests"):
        multi_turn_chat_trace(-1)
    with pytest.raises(ValueError, match="follow_up_prob"):
        multi_turn_chat_trace(10, follow_up_prob=1.5)


def test_data_dir_default_is_shared_when_present(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMDS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # only the repository-relative default can match
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    expected = shared.resolve() if shared.is_dir() else None
    assert find_data_dir() == expected


def test_measure_interleaved_alternates_cases():
    order = []

    def make(name):
        def fn(state):
            assert state == name
            order.append(name)
        return fn, (lambda: name)

    out = measure_interleaved({"a": make("a"), "b": make("b")}, ops=10, repeat=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-ups, then rounds in turn
    assert set(out) == {"a", "b"}
    assert all(len(m.cpu_s) == 3 and m.ops == 10 for m in out.values())
    with pytest.raises(ValueError, match="repeat"):
        measure_interleaved({"a": make("a")}, ops=1, repeat=0)
