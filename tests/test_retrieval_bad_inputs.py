"""Hostile arguments to every public method of HNSW, RetrievalPipeline, fusion and embed.

Each (method, argument) pair is called with every value of ``HOSTILE`` (None, bools,
floats, NaN/inf, huge ints, strings, dicts, unhashables, 0-d/3-d arrays, wrong dims,
NaN/inf vectors, empty batches, ...) on a fresh object. A case is *clean* when

* the value is invalid and the call raises ``TypeError``/``ValueError``/``KeyError``/
  ``IndexError`` (or a documented ``llmds`` error) whose message names the argument,
  and the object is unchanged (same state, ``_check()`` passes); or
* the value is valid for that argument (listed in the case's ``ok``) and the call
  returns normally with the invariants intact.

Anything else is *unclear* (a Python internal, no argument named), *accepted* (an
invalid value taken silently) or *broken* (state changed or ``_check`` fails).
``python -m tests.test_retrieval_bad_inputs`` prints the tally (run it with an older
llmds first on ``PYTHONPATH`` to count what changed).
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmds.embed import SentenceTransformerEmbedder
from llmds.fusion import fuse_rrf, fuse_weighted, minmax_normalize, top_k_heap
from llmds.hnsw import HNSW
from llmds.retrieval_pipeline import RetrievalPipeline

DIM = 4
HOSTILE: dict[str, Callable[[], Any]] = {
    "None": lambda: None,
    "True": lambda: True,
    "1.5": lambda: 1.5,
    "nan": lambda: math.nan,
    "inf": lambda: math.inf,
    "-1": lambda: -1,
    "0": lambda: 0,
    "2**64": lambda: 2**64,
    "10**12": lambda: 10**12,
    "str": lambda: "x",
    "bytes": lambda: b"x",
    "dict": lambda: {"a": 1},
    "set": lambda: {1, 2},
    "nested_list": lambda: [[1]],
    "object": lambda: object(),
    "0d_array": lambda: np.array(3.0),
    "3d_array": lambda: np.zeros((1, 1, DIM)),
    "empty": lambda: [],
    "nan_vector": lambda: np.array([1.0, math.nan, 0.0, 0.0]),
    "inf_vector": lambda: np.array([1.0, 0.0, -math.inf, 0.0]),
    "huge_vector": lambda: np.full(DIM, 1e39),
    "wrong_dim": lambda: np.ones(DIM - 1),
    "str_list": lambda: ["a", "b", "c", "d"],
    "complex_vector": lambda: np.ones(DIM, dtype=complex),
    "bool_vector": lambda: np.ones(DIM, dtype=bool),
    "uint64_max": lambda: np.array([2**64 - 1], dtype=np.uint64),
}

_TMP = Path(tempfile.mkdtemp(prefix="llmds-bad-inputs-"))
(_TMP / "saves").mkdir()
atexit.register(shutil.rmtree, _TMP, True)


def make_hnsw() -> HNSW:
    rng = np.random.default_rng(0)
    index = HNSW(DIM, M=4, ef_construction=16, seed=0)
    index.add_items(rng.standard_normal((40, DIM)).astype(np.float32), np.arange(40))
    index.mark_deleted(39)
    return index


def make_pipeline() -> RetrievalPipeline:
    rng = np.random.default_rng(0)
    p = RetrievalPipeline(embedding_dim=DIM, seed=0, hot_threshold=1, brute_force_max=8)
    words = ["red", "green", "apple", "car", "kiwi"]
    p.add_documents(range(20), [f"{words[i % 5]} {words[(i * 3) % 5]}" for i in range(20)],
                    rng.standard_normal((20, DIM)),
                    [{"colour": words[i % 2], "n": i} if i % 3 else None for i in range(20)])
    p.search("red apple", rng.standard_normal(DIM))
    return p


def saved(kind: str) -> Path:
    """A saved HNSW file or pipeline folder (made once)."""
    path = _TMP / kind
    if not path.exists():
        (make_hnsw() if kind == "hnsw" else make_pipeline()).save(path)
    return path


class _FakeModel:
    def encode(self, items, **_):  # type: ignore[no-untyped-def]
        return np.ones((len(items), DIM), dtype=np.float32)


def make_embedder() -> SentenceTransformerEmbedder:
    """An embedder around a fake model (no torch needed): exercises ``embed``'s checks."""
    emb = SentenceTransformerEmbedder.__new__(SentenceTransformerEmbedder)
    emb._model, emb._dim, emb._batch_size, emb._normalize = _FakeModel(), DIM, 8, True
    emb.model_path = Path("fake")
    return emb


def state(obj: Any) -> Any:
    if isinstance(obj, HNSW):
        n = obj._num_slots
        return (len(obj), n, obj._vectors[:n].tobytes(), obj._links0[:n].tobytes(),
                obj._labels[:n].tobytes(), obj._deleted[:n].tobytes(), tuple(obj._meta),
                list(obj._free), dict(obj._id_to_slot), obj._ef_search,
                str(obj._rng.bit_generator.state))
    if isinstance(obj, RetrievalPipeline):
        store = obj._vectors
        return (repr(obj.stats()), store.vecs[: store.n].tobytes(),
                store.row_slot[: store.n].tobytes(), obj._docs.state()["metas"])
    return None


@dataclass(frozen=True)
class Case:
    """``call(obj, value)`` on a fresh ``make()``; ``names``: one must be in the message."""

    name: str
    make: Callable[[], Any]
    call: Callable[[Any, Any], Any]
    names: tuple[str, ...]
    ok: frozenset[str] = field(default_factory=frozenset)


def outcome(case: Case, label: str) -> str:
    obj = case.make()
    before = state(obj)
    try:
        case.call(obj, HOSTILE[label]())
    except (TypeError, ValueError, KeyError, IndexError, ImportError, FileNotFoundError,
            IsADirectoryError, NotADirectoryError) as exc:
        if isinstance(exc, ImportError | FileNotFoundError) and label in case.ok:
            return "clean"  # the value passed every check; the model itself is absent
        if state(obj) != before or not _invariants(obj):
            return "broken"
        if label in case.ok:
            return "unclear"  # a valid value was refused
        message = str(exc)
        return "clean" if any(n in message for n in case.names) else "unclear"
    except Exception:
        return "unclear"
    if not _invariants(obj):
        return "broken"
    return "clean" if label in case.ok else "accepted"


def _invariants(obj: Any) -> bool:
    try:
        if obj is not None and hasattr(obj, "_check"):
            obj._check()
    except AssertionError:
        return False
    return True


def _q() -> np.ndarray:
    return np.ones(DIM, dtype=np.float32)


def _ok(*labels: str) -> frozenset[str]:
    return frozenset(labels)


def _hnsw_ctor(arg: str) -> Callable[[Any, Any], Any]:
    return lambda _, v: HNSW(**({"dim": DIM} | {arg: v}))


def _pipe_ctor(arg: str) -> Callable[[Any, Any], Any]:
    return lambda _, v: RetrievalPipeline(**({"embedding_dim": DIM} | {arg: v}))


def _embedder_ctor(arg: str) -> Callable[[Any, Any], Any]:
    # a missing model folder: valid arguments end in FileNotFoundError, never load torch
    return lambda _, v: SentenceTransformerEmbedder(**({"model": _TMP / "no-model"} | {arg: v}))


def _in_tmp(v: Any, kind: str) -> Any:
    """A str path goes under the temporary folder (never into the working directory)."""
    return _TMP / "saves" / f"{kind}-{v}" if isinstance(v, str) else v


def _set_attr(attr: str) -> Callable[[Any, Any], Any]:
    return lambda obj, v: setattr(obj, attr, v)


def _none(_: Any = None) -> None:
    return None


MASK_OK = _ok("None", "empty", "bool_vector", "uint64_max")
CASES: list[Case] = [
    # ----------------------------------------------------------------- HNSW
    *[Case(f"HNSW(dim, {a}=)", _none, _hnsw_ctor(a), (a,), ok) for a, ok in (
        ("dim", _ok()), ("M", _ok()), ("ef_construction", _ok()), ("ef_search", _ok()),
        ("ml", _ok("None", "1.5", "10**12", "2**64")), ("seed", _ok("None", "0", "10**12")),
        ("metric", _ok()))],
    Case("HNSW(dim=)", _none, lambda _, v: HNSW(v), ("dim",)),
    Case("HNSW.add(vec=)", make_hnsw, lambda o, v: o.add(v, 100), ("vec",)),
    Case("HNSW.add(vec_id=)", make_hnsw, lambda o, v: o.add(_q(), v), ("vec_id",),
         _ok("0", "10**12")),
    Case("HNSW.add_items(vectors=)", make_hnsw, lambda o, v: o.add_items(v, [100]),
         ("vectors", "ids")),
    Case("HNSW.add_items(ids=)", make_hnsw, lambda o, v: o.add_items(np.ones((1, DIM)), v),
         ("ids",)),
    Case("HNSW.add_items(one bad row)", make_hnsw,
         lambda o, v: o.add_items([[1.0] * DIM, v], [100, 101]), ("vectors",),
         _ok("bool_vector")),
    Case("HNSW.search(query=)", make_hnsw, lambda o, v: o.search(v, 1), ("query",)),
    Case("HNSW.search(k=)", make_hnsw, lambda o, v: o.search(_q(), v), ("k",)),
    Case("HNSW.search(ef=)", make_hnsw, lambda o, v: o.search(_q(), 1, ef=v), ("ef",),
         _ok("None")),
    Case("HNSW.search(filter=)", make_hnsw, lambda o, v: o.search(_q(), 1, filter=v),
         ("filter",), MASK_OK),
    Case("HNSW.search_batch(queries=)", make_hnsw, lambda o, v: o.search_batch(v, 1),
         ("queries",), _ok("empty")),
    Case("HNSW.search_batch(k=)", make_hnsw, lambda o, v: o.search_batch(_q()[None], v),
         ("k",)),
    Case("HNSW.search_batch(ef=)", make_hnsw,
         lambda o, v: o.search_batch(_q()[None], 1, ef=v), ("ef",), _ok("None")),
    Case("HNSW.search_batch(filter=)", make_hnsw,
         lambda o, v: o.search_batch(_q()[None], 1, filter=v), ("filter",), MASK_OK),
    Case("HNSW.mark_deleted(vec_id=)", make_hnsw, lambda o, v: o.mark_deleted(v),
         ("vec_id",), _ok("0")),
    Case("HNSW.get_vector(vec_id=)", make_hnsw, lambda o, v: o.get_vector(v), ("vec_id",),
         _ok("0")),
    Case("HNSW.__contains__", make_hnsw, lambda o, v: v in o, ("",), frozenset(HOSTILE)),
    Case("HNSW.ef_search=", make_hnsw, _set_attr("ef_search"), ("ef_search",)),
    Case("HNSW.save(path=)", make_hnsw, lambda o, v: o.save(_in_tmp(v, "hnsw")), ("path",),
         _ok("str")),
    Case("HNSW.load(path=)", _none, lambda _, v: HNSW.load(v), ("path", "No such file")),
    Case("HNSW.load(mmap=)", _none, lambda _, v: HNSW.load(saved("hnsw"), mmap=v), ("mmap",),
         _ok("True")),
    # ----------------------------------------------------------- RetrievalPipeline
    *[Case(f"RetrievalPipeline({a}=)", _none, _pipe_ctor(a), (a,), ok) for a, ok in (
        ("embedding_dim", _ok()), ("seed", _ok("None", "0", "10**12")), ("fusion", _ok()),
        ("metric", _ok()), ("lexical_depth", _ok("10**12")), ("dense_depth", _ok("10**12")),
        ("rrf_k", _ok("0")), ("embedder", _ok("None")),
        ("k1", _ok("1.5", "0")),  # k1 <= 1000: a larger one underflows scores
        ("b", _ok("0")), ("analyzer", _ok("None")), ("M", _ok()),
        ("ef_construction", _ok()), ("ef_search", _ok()),
        ("brute_force_max", _ok("0", "10**12")), ("cache_budget", _ok("0", "10**12")),
        ("hot_threshold", _ok("10**12")), ("sketch_width", _ok()), ("sketch_depth", _ok()),
        ("decay_every", _ok("None", "10**12")), ("query_normalizer", _ok()),
        ("store_text", _ok("True")))],
    Case("add_document(doc_id=)", make_pipeline, lambda o, v: o.add_document(v, "red car"),
         ("doc_id",), _ok("-1", "10**12")),
    Case("add_document(text=)", make_pipeline, lambda o, v: o.add_document(99, v), ("text",),
         _ok("str")),
    Case("add_document(embedding=)", make_pipeline,
         lambda o, v: o.add_document(99, "red car", v), ("embedding",),
         _ok("None", "huge_vector")),
    Case("add_documents(doc_ids=)", make_pipeline,
         lambda o, v: o.add_documents(v, ["red car"]), ("doc_ids",)),
    Case("add_documents(texts=)", make_pipeline, lambda o, v: o.add_documents([99], v),
         ("texts",)),
    Case("add_documents(embeddings=)", make_pipeline,
         lambda o, v: o.add_documents([99], ["red car"], v), ("embeddings",), _ok("None")),
    Case("add_documents(one bad embedding)", make_pipeline,
         lambda o, v: o.add_documents([98, 99], ["red", "car"], [np.ones(DIM), v]),
         ("embeddings[1]",), _ok("None", "huge_vector")),
    Case("add_document(metadata=)", make_pipeline,
         lambda o, v: o.add_document(99, "red car", metadata=v), ("metadata",),
         _ok("None", "dict")),
    Case("add_documents(metadatas=)", make_pipeline,
         lambda o, v: o.add_documents([99], ["red car"], metadatas=v), ("metadatas",),
         _ok("None")),
    Case("add_documents(batch_size=)", make_pipeline,
         lambda o, v: o.add_documents([99], ["red car"], batch_size=v), ("batch_size",)),
    Case("add_documents(show_progress=)", make_pipeline,
         lambda o, v: o.add_documents([99], ["red car"], show_progress=v), ("show_progress",),
         _ok("True")),
    Case("add_documents(num_threads=)", make_pipeline,
         lambda o, v: o.add_documents([99], ["red car"], num_threads=v), ("num_threads",),
         _ok("-1", "10**12", "2**64")),
    Case("get_document(doc_id=)", make_pipeline, lambda o, v: o.get_document(v), ("doc_id",),
         _ok("0")),
    Case("search(filter=)", make_pipeline, lambda o, v: o.search("red", filter=v),
         ("filter",), _ok("None")),
    Case("search(filter={field: value})", make_pipeline,
         lambda o, v: o.search("red", filter={"colour": v}), ("filter",),
         _ok("True", "1.5", "-1", "0", "2**64", "10**12", "str")),
    Case("search(filter={field: {op: value}})", make_pipeline,
         lambda o, v: o.search("red", filter={"colour": {"$gte": v}}), ("filter",),
         _ok("1.5", "-1", "0", "2**64", "10**12", "inf")),
    Case("search(return_documents=)", make_pipeline,
         lambda o, v: o.search("red", return_documents=v), ("return_documents",), _ok("True")),
    Case("search_batch(queries=)", make_pipeline, lambda o, v: o.search_batch(v),
         ("queries",), _ok("empty", "str_list")),
    Case("search_batch(query_embeddings=)", make_pipeline,
         lambda o, v: o.search_batch(["red"], v), ("query_embeddings",), _ok("None")),
    Case("search_batch(top_k=)", make_pipeline,
         lambda o, v: o.search_batch(["red"], top_k=v), ("top_k",), _ok("10**12")),
    Case("search_batch(filter=)", make_pipeline,
         lambda o, v: o.search_batch(["red"], filter=v), ("filter",), _ok("None")),
    Case("search_batch(num_threads=)", make_pipeline,
         lambda o, v: o.search_batch(["red"], num_threads=v), ("num_threads",),
         _ok("-1", "10**12", "2**64")),
    Case("delete_document(doc_id=)", make_pipeline, lambda o, v: o.delete_document(v),
         ("doc_id",), _ok("0")),
    Case("has_embedding(doc_id=)", make_pipeline, lambda o, v: o.has_embedding(v),
         ("doc_id",), _ok("0")),
    Case("RetrievalPipeline.__contains__", make_pipeline, lambda o, v: v in o, ("",),
         frozenset(HOSTILE)),
    Case("search(query=)", make_pipeline, lambda o, v: o.search(v), ("query",), _ok("str")),
    Case("search(query_embedding=)", make_pipeline, lambda o, v: o.search("red", v),
         ("query_embedding",), _ok("None", "huge_vector")),
    Case("search(top_k=)", make_pipeline, lambda o, v: o.search("red", top_k=v), ("top_k",),
         _ok("10**12")),
    Case("search(fusion_weight=)", make_pipeline,
         lambda o, v: o.search("red", _q(), fusion_weight=v), ("fusion_weight",), _ok("0")),
    Case("search(fusion=)", make_pipeline, lambda o, v: o.search("red", fusion=v),
         ("fusion",), _ok("None")),
    Case("search(use_cache=)", make_pipeline, lambda o, v: o.search("red", use_cache=v),
         ("use_cache",), _ok("True")),
    Case("clear_cache(invalidate=)", make_pipeline, lambda o, v: o.clear_cache(v),
         ("invalidate",), _ok("True")),
    Case("pipeline.fusion=", make_pipeline, _set_attr("fusion"), ("fusion",)),
    Case("pipeline.lexical_depth=", make_pipeline, _set_attr("lexical_depth"),
         ("lexical_depth",), _ok("10**12")),
    Case("pipeline.dense_depth=", make_pipeline, _set_attr("dense_depth"), ("dense_depth",),
         _ok("10**12")),
    Case("RetrievalPipeline.save(path=)", make_pipeline, lambda o, v: o.save(_in_tmp(v, "pipe")),
         ("path",), _ok("str")),
    Case("RetrievalPipeline.load(path=)", _none, lambda _, v: RetrievalPipeline.load(v),
         ("path", "no saved")),
    *[Case(f"RetrievalPipeline.load({a}=)", _none,
           lambda _, v, a=a: RetrievalPipeline.load(saved("pipe"), **{a: v}), (a,), ok)
      for a, ok in (("embedder", _ok("None")), ("analyzer", _ok("None")),
                    ("query_normalizer", _ok()), ("mmap", _ok("True")))],
    # ------------------------------------------------------------------ fusion
    Case("minmax_normalize(scores=)", _none, lambda _, v: minmax_normalize(v), ("scores",),
         _ok("1.5", "-1", "0", "10**12", "nested_list", "0d_array", "3d_array", "empty",
             "huge_vector", "wrong_dim", "uint64_max")),
    Case("fuse_weighted(lexical_ids=)", _none,
         lambda _, v: fuse_weighted(v, [1.0], [2], [0.5]), ("lexical_ids", "lexical_scores")),
    Case("fuse_weighted(lexical_scores=)", _none,
         lambda _, v: fuse_weighted([1], v, [2], [0.5]), ("lexical_scores",),
         _ok("uint64_max")),
    Case("fuse_weighted(dense_ids=)", _none,
         lambda _, v: fuse_weighted([1], [1.0], v, [0.5]), ("dense_ids", "dense_scores")),
    Case("fuse_weighted(dense_scores=)", _none,
         lambda _, v: fuse_weighted([1], [1.0], [2], v), ("dense_scores",), _ok("uint64_max")),
    Case("fuse_weighted(weight=)", _none,
         lambda _, v: fuse_weighted([1], [1.0], [2], [0.5], v), ("weight",), _ok("0")),
    Case("fuse_rrf(lexical_ids=)", _none, lambda _, v: fuse_rrf(v, [2]), ("lexical_ids",),
         _ok("empty")),
    Case("fuse_rrf(dense_ids=)", _none, lambda _, v: fuse_rrf([1], v), ("dense_ids",),
         _ok("empty")),
    Case("fuse_rrf(weight=)", _none, lambda _, v: fuse_rrf([1], [2], v), ("weight",),
         _ok("0")),
    Case("fuse_rrf(k=)", _none, lambda _, v: fuse_rrf([1], [2], 0.5, v), ("k",), _ok("0")),
    Case("top_k_heap(ids=)", _none, lambda _, v: top_k_heap(v, [1.0], 1), ("ids", "scores")),
    Case("top_k_heap(scores=)", _none, lambda _, v: top_k_heap([1], v, 1), ("scores",),
         _ok("uint64_max")),
    Case("top_k_heap(k=)", _none, lambda _, v: top_k_heap([1, 2], [1.0, 2.0], v), ("k",),
         _ok("10**12")),
    # ------------------------------------------------------------------- embed
    *[Case(f"SentenceTransformerEmbedder({a}=)", _none, _embedder_ctor(a), (a,), ok)
      for a, ok in (("model", _ok("None")), ("device", _ok("str")),
                    ("batch_size", _ok()), ("normalize", _ok("True")),
                    ("num_threads", _ok("None")))],
    Case("SentenceTransformerEmbedder.embed(texts=)", make_embedder,
         lambda o, v: o.embed(v), ("texts",), _ok("empty", "str_list")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_arguments(case: Case) -> None:
    bad = {label: got for label in HOSTILE if (got := outcome(case, label)) != "clean"}
    assert not bad, f"{case.name}: {bad}"


def tally() -> Counter[str]:
    """Outcome counts over every (case, value) pair."""
    return Counter(outcome(case, label) for case in CASES for label in HOSTILE)


if __name__ == "__main__":  # pragma: no cover - a measuring aid
    import sys

    counts = tally()
    print(f"tried {sum(counts.values())}: {dict(counts)}")
    if "-v" in sys.argv:
        for case in CASES:
            for label in HOSTILE:
                if (got := outcome(case, label)) != "clean":
                    print(f"  {case.name} {label}: {got}")
