"""The documents and terms of an :class:`~llmds.inverted_index.InvertedIndex`.

:class:`DocTable` maps the caller's int doc ids to dense internal ids (in insertion
order; a replaced or deleted document keeps its internal id as a tombstone until
the index is rebuilt) and terms to dense term ids, and keeps what BM25 needs about
them: ``live`` (uint8), ``doc_len`` (int32 terms per document), ``ext_ids`` (int64),
``df`` (int32 live documents per term), ``N = num_live`` and ``total_len``. Arrays
grow by doubling; the kernels read them directly. Memory: ~25 bytes per internal id
plus the dicts, 4 bytes per term plus the vocabulary dict.

Not thread-safe: the owning index changes it only under its write lock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmds._index_segments import grown

__all__ = ["DocTable"]


class DocTable:
    """Internal ids <-> doc ids, liveness, lengths, the vocabulary and document frequencies.

    Invariants (asserted by :meth:`check`): ``ext2int`` holds exactly the live ids
    and agrees with ``ext_ids``; ``num_live`` and ``total_len`` sum over live ids;
    ``vocab`` and ``terms`` are inverse. ``df`` is checked by the owner, which can
    count postings.

    Thread safety: not thread-safe; the owning index writes only under its write lock.
    """

    __slots__ = ("df", "doc_len", "ext2int", "ext_ids", "live", "num_ids", "num_live", "terms",
                 "total_len", "vocab")

    def __init__(self, terms: list[str], df: np.ndarray, live: np.ndarray, doc_len: np.ndarray,
                 ext_ids: np.ndarray) -> None:
        """A table over validated arrays (``live``/``doc_len``/``ext_ids`` per internal id;
        they may be copy-on-write maps: growth copies them). O(ids + terms)."""
        self.terms = list(terms)
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        self.df = grown(np.array(df, dtype=np.int32), 1024)
        self.live = grown(live, 1024)
        self.doc_len = grown(doc_len, 1024)
        self.ext_ids = grown(ext_ids, 1024)
        self.num_ids = live.shape[0]
        is_live = live.astype(bool)
        self.num_live = int(is_live.sum())
        self.total_len = int(doc_len[is_live].sum(dtype=np.int64))
        self.ext2int = {e: i for i, e in enumerate(ext_ids.tolist()) if live[i]}

    @property
    def avgdl(self) -> float:
        """Mean live document length (1.0 for an empty index, so the kernels never divide
        by zero)."""
        return self.total_len / self.num_live if self.num_live and self.total_len else 1.0

    def term_ids(self, terms: list[str]) -> npt.NDArray[np.int64]:
        """Ids of ``terms``, adding new ones to the vocabulary (df 0). O(len(terms))."""
        vocab = self.vocab
        tids = []
        for t in terms:
            tid = vocab.get(t)
            if tid is None:
                tid = len(self.terms)
                self.terms.append(t)
                vocab[t] = tid
            tids.append(tid)
        self.df = grown(self.df, len(self.terms))
        return np.array(tids, dtype=np.int64)

    def add(self, doc_id: int, tids: npt.NDArray[np.int64], length: int) -> int:
        """Give ``doc_id`` the next internal id, counting its unique terms ``tids`` in df.

        ``doc_id`` must not be live. Returns the internal id. Amortised O(len(tids)).
        """
        internal = self.num_ids
        if internal >= self.live.shape[0]:
            self.live = grown(self.live, internal + 1)
            self.doc_len = grown(self.doc_len, internal + 1)
            self.ext_ids = grown(self.ext_ids, internal + 1)
        self.df[tids] += 1
        self.live[internal] = 1
        self.doc_len[internal] = length
        self.ext_ids[internal] = doc_id
        self.ext2int[doc_id] = internal
        self.num_ids = internal + 1
        self.num_live += 1
        self.total_len += length
        return internal

    def remove(self, doc_id: int, tids: npt.NDArray[np.int64]) -> None:
        """Tombstone live ``doc_id`` whose unique terms are ``tids``. O(len(tids))."""
        internal = self.ext2int.pop(doc_id)
        self.df[tids] -= 1
        self.live[internal] = 0
        self.num_live -= 1
        self.total_len -= int(self.doc_len[internal])

    def export(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Copies of ``terms, df, live, doc_len, ext_ids`` (their used parts). O(ids + terms)."""
        n, v = self.num_ids, len(self.terms)
        return (list(self.terms), self.df[:v].copy(), self.live[:n].copy(),
                self.doc_len[:n].copy(), self.ext_ids[:n].copy())

    def check(self) -> None:
        """Assert the invariants above (O(ids + terms)); for tests."""
        n, v = self.num_ids, len(self.terms)
        live = self.live[:n].astype(bool)
        assert int(live.sum()) == self.num_live == len(self.ext2int)
        assert int(self.doc_len[:n][live].sum()) == self.total_len
        for e, i in self.ext2int.items():
            assert live[i] and self.ext_ids[i] == e
        assert len(self.vocab) == v and all(self.vocab[t] == i for i, t in enumerate(self.terms))
        assert self.df.shape[0] >= v and self.live.shape[0] >= n
