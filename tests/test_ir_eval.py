import math

import pytest

from llmds.bench.ir_data import load_beir
from llmds.bench.ir_eval import mean_ndcg, mean_recall, ndcg_at_k, recall_at_k


def test_ndcg_matches_hand_computation():
    judged = {"a": 2, "b": 1, "c": 0}
    dcg = 1 / math.log2(2) + 2 / math.log2(4)  # b at rank 1, a at rank 3
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["b", "x", "a", "c"], judged, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["a", "b"], judged, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], judged, 1) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0


def test_recall_counts_only_positive_grades():
    judged = {"a": 1, "b": 3, "c": 0}
    assert recall_at_k(["c", "a"], judged, 2) == 0.5
    assert recall_at_k(["c", "a", "b"], judged, 100) == 1.0
    assert recall_at_k([], judged, 10) == 0.0


def test_means_and_missing_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    results = {"q1": ["a"]}
    assert mean_ndcg(results, qrels, 10) == 0.5
    assert mean_recall(results, qrels, 100) == 0.5
    assert mean_ndcg({}, {}, 10) == 0.0


def test_bad_k():
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(["a"], {"a": 1}, 0)


def test_load_beir_layout(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "x y"}\n{"_id": "d2", "title": "", "text": " "}\n'
        '{"_id": "d3", "title": "", "text": "z"}\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "1", "text": "x"}\n{"_id": "2", "text": "y"}\n{"_id": "3", "text": "n"}\n',
        encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\td1\t1\n2\td3\t0\n", encoding="utf-8")
    c = load_beir(tmp_path)
    assert c.doc_ids == ["d1", "d3"] and c.docs == ["T x y", " z"]
    assert c.query_ids == ["1"] and c.queries == ["x"]
    assert c.qrels == {"1": {"d1": 1}}


def test_load_beir_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus file .*corpus\.jsonl"):
        load_beir(tmp_path)
