"""The file format of :class:`~llmds.inverted_index.InvertedIndex`, read trusting nothing.

An index file is one :mod:`llmds._persist` container of kind ``"llmds.InvertedIndex"``,
version 2. ``meta`` holds the settings (``k1``, ``b``, ``seal_postings``,
``merge_factor``), the analyzer as :meth:`Analyzer.spec` (``null`` for an analyzer
that cannot be named: the caller passes it to ``load``), and the counts
``num_ids``, ``num_live``, ``total_len``, ``num_terms``. Arrays::

    arena       uint8   (bytes,)       every segment's postings, back to back
    dir         uint32  (entries,)     per segment nterms + 1 offsets into its bytes
    segments    int64   (m, 7)         data_start, dir_start, nterms, doc_base,
                                       doc_end, nbytes, num_postings
    live        uint8   (num_ids,)     1 live, 0 deleted
    doc_len     int32   (num_ids,)     terms per document
    ext_ids     int64   (num_ids,)     the caller's doc ids
    df          int32   (num_terms,)   live documents per term
    vocab_blob  uint8   (bytes,)       the terms' UTF-8, back to back
    vocab_lens  int64   (num_terms,)   byte length of each term

Version 1 (llmds 0.2, container format 1) has the same arrays and stores the
analyzer as ``Analyzer.config()``, whose ``token_pattern`` is a regex: it is read
only when that regex is one of :data:`~llmds.analysis.TOKEN_PATTERNS` (a file never
supplies a regex; ``(\\w+\\s?)+$`` would make queries take seconds).

:func:`read_index` checks, after the container's checksums and before any kernel
runs, every fact the kernels rely on, and raises CorruptFileError naming the first
that fails: setting types and ranges; array dtypes and shapes against the counts
(so every count is capped by the file's size); the segment table (inside the
arena and directory, non-overlapping, disjoint increasing doc ranges, ``nterms <=
num_terms``); ``live`` in {0, 1}; ``doc_len >= 0``; every posting stream decoding
inside its byte range into in-range, strictly increasing doc ids with ``tf >= 1``
(:func:`llmds._kernels.bm25_validate.validate_segments`); ``df`` equal to the recomputed
live document frequencies; each live document's tfs summing to its ``doc_len``;
``num_live`` / ``total_len`` equal to their sums; unique live external ids; a
vocabulary of unique UTF-8 strings. An index that loads passes ``_check()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmds._index_segments import SEGMENT_LIMIT
from llmds._kernels import bm25_validate as _k
from llmds._persist import Container, read_container, write_container
from llmds._validate import check_int, check_number, show
from llmds.analysis import TOKEN_PATTERNS, Analyzer

KIND = "llmds.InvertedIndex"
VERSION = 2
READ_VERSIONS = (1, 2)
K1_MAX = 1000.0  # keeps every BM25 contribution > 0 (the kernels rely on it; see check_settings)
SEAL_MAX = 2**62
MAX_IDS = 2**31 - 2  # internal doc ids live in int32 arrays (touched, buffer pointers)
MAX_TERMS = 2**31 - 1  # term ids are int32 in the buffer
_META = ("k1", "b", "seal_postings", "merge_factor", "analyzer", "num_ids", "num_live",
         "total_len", "num_terms")
_ARRAYS = {"arena": ("uint8", 1), "dir": ("uint32", 1), "segments": ("int64", 2),
           "live": ("uint8", 1), "doc_len": ("int32", 1), "ext_ids": ("int64", 1),
           "df": ("int32", 1), "vocab_blob": ("uint8", 1), "vocab_lens": ("int64", 1)}
_SEG_ERRORS = {
    _k.SEG_TABLE: "points outside the arena, the directory or the document ids",
    _k.SEG_DIRECTORY: "has a directory that does not run from 0 to its size in order",
    _k.SEG_VARINT: "has a posting varint that runs past its term's bytes or 63 bits",
    _k.SEG_DOC_RANGE: "has a posting whose doc id lies outside the segment's range",
    _k.SEG_ORDER: "has a posting list whose doc ids are not strictly increasing",
    _k.SEG_TF: "has a term frequency above 2**31 - 1",
}


def check_settings(k1: object, b: object, seal_postings: object,
                   merge_factor: object) -> tuple[float, float, int, float]:
    """Validate the BM25 and segment settings (constructor and loader). O(1).

    ``k1 <= 1000`` keeps every score contribution a normal positive float, which
    the search kernel's "score 0 = untouched" bookkeeping relies on (with k1 near
    1e300 a contribution underflows to 0).
    """
    return (check_number(k1, "k1", minimum=0.0, maximum=K1_MAX),
            check_number(b, "b", minimum=0.0, maximum=1.0),
            check_int(seal_postings, "seal_postings", minimum=1, maximum=SEAL_MAX),
            check_number(merge_factor, "merge_factor", minimum=1.0))


@dataclass(frozen=True, slots=True)
class IndexParts:
    """Everything an InvertedIndex holds, as arrays (file arrays may be copy-on-write maps).

    ``df`` has one entry per term of ``terms``; ``live``, ``doc_len`` and ``ext_ids``
    one per internal doc id; ``segments`` is the ``(m, 7)`` table of the file format
    over ``arena``/``dir``; ``buffer`` is the unsealed documents
    (:meth:`~llmds._index_segments.WriteBuffer.export`), ``None`` when there are none.
    """

    k1: float
    b: float
    seal_postings: int
    merge_factor: float
    analyzer: Any  # an Analyzer or the caller's callable; None: saved with a custom one
    terms: list[str]
    df: np.ndarray
    live: np.ndarray
    doc_len: np.ndarray
    ext_ids: np.ndarray
    arena: np.ndarray
    dir: np.ndarray
    segments: np.ndarray
    buffer: dict[str, Any] | None = None

    @property
    def settings(self) -> tuple[float, float, int, float]:
        return self.k1, self.b, self.seal_postings, self.merge_factor


def write_index(path: str | os.PathLike[str], parts: IndexParts) -> int:
    """Write a sealed index (``parts.buffer`` empty) atomically; return the file size.

    The analyzer is stored as :meth:`Analyzer.spec` when it is a plain Analyzer,
    else as ``null`` (the caller passes it again to ``load``). O(index bytes).
    """
    is_live = parts.live.astype(bool)
    analyzer = parts.analyzer
    meta = {"k1": parts.k1, "b": parts.b, "seal_postings": parts.seal_postings,
            "merge_factor": parts.merge_factor,
            "analyzer": analyzer.spec() if type(analyzer) is Analyzer else None,
            "num_ids": int(parts.live.shape[0]), "num_live": int(is_live.sum()),
            "total_len": int(parts.doc_len[is_live].sum(dtype=np.int64)),
            "num_terms": len(parts.terms)}
    arrays = {"arena": parts.arena, "dir": parts.dir, "segments": parts.segments,
              "live": parts.live, "doc_len": parts.doc_len, "ext_ids": parts.ext_ids,
              "df": parts.df,
              "vocab_blob": np.frombuffer("".join(parts.terms).encode("utf-8"), dtype=np.uint8),
              "vocab_lens": np.fromiter((len(t.encode("utf-8")) for t in parts.terms),
                                        dtype=np.int64, count=len(parts.terms))}
    return write_container(path, KIND, VERSION, meta, arrays)


STATE_VERSION = 1  # of the dict pickling carries


def to_state(parts: IndexParts) -> dict[str, Any]:
    """The dict ``pickle`` carries: the parts by name, plus a version. O(1)."""
    return {"version": STATE_VERSION, **{f: getattr(parts, f) for f in IndexParts.__slots__}}


def from_state(state: object) -> IndexParts:
    """Parts from :func:`to_state` output (pickles are trusted: only the version is checked)."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        got = state.get("version") if isinstance(state, dict) else state
        raise ValueError(f"cannot unpickle an InvertedIndex from state version {show(got)}; "
                         f"this llmds reads version {STATE_VERSION}")
    return IndexParts(**{f: state[f] for f in IndexParts.__slots__})


def _setting(c: Container, check: Callable[..., Any], value: object, name: str,
             **kwargs: Any) -> Any:
    try:
        return check(value, name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise c.fail(f"meta {exc}") from None


def _analyzer(c: Container, stored: object,
              given: Analyzer | Callable[[str], Sequence[str]] | None) -> Any:
    """The analyzer to use: ``given``, else the one the file names (None: custom)."""
    if c.version == 1:
        if given is not None:  # 0.2 files may name a custom regex: the caller's wins
            if stored is not None and not isinstance(stored, dict):
                raise c.fail(f"analyzer must be an object or null, got {show(stored)}")
            return given
        if stored is None:
            return None
        if not isinstance(stored, dict):
            raise c.fail(f"analyzer must be an object or null, got {show(stored)}")
        regex = stored.get("token_pattern")
        names = {v: k for k, v in TOKEN_PATTERNS.items()}
        if not isinstance(regex, str) or regex not in names:
            raise c.fail(f"the analyzer's token_pattern {show(regex)} is not one of the named "
                         f"patterns ({', '.join(TOKEN_PATTERNS.values())}); a file never "
                         "supplies a regex: pass analyzer= to load")
        stored = {"name": "llmds.Analyzer", "version": 1, **stored,
                  "token_pattern": names[regex]}
    spec = None
    if stored is not None:
        try:
            spec = Analyzer.from_spec(stored)
        except ValueError as exc:
            raise c.fail(str(exc)) from None
    return given if given is not None else spec


def _vocabulary(c: Container, blob: np.ndarray, lens: np.ndarray) -> list[str]:
    v = lens.shape[0]
    if v and (int(lens.min()) < 0 or int(lens.max()) > blob.shape[0]):
        raise c.fail("vocab_lens holds a length outside [0, vocab_blob size]")
    # float sum first: the int64 sum of v lengths up to the blob size could wrap
    if v and (float(lens.sum(dtype=np.float64)) > 2.0**62
              or int(lens.sum()) != blob.shape[0]):
        raise c.fail("vocab_lens does not add up to the size of vocab_blob")
    data = blob.tobytes()
    ends = np.cumsum(lens).tolist()
    terms = []
    start = 0
    try:
        for end in ends:
            terms.append(data[start:end].decode("utf-8"))
            start = end
    except UnicodeDecodeError:
        raise c.fail(f"vocabulary term {len(terms)} is not valid UTF-8") from None
    if len(set(terms)) != v:
        raise c.fail("the vocabulary holds a term twice")
    return terms


def _check_segments(c: Container, segs: np.ndarray, arena: np.ndarray, dirs: np.ndarray,
                    n: int, v: int) -> None:
    """Table-level facts (vectorised); the kernel re-checks bounds as it decodes."""
    if segs.shape[1] != 7:
        raise c.fail(f"segments must have 7 columns, got {segs.shape[1]}")
    if not segs.shape[0]:
        return
    ds, dr, nt, base, end, nb, npost = (segs[:, i] for i in range(7))
    if int(segs.min()) < 0:
        raise c.fail("the segment table holds a negative value")
    if (nt > v).any():
        raise c.fail(f"a segment has more terms than the vocabulary ({v})")
    if (nb > min(arena.shape[0], SEGMENT_LIMIT)).any() or (
            ds > arena.shape[0] - nb).any():
        raise c.fail("a segment's bytes lie outside the arena")
    if (dr > dirs.shape[0] - nt - 1).any():
        raise c.fail("a segment's directory lies outside dir")
    if (base >= end).any() or (end > n).any() or (base[1:] < end[:-1]).any():
        raise c.fail("segment doc ranges must be non-empty, increasing, disjoint and < num_ids")
    if (ds[1:] < ds[:-1] + nb[:-1]).any() or (dr[1:] < dr[:-1] + nt[:-1] + 1).any():
        raise c.fail("segments overlap in the arena or the directory")
    if (npost > nb).any():
        raise c.fail("a segment claims more postings than bytes")


def read_index(path: str | os.PathLike[str], *, mmap: bool,
               analyzer: Analyzer | Callable[[str], Sequence[str]] | None) -> IndexParts:
    """Read and validate an index file (see the module docstring). O(file size).

    Raises CorruptFileError naming the first broken fact; the analyzer in the
    result is ``analyzer`` if given, else the file's (None if it stored none).
    """
    c = read_container(path, KIND, READ_VERSIONS, mmap=mmap)
    meta = dict(c.meta)
    if c.version == 1:
        meta.pop("kind", None)
    if sorted(meta) != sorted(_META):
        raise c.fail(f"meta must have the keys {', '.join(_META)}, "
                     f"got {', '.join(sorted(map(str, meta)))}")
    try:
        k1, b, seal, merge = check_settings(meta["k1"], meta["b"], meta["seal_postings"],
                                            meta["merge_factor"])
    except (TypeError, ValueError) as exc:
        raise c.fail(f"meta {exc}") from None
    n = _setting(c, check_int, meta["num_ids"], "num_ids", minimum=0, maximum=MAX_IDS)
    v = _setting(c, check_int, meta["num_terms"], "num_terms", minimum=0, maximum=MAX_TERMS)
    num_live = _setting(c, check_int, meta["num_live"], "num_live", minimum=0, maximum=n)
    total_len = _setting(c, check_int, meta["total_len"], "total_len", minimum=0)
    chosen = _analyzer(c, meta["analyzer"], analyzer)
    extra = sorted(set(c.arrays) - set(_ARRAYS))
    if extra:
        raise c.fail(f"unexpected array(s) {', '.join(extra)}")
    arr = {name: c.array(name, dtype, ndim) for name, (dtype, ndim) in _ARRAYS.items()}
    for name, count, label in (("live", n, "num_ids"), ("doc_len", n, "num_ids"),
                               ("ext_ids", n, "num_ids"), ("df", v, "num_terms"),
                               ("vocab_lens", v, "num_terms")):
        if arr[name].shape[0] != count:
            raise c.fail(f"array {name!r} has {arr[name].shape[0]} entries, expected "
                         f"{label} = {count}")
    terms = _vocabulary(c, arr["vocab_blob"], arr["vocab_lens"])
    live, doc_len, segs = arr["live"], arr["doc_len"], arr["segments"]
    if n and int(live.max()) > 1:
        raise c.fail("live must hold only 0 and 1")
    if n and int(doc_len.min()) < 0:
        raise c.fail("doc_len holds a negative length")
    _check_segments(c, segs, arr["arena"], arr["dir"], n, v)
    df_live = np.zeros(v, dtype=np.int64)
    tf_sum = np.zeros(n, dtype=np.int64)
    counts = np.zeros(segs.shape[0], dtype=np.int64)
    code, seg, term, pos = _k.validate_segments(
        arr["arena"], arr["dir"], np.ascontiguousarray(segs), n, v, live, df_live, tf_sum,
        counts)
    if code != _k.SEG_OK:
        where = f"segment {seg}" + (f", term {term}" if term >= 0 else "") + (
            f", arena byte {pos}" if pos >= 0 else "")
        raise c.fail(f"{where} {_SEG_ERRORS.get(code, 'is invalid')}")
    if segs.shape[0] and not np.array_equal(counts, segs[:, 6]):
        raise c.fail("a segment's num_postings does not match its postings")
    if not np.array_equal(df_live, arr["df"]):
        t = int(np.flatnonzero(df_live != arr["df"])[0])
        raise c.fail(f"df of term {t} is {int(arr['df'][t])}, but {int(df_live[t])} live "
                     "documents contain it")
    is_live = live.astype(bool)
    if not np.array_equal(tf_sum[is_live], doc_len[is_live]):
        raise c.fail("a live document's doc_len differs from the sum of its term frequencies")
    if int(is_live.sum()) != num_live:
        raise c.fail(f"num_live is {num_live}, but live marks {int(is_live.sum())} documents")
    if int(doc_len[is_live].sum(dtype=np.int64)) != total_len:
        raise c.fail("total_len differs from the sum of the live documents' doc_len")
    live_ext = arr["ext_ids"][is_live]
    if np.unique(live_ext).shape[0] != live_ext.shape[0]:
        raise c.fail("two live documents share an external doc id")
    return IndexParts(
        k1=k1, b=b, seal_postings=seal, merge_factor=merge, analyzer=chosen, terms=terms,
        df=arr["df"], live=live, doc_len=doc_len, ext_ids=arr["ext_ids"], arena=arr["arena"],
        dir=arr["dir"], segments=segs)
