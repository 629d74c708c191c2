"""RetrievalPipeline files: the bundle's parts, and a loader that trusts nothing in them.

A pipeline is a :mod:`llmds._persist` bundle (kind ``llmds.RetrievalPipeline``,
version 2) of three container files and a manifest:

* ``lexical``: the :class:`~llmds.inverted_index.InvertedIndex`, whose doc ids are
  the documents' keys (see :mod:`llmds._docstore`);
* ``dense``: the :class:`~llmds.hnsw.HNSW` graph, whose ids are the vector rows;
* ``docs``: per document slot its key, caller id (int64, or UTF-8 bytes and offsets
  for str ids), text and canonical-JSON metadata (bytes and offsets), and the slot
  of each vector row;
* the ``MANIFEST``: parameters, counts, the id kind and the embedder's identity
  (kind, name, model, dimension, normalisation).

Filter indexes are derived data: the loader rebuilds them from the checked
metadata (O(fields * documents)), which costs no more than validating a stored copy
would and leaves nothing in the file to disagree with.

``load`` checks, after the bundle's checksums: every parameter (type, range,
choice), each part through its own loader, every offset table (starts at 0,
non-decreasing, ends at its byte array), UTF-8, metadata JSON (objects with str
keys, no ``$`` names, depth-capped), ids and keys (distinct; int ids equal to their
keys; str keys below the counter), that the parts agree (documents, keys in the
BM25 index, vector rows 0..n-1 of the graph, one row per slot at most, dimension,
metric, graph parameters) and that cosine vectors have unit length. Any failure is a
:class:`~llmds.errors.CorruptFileError` naming what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from llmds._docstore import ID_KINDS, DocId, check_metadata
from llmds._persist import (
    MANIFEST,
    Container,
    read_bundle,
    read_container,
    write_bundle,
    write_container,
)
from llmds._validate import INT64_MAX, is_int
from llmds.errors import CorruptFileError
from llmds.hnsw import HNSW
from llmds.inverted_index import InvertedIndex

__all__ = ["KIND", "PARAMS", "Saved", "check_identity", "id_arrays", "read_ids",
           "read_pipeline", "write_pipeline"]

KIND = "llmds.RetrievalPipeline"
VERSION = 2
DOCS_KIND = "llmds.RetrievalPipeline.docs"
PARTS = ("lexical", "dense", "docs")
PARAMS = ("embedding_dim", "seed", "fusion", "metric", "lexical_depth", "dense_depth",
          "rrf_k", "k1", "b", "M", "ef_construction", "ef_search", "brute_force_max",
          "cache_budget", "hot_threshold", "sketch_width", "sketch_depth", "decay_every",
          "store_text")
_IDENTITY: dict[str, Any] = {"kind": str, "name": (str, type(None)),
                             "model": (str, type(None)), "dim": int,
                             "normalize": (bool, type(None))}


class Saved(NamedTuple):
    """A checked pipeline file: everything the pipeline needs to become it."""

    params: dict[str, Any]
    identity: dict[str, Any] | None
    lexical: InvertedIndex
    hnsw: HNSW
    vectors: npt.NDArray[np.float32]
    vector_slots: npt.NDArray[np.int64]
    id_kind: str | None
    ids: list[DocId]
    keys: npt.NDArray[np.int64]
    texts: list[str | None]
    metas: list[str | None]
    next_key: int
    manifest: Container


# --------------------------------------------------------------------------- writing
def _pack(items: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of ``items`` back to back and ``len + 1`` offsets (None: empty)."""
    blobs = [b"" if s is None else s.encode("utf-8") for s in items]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def id_arrays(doc_state: dict[str, Any]) -> dict[str, np.ndarray]:
    """``keys`` and the caller ids (``ids``, or ``id_bytes``/``id_offsets`` for str ids) of
    a :meth:`DocStore.state`; :func:`read_ids` reads them back. O(n)."""
    arrays: dict[str, np.ndarray] = {"keys": doc_state["keys"]}
    if doc_state["id_kind"] == "str":
        arrays["id_bytes"], arrays["id_offsets"] = _pack(doc_state["ids"])
    else:
        arrays["ids"] = np.asarray(doc_state["ids"], dtype=np.int64)
    return arrays


def write_pipeline(path: str | os.PathLike[str], meta: dict[str, Any], doc_state: dict[str, Any],
                   index: InvertedIndex, hnsw: HNSW, vector_slots: np.ndarray) -> None:
    """Write the bundle (see the module docstring). O(size of the parts)."""
    arrays = {**id_arrays(doc_state), "vector_slots": vector_slots}
    arrays["text_bytes"], arrays["text_offsets"] = _pack(doc_state["texts"])
    arrays["meta_bytes"], arrays["meta_offsets"] = _pack(doc_state["metas"])
    docs_meta = {"id_kind": doc_state["id_kind"], "next_key": doc_state["next_key"]}
    write_bundle(path, KIND, VERSION, meta, {
        "lexical": index.save, "dense": hnsw.save,
        "docs": lambda p: write_container(p, DOCS_KIND, 1, docs_meta, arrays)})


# --------------------------------------------------------------------------- reading
def _unpack(c: Container, name: str, n: int) -> list[str]:
    data = c.array(f"{name}_bytes", "uint8", 1)
    offsets = c.array(f"{name}_offsets", "int64", 1)
    if offsets.shape[0] != n + 1 or (n + 1 and (offsets[0] != 0 or offsets[-1] != data.shape[0]
                                                or (np.diff(offsets) < 0).any())):
        raise c.fail(f"{name}_offsets must rise from 0 to the size of {name}_bytes "
                     f"in {n + 1} entries")
    raw = data.tobytes()
    out = []
    for i in range(n):
        try:
            out.append(raw[offsets[i]: offsets[i + 1]].decode("utf-8"))
        except UnicodeDecodeError:
            raise c.fail(f"{name} {i} is not valid UTF-8") from None
    return out


def _metas(c: Container, n: int) -> list[str | None]:
    out: list[str | None] = []
    for i, text in enumerate(_unpack(c, "meta", n)):
        if not text:
            out.append(None)
            continue
        try:
            value = json.loads(text)
            out.append(check_metadata(value, f"metadata of document {i}"))
        except (ValueError, TypeError, RecursionError) as exc:
            raise c.fail(f"metadata of document {i} is not a JSON object llmds writes: "
                         f"{str(exc)[:200]}") from None
    return out


def check_identity(manifest: Container, value: Any, dim: int) -> dict[str, Any] | None:
    """A saved embedder identity (None, or the fields of :func:`embedder_identity`)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(_IDENTITY) or any(
            not isinstance(value.get(k), t) or (k == "dim" and isinstance(value[k], bool))
            for k, t in _IDENTITY.items() if k in value) or "kind" not in value:
        raise manifest.fail(f"embedder must be null or an object with {sorted(_IDENTITY)}")
    if value.get("dim") != dim:
        raise manifest.fail(f"the embedder's dim {value.get('dim')!r} is not embedding_dim {dim}")
    return value


def read_ids(c: Container, manifest: Container, n: int) -> tuple[str | None, list[DocId],
                                                                   np.ndarray, int]:
    """``(id_kind, ids, keys, next_key)`` of the container ``c`` (meta ``id_kind`` and
    ``next_key``, the arrays of :func:`id_arrays`) for ``n`` documents, all checked."""
    kind, raw_next = c.meta.get("id_kind"), c.meta.get("next_key")
    if (kind is not None and kind not in ID_KINDS) or (kind is None and n):
        raise c.fail(f"id_kind must be one of {ID_KINDS} (null only when empty), got {kind!r}")
    if not isinstance(raw_next, int) or isinstance(raw_next, bool) or \
            not 0 <= raw_next <= INT64_MAX:
        raise c.fail(f"next_key must be an int in [0, 2**63 - 1], got {raw_next!r}")
    next_key = raw_next
    keys = c.array("keys", "int64", 1)
    if keys.shape[0] != n or np.unique(keys).shape[0] != n:
        raise manifest.fail(f"the docs part must hold {n} distinct keys")
    ids: list[DocId]
    if kind == "str":
        str_ids = _unpack(c, "id", n)
        ids = list(str_ids)
        if len(set(str_ids)) != n or any(not d.strip() for d in str_ids):
            raise c.fail("str ids must be distinct and non-empty")
        if n and (keys.min() < 0 or keys.max() >= next_key):
            raise c.fail("the keys of str ids must lie in [0, next_key)")
    else:
        int_ids = c.array("ids", "int64", 1)
        if not np.array_equal(int_ids, keys):
            raise c.fail("int ids must equal their keys")
        ids = int_ids.tolist()
    return kind, ids, keys, next_key


def _check_counts(manifest: Container) -> tuple[dict[str, Any], int, int]:
    meta = manifest.meta
    p = meta.get("params")
    if set(meta) != {"params", "num_documents", "num_vectors", "embedder", "parts"} or \
            not isinstance(p, dict):
        raise manifest.fail("the manifest must hold params, num_documents, num_vectors and "
                            "embedder")
    if set(p) != set(PARAMS):
        missing, extra = sorted(set(PARAMS) - set(p)), sorted(set(p) - set(PARAMS))
        raise manifest.fail(f"params: missing {missing}, unknown {extra}")
    num_docs, n = meta["num_documents"], meta["num_vectors"]
    for key, value in (("num_documents", num_docs), ("num_vectors", n)):
        if not is_int(value) or not 0 <= value <= INT64_MAX:
            raise manifest.fail(f"{key} must be an int >= 0, got {value!r}")
    return p, int(num_docs), int(n)


def read_pipeline(path: str | os.PathLike[str], mmap: bool, analyzer: Any,
                  check_params: Callable[[dict[str, Any]], Any]) -> Saved:
    """Read and check a pipeline bundle. ``check_params(params)`` validates the
    parameters (the pipeline's constructor) and returns the new pipeline's graph
    settings as an :class:`HNSW`. O(size of the parts)."""
    if os.path.isfile(os.path.join(path, "pipeline.json")) and not os.path.exists(
            os.path.join(path, MANIFEST)):
        raise CorruptFileError(
            f"{os.fspath(path)!r} holds a RetrievalPipeline of llmds 0.2 (pipeline.json), "
            "a format this llmds no longer reads: rebuild the pipeline and save it again")
    manifest, parts = read_bundle(path, KIND, (VERSION,), PARTS)
    p, num_docs, n = _check_counts(manifest)
    try:
        graph: HNSW = check_params(p)
    except (TypeError, ValueError) as exc:
        raise manifest.fail(f"bad parameter: {exc}") from None
    identity = check_identity(manifest, manifest.meta["embedder"], graph.dim)
    index = InvertedIndex.load(parts["lexical"], mmap=mmap, analyzer=analyzer)
    hnsw = HNSW.load(parts["dense"], mmap=mmap)
    docs = read_container(parts["docs"], DOCS_KIND, (1,), mmap=mmap)
    h = hnsw.stats()
    want = {"dim": graph.dim, "metric": graph.metric, "M": p["M"],
            "ef_construction": p["ef_construction"], "ef_search": p["ef_search"],
            "num_vectors": n}
    for key, value in want.items():
        if h[key] != value:
            raise manifest.fail(f"the dense part has {key} {h[key]!r}, expected {value!r}")
    if (index.k1, index.b) != (p["k1"], p["b"]) or len(index) != num_docs:
        raise manifest.fail("the lexical part disagrees with the manifest (k1, b or "
                            "number of documents)")
    kind, ids, keys, next_key = read_ids(docs, manifest, num_docs)
    if not all(k in index for k in keys.tolist()):
        raise manifest.fail("every key of the docs part must be a document of the lexical part")
    texts: list[str | None] = list(_unpack(docs, "text", num_docs))
    if not p["store_text"]:
        texts = [None] * num_docs
    metas = _metas(docs, num_docs)
    slots = docs.array("vector_slots", "int64", 1)
    if slots.shape[0] != n or np.unique(slots).shape[0] != n or (
            n and (slots.min() < 0 or slots.max() >= num_docs)):
        raise manifest.fail(f"vector_slots must hold {n} distinct document slots")
    if any(r not in hnsw for r in range(n)):
        raise manifest.fail("the dense part's ids must be the rows 0..num_vectors - 1")
    vectors = hnsw.get_vectors(np.arange(n, dtype=np.int64))
    if graph.metric == "ip" and p["metric"] == "cosine" and n and not np.allclose(
            np.linalg.norm(vectors.astype(np.float64), axis=1), 1.0, atol=1e-4):
        raise manifest.fail("cosine vectors must have unit length")
    return Saved(p, identity, index, hnsw, vectors, slots.astype(np.int64), kind, ids,
                 keys.astype(np.int64), texts, metas, next_key, manifest)
