"""RetrievalPipeline as a RAG engine: str/int ids, stored documents and metadata, filters
inside both indexes (against a brute-force reference), search_batch, the embedder on
load, progress output, threads, pickle, and the new API's bad inputs."""

from __future__ import annotations

import copy
import io
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmds._progress import Progress
from llmds.errors import CorruptFileError
from llmds.filters import FilterIndex
from llmds.retrieval_pipeline import Document, RetrievalPipeline
from tests.hnsw_files import part_path, read_raw, refresh_manifest, write_raw
from tests.reference.filters import matches
from tests.reference.fusion import NaivePipeline

WORDS = ["apple", "banana", "cherry", "date", "fig", "grape", "kiwi"]


class Emb:
    """Deterministic bag-of-letters embedder; counts calls and texts."""

    def __init__(self, dim=8, name="letters"):
        self.dim, self.name, self.calls, self.texts = dim, name, 0, 0

    def embed(self, texts):
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower().replace(" ", ""):
                out[i, ord(ch) % self.dim] += 1.0
            out[i, 0] += 0.5
        return out


def corpus(n=40, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=3)) for _ in range(n)]
    metas = [{"year": int(2000 + i % 10), "src": ["a", "b", "c"][i % 3], "ok": bool(i % 2),
              "score": float(i) / 3, "tags": ["x", "y"]} for i in range(n)]
    return texts, metas


# ------------------------------------------------------------------ ids and documents
def test_string_ids_documents_and_metadata_round_trip(tmp_path):
    texts, metas = corpus(12)
    ids = [f"doc-{i}" for i in range(12)]
    p = RetrievalPipeline(embedding_dim=8, embedder=Emb(), metric="ip", hot_threshold=1)
    assert p.add_documents(ids, texts, metadatas=metas) == 12
    assert p.id_kind == "str" and "doc-3" in p and 3 not in p
    doc = p.get_document("doc-4")
    assert doc == Document("doc-4", None, texts[4], metas[4])
    doc.metadata["year"] = 1
    assert p.get_document("doc-4").metadata == metas[4]  # a fresh copy every time
    res = p.search("apple", top_k=5, return_documents=True)
    assert all(isinstance(d, Document) and d.id in ids for d in res)
    assert [(d.id, d.score) for d in res] == p.search("apple", top_k=5)
    p.delete_document("doc-0")
    p.save(tmp_path / "p")
    q = RetrievalPipeline.load(tmp_path / "p", embedder=Emb())
    q._check()
    assert q.get_document("doc-5") == p.get_document("doc-5") and "doc-0" not in q
    for query in ("apple fig", "kiwi", "date cherry banana"):
        for flt in (None, {"src": "a"}, {"year": {"$gte": 2004}}):
            assert q.search(query, top_k=6, filter=flt) == p.search(query, top_k=6, filter=flt)
    q.add_document("new", "apple apple", metadata={"src": "z"})  # keys continue after load
    assert q.search("apple", top_k=1, filter={"src": "z"}) [0][0] == "new"
    q._check()


def test_string_id_ties_go_to_the_first_added_int_ties_to_the_smaller_id():
    p = RetrievalPipeline(embedding_dim=2)
    p.add_documents(["b", "a", "c"], ["same words"] * 3)
    assert [d for d, _ in p.search("same")] == ["b", "a", "c"]
    q = RetrievalPipeline(embedding_dim=2)
    q.add_documents([5, 3, 4], ["same words"] * 3)
    assert [d for d, _ in q.search("same")] == [3, 4, 5]


def test_store_text_false_keeps_no_text_but_searches(tmp_path):
    p = RetrievalPipeline(embedding_dim=2, store_text=False)
    p.add_document(1, "red apples", metadata={"k": 1})
    assert p.get_document(1) == Document(1, None, None, {"k": 1})
    assert p.search("apples", return_documents=True)[0].text is None
    p.save(tmp_path / "p")
    q = RetrievalPipeline.load(tmp_path / "p")
    assert q.get_document(1).text is None and q.stats()["store_text"] is False


# ------------------------------------------------------------------ filters vs reference
META_VALUES = st.one_of(st.integers(0, 4), st.sampled_from(["a", "b", "c"]), st.booleans(),
                        st.sampled_from([0.5, 2.0, 3.5]), st.just(None), st.just(["a"]))
METAS = st.dictionaries(st.sampled_from(["f", "g", "h"]), META_VALUES, max_size=3)
SCALARS = st.one_of(st.integers(0, 4), st.sampled_from(["a", "b", "c"]), st.booleans(),
                    st.sampled_from([0.5, 2.0]))
FIELDS = st.sampled_from(["f", "g", "h"])
CONDS = st.one_of(
    SCALARS,
    st.dictionaries(st.sampled_from(["$eq", "$ne"]), SCALARS, min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, max_size=3),
                    min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                    st.sampled_from([0, 1, 2.5, 4]), min_size=1, max_size=2),
)
LEAF = st.dictionaries(FIELDS, CONDS, min_size=1, max_size=2)
FILTERS = st.recursive(LEAF, lambda inner: st.one_of(
    st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda f: {"$not": f}, inner)), max_leaves=5)


@settings(max_examples=150, deadline=None)
@given(metas=st.lists(METAS, min_size=1, max_size=25), filt=FILTERS, seed=st.integers(0, 99))
def test_filter_masks_match_the_reference(metas, filt, seed):
    index = FilterIndex()
    for slot, m in enumerate(metas):
        index.set(slot, m)
    rng = np.random.default_rng(seed)
    n = len(metas)
    for _ in range(int(rng.integers(0, 3))):  # swap-with-last deletes, as the store does
        if n > 1:
            slot = int(rng.integers(n))
            index.clear(slot)
            if slot != n - 1:
                index.move(n - 1, slot)
                metas[slot] = metas[n - 1]
            metas.pop()
            n -= 1
    index._check(n, metas)
    known = {f for m in metas for f in m}
    used = set()

    def walk(f):
        for k, v in f.items():
            if k in ("$and", "$or"):
                for x in v:
                    walk(x)
            elif k == "$not":
                walk(v)
            else:
                used.add(k)
    walk(filt)
    if not used <= known:
        with pytest.raises(ValueError, match="no document has the field"):
            index.mask(filt, n)
        return
    got = index.mask(filt, n)
    assert got.tolist() == [matches(m, filt) for m in metas]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), w=st.sampled_from([0.0, 0.3, 1.0]),
       fusion=st.sampled_from(["weighted", "rrf"]), top_k=st.integers(1, 8))
def test_filtered_search_equals_brute_force(data, n, w, fusion, top_k):
    """Lexical side exactly, dense side exactly (integer vectors, exact path)."""
    texts = data.draw(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)
                               .map(" ".join), min_size=n, max_size=n))
    vecs = data.draw(st.lists(st.none() | st.lists(st.integers(-2, 2), min_size=3,
                                                   max_size=3), min_size=n, max_size=n))
    metas = data.draw(st.lists(st.fixed_dictionaries({"f": st.integers(0, 4),
                                                      "g": st.sampled_from(["a", "b"])}),
                               min_size=n, max_size=n))
    filt = data.draw(st.sampled_from([{"f": {"$lte": 1}}, {"g": "a"}, {"f": {"$in": [0, 4]}},
                                      {"$or": [{"f": 3}, {"g": "b"}]}, {"$not": {"f": 2}}]))
    p = RetrievalPipeline(embedding_dim=3, metric="ip", lexical_depth=3, dense_depth=2)
    model = NaivePipeline(lexical_depth=3, dense_depth=2)
    p.add_documents(list(range(n)), texts, vecs, metas)
    for i in range(n):
        model.add(i, texts[i], vecs[i])
    query = data.draw(st.lists(st.sampled_from([*WORDS, "zebra"]), max_size=3).map(" ".join))
    qvec = data.draw(st.none() | st.lists(st.integers(-2, 2), min_size=3, max_size=3))
    got = p.search(query, qvec, top_k=top_k, fusion_weight=w, fusion=fusion, filter=filt)
    want = model.search(query, qvec, top_k, w, fusion, admit=lambda d: matches(metas[d], filt))
    assert got == want


@pytest.mark.parametrize("selectivity", [0.01, 0.1, 0.5, 0.9])
def test_selective_filters_still_fill_top_k_on_the_graph(selectivity):
    """1,200 documents, the graph path (brute_force_max=0, ef high): a filtered search
    returns top_k results when that many match, equal to exact filtered search."""
    rng = np.random.default_rng(1)
    n, dim = 1200, 16
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    keep = rng.random(n) < selectivity
    texts = [" ".join(rng.choice(WORDS, size=3)) for _ in range(n)]
    metas = [{"in": bool(k)} for k in keep]
    graph = RetrievalPipeline(embedding_dim=dim, seed=0, metric="ip", brute_force_max=0,
                              ef_search=400)
    exact = RetrievalPipeline(embedding_dim=dim, seed=0, metric="ip", brute_force_max=10**6)
    for p in (graph, exact):
        p.add_documents(range(n), texts, vecs, metas)
    k = 10
    for q in rng.standard_normal((5, dim)):
        for w in (0.0, 1.0, 0.5):
            a = graph.search("apple kiwi", q, top_k=k, fusion_weight=w, filter={"in": True})
            b = exact.search("apple kiwi", q, top_k=k, fusion_weight=w, filter={"in": True})
            assert [d for d, _ in a] == [d for d, _ in b]
            assert all(keep[d] for d, _ in a)
        assert len(a) == min(k, int(keep.sum()))


# ------------------------------------------------------------------ batches
def test_search_batch_equals_search_and_embeds_once():
    texts, metas = corpus(60)
    emb = Emb()
    p = RetrievalPipeline(embedding_dim=8, embedder=emb, metric="ip", brute_force_max=10,
                          hot_threshold=1)
    p.add_documents(range(60), texts, metadatas=metas, batch_size=7)
    assert emb.calls == 9  # ceil(60 / 7) calls of at most 7 texts
    queries = ["apple", "kiwi fig", "date", "zebra", "banana grape cherry"] * 2
    for flt in (None, {"src": "b"}, {"year": {"$lt": 2003}}):
        for docs in (False, True):
            calls = emb.calls
            batch = p.search_batch(queries, top_k=4, filter=flt, return_documents=docs,
                                   num_threads=2, use_cache=False)
            assert emb.calls == calls + 1
            single = [p.search(q, top_k=4, filter=flt, return_documents=docs,
                               use_cache=False) for q in queries]
            assert batch == single
    vecs = emb.embed(queries)
    assert p.search_batch(queries, vecs, top_k=3) == [p.search(q, v, top_k=3)
                                                      for q, v in zip(queries, vecs,
                                                                      strict=True)]
    assert p.search_batch([], top_k=3) == []


def test_progress_output(capsys):
    out = io.StringIO()
    with Progress(10, "embedding", True, out=out) as bar:
        bar.update(4)
        bar.update(6)
    assert "embedding: 0/10 (0%)" in out.getvalue() and "10/10 (100%)" in out.getvalue()
    p = RetrievalPipeline(embedding_dim=8, embedder=Emb())
    p.add_documents(range(5), ["apple"] * 5, batch_size=2, show_progress=True)
    assert "5/5" in capsys.readouterr().err
    p.add_documents(range(5, 10), ["apple"] * 5)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ the embedder on load
def test_load_needs_the_embedder_or_an_explicit_none(tmp_path):
    p = RetrievalPipeline(embedding_dim=8, embedder=Emb(), metric="ip")
    p.add_documents(range(5), ["apple pie", "kiwi", "fig", "date", "grape"])
    p.save(tmp_path / "p")
    with pytest.raises(ValueError, match=r"built with the embedder letters .*embedder=None"):
        RetrievalPipeline.load(tmp_path / "p")
    lexical = RetrievalPipeline.load(tmp_path / "p", embedder=None)
    assert lexical.embedder is None
    assert lexical.search("kiwi") == p.search("kiwi", fusion_weight=0.0)
    again = RetrievalPipeline.load(tmp_path / "p", embedder=Emb())
    assert again.search("kiwi") == p.search("kiwi")
    with pytest.raises(ValueError, match="embedder has dim 4"):
        RetrievalPipeline.load(tmp_path / "p", embedder=Emb(dim=4))
    lexical.save(tmp_path / "q")  # the identity survives a save without the embedder
    with pytest.raises(ValueError, match="built with the embedder"):
        RetrievalPipeline.load(tmp_path / "q")
    plain = RetrievalPipeline(embedding_dim=8)  # vectors given by the caller: no identity
    plain.add_document(1, "kiwi", np.ones(8))
    plain.save(tmp_path / "r")
    assert RetrievalPipeline.load(tmp_path / "r").embedder is None


def test_metadata_part_is_validated(tmp_path):
    p = RetrievalPipeline(embedding_dim=2)
    p.add_documents(["a", "b"], ["x y", "z"], metadatas=[{"k": 1}, None])
    p.save(tmp_path / "p")
    docs = part_path(tmp_path / "p", "docs")
    doc, arrays = read_raw(docs)
    for bad in (b'{"$k": 1}', b"[" * 100_000 + b"]" * 100_000):  # a $ name; too deep
        arrays["meta_bytes"] = np.frombuffer(bad, dtype=np.uint8)
        arrays["meta_offsets"] = np.array([0, len(bad), len(bad)], dtype=np.int64)
        write_raw(docs, doc, arrays)
        refresh_manifest(tmp_path / "p")
        with pytest.raises(CorruptFileError, match="metadata of document 0"):
            RetrievalPipeline.load(tmp_path / "p")


# ------------------------------------------------------------------ threads and pickle
def _threaded_pipeline():
    texts, metas = corpus(300, seed=3)
    rng = np.random.default_rng(3)
    p = RetrievalPipeline(embedding_dim=8, seed=0, metric="ip", brute_force_max=50,
                          hot_threshold=2, cache_budget=200)
    p.add_documents([f"d{i}" for i in range(300)], texts, rng.standard_normal((300, 8)),
                    metas, num_threads=1)
    queries = [(" ".join(rng.choice(WORDS, size=2)), rng.standard_normal(8)) for _ in range(12)]
    return p, queries


@pytest.mark.slow
def test_eight_threads_get_serial_results_including_the_cache():
    p, queries = _threaded_pipeline()
    filters = [None, {"src": "a"}, {"year": {"$gte": 2005}}]
    serial = {(i, j): p.search(q, v, top_k=7, filter=f, use_cache=False)
              for i, (q, v) in enumerate(queries) for j, f in enumerate(filters)}
    wrong = []

    def reader(seed):
        rng = np.random.default_rng(seed)
        for _ in range(150):
            i, j = int(rng.integers(len(queries))), int(rng.integers(len(filters)))
            q, v = queries[i]
            if rng.random() < 0.2:
                got = p.search_batch([q], [v], top_k=7, filter=filters[j], num_threads=2)[0]
            else:
                got = p.search(q, v, top_k=7, filter=filters[j])
            if got != serial[(i, j)]:
                wrong.append((i, j))

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not wrong and p.stats()["cache_hits"] > 0
    for (i, j), want in serial.items():  # the cache kept nothing wrong
        assert p.search(queries[i][0], queries[i][1], top_k=7, filter=filters[j]) == want
    p._check()


@pytest.mark.slow
def test_writer_next_to_readers_sees_before_or_after():
    p, queries = _threaded_pipeline()
    q, v = queries[0]
    before = p.search(q, v, top_k=5, use_cache=False)
    stop = threading.Event()
    seen, errors = set(), []

    def reader():
        while not stop.is_set():
            try:
                seen.add(tuple(d for d, _ in p.search(q, v, top_k=5)))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        p.add_document(f"new{i}", q, v, {"src": "new"})
        p.delete_document(f"new{i}")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert p.search(q, v, top_k=5, use_cache=False) == before
    p._check()


def test_pickle_and_deepcopy_are_independent():
    texts, metas = corpus(30)
    p = RetrievalPipeline(embedding_dim=8, embedder=Emb(), metric="ip", brute_force_max=5)
    p.add_documents([f"x{i}" for i in range(30)], texts, metadatas=metas, num_threads=1)
    for other in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        other._check()
        assert other.search("apple", top_k=8, filter={"ok": True}) == p.search(
            "apple", top_k=8, filter={"ok": True})
        other.delete_document("x1")
        assert "x1" in p and "x1" not in other
        assert other.get_document("x2") == p.get_document("x2")


# ------------------------------------------------------------------ bad inputs
def _snapshot(p):
    s = p.stats()
    return (s["num_documents"], s["num_embedded"], s["cache_invalidations"], s["id_kind"],
            tuple(s["metadata_fields"]))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: p.add_document(9, "x"), TypeError, "doc_id must be a str like"),
        (lambda p: p.add_documents(["z", 3], ["x", "y"]), TypeError, r"doc_ids\[1\] must be a str"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[{"k": {1, 2}}]), TypeError,
         r"metadatas\[0\] must be JSON-serialisable"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[{"k": float("nan")}]), TypeError,
         r"metadatas\[0\] must be JSON"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[{1: 2}]), TypeError,
         "keys must be str"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[{"$k": 2}]), ValueError, r"'\$'"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[[1]]), TypeError, "must be a dict"),
        (lambda p: p.add_documents(["z"], ["x"], metadatas=[None, None]), ValueError,
         "2 entries for 1"),
        (lambda p: p.add_document("z", "x", metadata="m"), TypeError, "metadata must be a dict"),
        (lambda p: p.add_documents(["z"], ["x"], batch_size=0), ValueError, "batch_size"),
        (lambda p: p.add_documents(["z"], ["x"], show_progress=1), TypeError, "show_progress"),
        (lambda p: p.search("x", filter={"src": {"$regex": "a"}}), ValueError,
         r"unknown operator '\$regex'"),
        (lambda p: p.search("x", filter={"$xor": []}), ValueError, r"unknown operator '\$xor'"),
        (lambda p: p.search("x", filter={"nope": 1}), ValueError, "no document has the field"),
        (lambda p: p.search("x", filter={"src": [1]}), TypeError, "must be a str, int"),
        (lambda p: p.search("x", filter={"year": {"$gt": "2000"}}), TypeError,
         "must be a number"),
        (lambda p: p.search("x", filter={"$and": []}), ValueError, "non-empty list"),
        (lambda p: p.search("x", filter={}), ValueError, "must not be empty"),
        (lambda p: p.search("x", filter="src=a"), TypeError, "filter must be a dict"),
        (lambda p: p.search("x", return_documents=None), TypeError, "return_documents"),
        (lambda p: p.search_batch("x"), TypeError, "queries must be a sequence"),
        (lambda p: p.search_batch(["x"], num_threads=0), ValueError, "num_threads"),
        (lambda p: p.search_batch(["x", "y"], np.ones((1, 4))), ValueError,
         r"shape \(2, 4\)"),
        (lambda p: p.get_document(3), TypeError, "doc_id must be a str"),
        (lambda p: p.get_document("missing"), KeyError, "missing"),
        (lambda p: p.delete_document(None), TypeError, "doc_id must be an int or a str"),
    ],
)
def test_new_api_bad_inputs_raise_and_change_nothing(call, error, match):
    p = RetrievalPipeline(embedding_dim=4, hot_threshold=1)
    p.add_documents(["a", "b"], ["x y", "x"], np.ones((2, 4)),
                    [{"src": "a", "year": 2001}, {"src": "b"}])
    p.search("x")
    before = _snapshot(p)
    with pytest.raises(error, match=match):
        call(p)
    assert _snapshot(p) == before and p.stats()["hot_queries"] == 1
    p._check()
