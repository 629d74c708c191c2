"""The examples run end to end (on a small slice, BM25 only: no torch needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llmds.bench.datasets import find_data_dir

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.data
@pytest.mark.slow
def test_rag_scifact_example_on_a_slice(capsys):
    data = find_data_dir()
    if data is None or not (data / "ir" / "scifact").is_dir():
        pytest.skip("SciFact not found (../shared/datasets/ir/scifact)")
    out = _load("rag_scifact").main(["--embedder", "none", "--limit", "300"])
    text = capsys.readouterr().out
    assert out["num_documents"] == 300 and out["num_queries"] > 5
    assert out["ndcg@10"] > 0.5  # BM25 on a slice that holds the judged documents
    assert "nDCG@10" in text and "saved and reloaded: same results" in text
