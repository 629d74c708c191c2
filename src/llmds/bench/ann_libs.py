"""The ANN libraries of the HNSW benchmark behind one interface: llmds, hnswlib, faiss, usearch.

Each adapter builds an index (``build``), sets its beam width (``set_ef``) and thread
count for batch calls (``set_threads``; each library's own knob: llmds and hnswlib
``num_threads``, faiss ``omp_set_num_threads``, usearch ``threads``), answers one
query (``one``, always on the calling thread) or a batch (``batch``, ids only), and
reports its memory. All use M=16, ef_construction=200 and squared L2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.hnsw import HNSW

__all__ = ["EF_CONSTRUCTION", "AnnLib", "K", "M", "libraries"]

M = 16
EF_CONSTRUCTION = 200
K = 10


class AnnLib:
    """One library: build, set_ef, set_threads, one(q), batch(Q) -> ids, memory_bytes."""

    name = ""
    threads = 1
    one: Callable[[np.ndarray], object]

    def build(self, base: np.ndarray, seed: int, threads: int = 1) -> None:
        raise NotImplementedError

    def set_ef(self, ef: int) -> None:
        raise NotImplementedError

    def set_threads(self, threads: int) -> None:
        self.threads = threads

    def batch(self, queries: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def memory_bytes(self) -> int | None:
        return None

    def release(self) -> None:
        """Drop the index so the next library builds in free memory."""
        self.__dict__.pop("index", None)

    def fresh(self) -> AnnLib:
        """A new adapter of the same library, with no index yet."""
        return type(self)()


class _Ours(AnnLib):
    name = "llmds"

    def build(self, base: np.ndarray, seed: int, threads: int = 1) -> None:
        self.index = HNSW(base.shape[1], M=M, ef_construction=EF_CONSTRUCTION, seed=seed)
        self.index.add_items(base, np.arange(base.shape[0]), num_threads=threads)

    def set_ef(self, ef: int) -> None:
        search = self.index.search
        self.ef = ef
        self.one = lambda q: search(q, K, ef)

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search_batch(queries, K, ef=self.ef, num_threads=self.threads)[0]

    def memory_bytes(self) -> int | None:
        return int(self.index.stats()["memory_bytes"])


class _Peer(AnnLib):
    """A peer library: the adapter holds its imported module."""

    def __init__(self, mod: Any) -> None:
        self.mod = mod

    def fresh(self) -> AnnLib:
        return type(self)(self.mod)


class _Hnswlib(_Peer):
    name = "hnswlib"

    def build(self, base: np.ndarray, seed: int, threads: int = 1) -> None:
        self.index = self.mod.Index(space="l2", dim=base.shape[1])
        self.index.init_index(max_elements=base.shape[0], ef_construction=EF_CONSTRUCTION, M=M,
                              random_seed=seed)
        self.index.set_num_threads(1)
        self.index.add_items(base, np.arange(base.shape[0]), num_threads=threads)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)
        knn = self.index.knn_query
        self.one = lambda q: knn(q, k=K, num_threads=1)

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.knn_query(queries, k=K, num_threads=self.threads)[0]

    def memory_bytes(self) -> int | None:
        try:
            return int(self.index.index_file_size())
        except AttributeError:
            return None


class _Faiss(_Peer):
    name = "faiss"

    def __init__(self, mod: Any) -> None:
        super().__init__(mod)
        mod.omp_set_num_threads(1)

    def build(self, base: np.ndarray, seed: int, threads: int = 1) -> None:
        self.mod.omp_set_num_threads(threads)
        self.index = self.mod.IndexHNSWFlat(base.shape[1], M)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(base)
        self.mod.omp_set_num_threads(self.threads)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef
        search = self.index.search
        self.one = lambda q: search(q[None, :], K)

    def set_threads(self, threads: int) -> None:
        self.threads = threads
        self.mod.omp_set_num_threads(threads)

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search(queries, K)[1]

    def memory_bytes(self) -> int | None:
        return int(self.mod.serialize_index(self.index).nbytes)


class _Usearch(_Peer):
    name = "usearch"

    def build(self, base: np.ndarray, seed: int, threads: int = 1) -> None:
        self.index = self.mod.Index(ndim=base.shape[1], metric="l2sq", dtype="f32",
                                    connectivity=M, expansion_add=EF_CONSTRUCTION)
        self.index.add(np.arange(base.shape[0]), base, threads=threads)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef
        search = self.index.search
        self.one = lambda q: search(q, K, threads=1)

    def batch(self, queries: np.ndarray) -> np.ndarray:
        found = self.index.search(queries, K, threads=self.threads)
        return np.asarray(found.keys).astype(np.int64)

    def memory_bytes(self) -> int | None:
        return int(self.index.memory_usage)


def libraries() -> tuple[list[AnnLib], list[dict[str, Any]]]:
    """llmds and every importable peer, plus a ``skipped`` row for each missing one."""
    libs: list[AnnLib] = [_Ours()]
    skipped_rows = []
    for module, cls in (("hnswlib", _Hnswlib), ("faiss", _Faiss), ("usearch.index", _Usearch)):
        mod = harness.peer(module)
        if mod is None:
            skipped_rows.append({"impl": module.split(".")[0],
                                 "skipped": harness.skipped(module)})
        else:
            libs.append(cls(mod))
    return libs, skipped_rows
