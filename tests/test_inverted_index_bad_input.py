"""Hostile arguments to every public call of InvertedIndex, Analyzer and llmds.postings.

Each case is one call with one bad (or odd but valid) argument, all others valid.
A bad value must raise ``TypeError``/``ValueError``/``KeyError`` (``OSError`` for a
path the OS refuses) whose message names the argument and is not a Python internal
("unhashable type", "object is not iterable", ...), and the index must be unchanged
(same stats, vocabulary, results; ``_check()`` passes). An odd but valid value (a
lone surrogate in a query, NUL bytes, a megabyte of text, NumPy scalars) must work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmds.analysis import Analyzer
from llmds.inverted_index import CollectionStats, InvertedIndex
from llmds.postings import decode_varints, encode_varints, zigzag_decode, zigzag_encode

NAN = float("nan")
INF = float("inf")
HUGE = 2**70


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


OBJ = _Opaque()
# Wording of Python internals that name no argument: never acceptable in a message.
INTERNAL = re.compile(
    r"unhashable type|object is not iterable|not supported between|has no attribute|"
    r"invalid literal|object cannot be interpreted|must be real number|"
    r"argument must be|object of type|out of bounds for|cannot convert|"
    r"expected str, bytes or os\.PathLike|codec can't|could not convert|"
    r"Python int too large|setting an array element|only integer scalar")

BAD_INT = [None, True, 1.5, NAN, "7", [1], {"a": 1}, b"1", HUGE, -HUGE, OBJ, 1 + 2j]
BAD_STR = [None, 1, 1.5, b"text", ["a"], {"a": 1}, OBJ]
BAD_BOOL = [None, 1, 0, "yes", 1.5, [True], OBJ]
BAD_TOP_K = [None, True, 1.5, NAN, "3", 0, -1, [3], -HUGE, OBJ]
EMPTY = ["", "   ", "\t\n", "\u3000"]
ODD_TEXT = ["nul\x00byte text", "ﬁne ligature", "e\u0301 combining", "\u202eevil rtl",
            "x", "!!! ???", "Ω" * 1000, "word " * 100_000, "a" * 1_000_000]
SURROGATE = "lone \ud800 surrogate"


def make_index() -> InvertedIndex:
    index = InvertedIndex()
    index.add_document(1, "cat dog")
    index.add_document(2, "dog eel")
    index.seal()
    index.add_document(3, "eel fox")
    return index


def state(index: InvertedIndex) -> Any:
    return (index.stats(), list(index._docs.terms), index.search("cat dog eel fox", 10),
            sorted(index._docs.ext2int.items()))


# (label, argument name, call, expect): expect "error" or "ok".
Case = tuple[str, str, Callable[[InvertedIndex, Path], object], str]


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(label: str, arg: str, call: Callable[[InvertedIndex, Path], object],
            expect: str = "error") -> None:
        cases.append((label, arg, call, expect))

    # --- constructor
    for v in [None, True, "1", NAN, INF, -1, [1], 1e300, OBJ]:
        add(f"InvertedIndex(k1={v!r:.20})", "k1", lambda ix, p, v=v: InvertedIndex(k1=v))
    for v in [None, True, "0.5", NAN, -0.1, 1.1, [0.5]]:
        add(f"InvertedIndex(b={v!r:.20})", "b", lambda ix, p, v=v: InvertedIndex(b=v))
    for v in [None, True, "5", 0, -1, 1.5, HUGE, [5]]:
        add(f"InvertedIndex(seal_postings={v!r:.20})", "seal_postings",
            lambda ix, p, v=v: InvertedIndex(seal_postings=v))
    for v in [None, True, "2", 0.5, NAN, INF, [2]]:
        add(f"InvertedIndex(merge_factor={v!r:.20})", "merge_factor",
            lambda ix, p, v=v: InvertedIndex(merge_factor=v))
    for v in [5, "x", [1], b"x"]:
        add(f"InvertedIndex(analyzer={v!r:.20})", "analyzer",
            lambda ix, p, v=v: InvertedIndex(analyzer=v))
    add("InvertedIndex(k1=np.float32(1.2), seal_postings=np.int64(9))", "",
        lambda ix, p: InvertedIndex(k1=np.float32(1.2), seal_postings=np.int64(9)), "ok")

    # --- add_document / update_document / delete_document
    for v in BAD_INT:
        add(f"add_document(doc_id={v!r:.20})", "doc_id",
            lambda ix, p, v=v: ix.add_document(v, "new words"))
        add(f"update_document(doc_id={v!r:.20})", "doc_id",
            lambda ix, p, v=v: ix.update_document(v, "new words"))
        add(f"delete_document(doc_id={v!r:.20})", "doc_id",
            lambda ix, p, v=v: ix.delete_document(v))
        add(f"get_term_frequency(doc_id={v!r:.20})", "doc_id",
            lambda ix, p, v=v: ix.get_term_frequency("cat", v))
    for v in [*BAD_STR, *EMPTY, SURROGATE]:
        add(f"add_document(text={v!r:.20})", "text",
            lambda ix, p, v=v: ix.add_document(9, v))
        add(f"update_document(text={v!r:.20})", "text",
            lambda ix, p, v=v: ix.update_document(1, v))
    for v in BAD_BOOL:
        add(f"add_document(update={v!r:.20})", "update",
            lambda ix, p, v=v: ix.add_document(9, "new words", update=v))
        add(f"add_documents(update={v!r:.20})", "update",
            lambda ix, p, v=v: ix.add_documents([(9, "new words")], update=v))
    for v in ODD_TEXT:
        add(f"add_document(text={v!r:.20})", "", lambda ix, p, v=v: ix.add_document(9, v), "ok")
    add("add_document(doc_id=np.int64)", "", lambda ix, p: ix.add_document(np.int64(9), "a b"),
        "ok")
    add("add_document(doc_id=-2**63)", "", lambda ix, p: ix.add_document(-(2**63), "ab"), "ok")
    add("add_document(existing)", "doc_id", lambda ix, p: ix.add_document(1, "cat"))
    add("delete_document(unknown)", "doc_id", lambda ix, p: ix.delete_document(99))
    add("update_document(unknown)", "doc_id", lambda ix, p: ix.update_document(99, "ab"))

    # --- add_documents
    for v in [None, 5, "ab", b"ab", 1.5, OBJ]:
        add(f"add_documents({v!r:.20})", "documents", lambda ix, p, v=v: ix.add_documents(v))
    for v in [[5], [None], [(1,)], [(7, "ab", 3)], [("7", "ab")], [(7, None)], [(7, "")],
              [{"a": 1}], [(7, "ab"), (7, "cd")], [(7, "ab"), (1, "cd")], [(True, "ab")],
              [(HUGE, "ab")], [(7, "ab"), (8, b"cd")], [(7, SURROGATE)], [([1], "ab")]]:
        add(f"add_documents({v!r:.30})", "documents", lambda ix, p, v=v: ix.add_documents(v))
    add("add_documents(generator)", "",
        lambda ix, p: ix.add_documents((i, "ab cd") for i in range(10, 13)), "ok")
    add("add_documents([])", "", lambda ix, p: ix.add_documents([]), "ok")
    add("add_documents([[7, 'ab']])", "", lambda ix, p: ix.add_documents([[7, "ab"]]), "ok")

    # --- search / search_batch
    for v in BAD_STR:
        add(f"search(query={v!r:.20})", "query", lambda ix, p, v=v: ix.search(v))
    for v in [*EMPTY, *ODD_TEXT]:
        add(f"search(query={v!r:.20})", "", lambda ix, p, v=v: ix.search(v), "ok")
    add("search(query=<lone surrogate>)", "query", lambda ix, p: ix.search(SURROGATE))
    for v in BAD_TOP_K:
        add(f"search(top_k={v!r:.20})", "top_k", lambda ix, p, v=v: ix.search("cat", v))
        add(f"search_batch(top_k={v!r:.20})", "top_k",
            lambda ix, p, v=v: ix.search_batch(["cat"], v))
    for v in [HUGE, 2**62, np.int64(5)]:
        add(f"search(top_k={v!r:.20})", "", lambda ix, p, v=v: ix.search("cat", v), "ok")
        add(f"search_batch(top_k={v!r:.20})", "",
            lambda ix, p, v=v: ix.search_batch(["cat", "dog"], v, as_arrays=True), "ok")
    for v in [5, "abc", b"ab", 1.5, [None], [1.5], [[1]], {"a": 1}, [True], [1, "2"], OBJ]:
        add(f"search(allowed_ids={v!r:.20})", "allowed_ids",
            lambda ix, p, v=v: ix.search("cat", 5, allowed_ids=v))
        add(f"search_batch(allowed_ids={v!r:.20})", "allowed_ids",
            lambda ix, p, v=v: ix.search_batch(["cat"], 5, allowed_ids=v))
    for v in [[], range(3), np.array([1, 2]), {1, 2}, [HUGE, -HUGE], (np.int32(2),)]:
        add(f"search(allowed_ids={v!r:.20})", "",
            lambda ix, p, v=v: ix.search("cat", 5, allowed_ids=v), "ok")
    for v in [None, 5, "abc", b"ab", [None], ["a", 3], [b"x"], [["a"]], 1.5, {"a": 1}, OBJ]:
        add(f"search_batch(queries={v!r:.20})", "queries",
            lambda ix, p, v=v: ix.search_batch(v))
    add("search_batch(queries=[<lone surrogate>])", "queries[1]",
        lambda ix, p: ix.search_batch(["ﬁ", SURROGATE]))
    for v in [[], ["", "  "], ("cat", "dog"), ["ﬁ", "\x00"], iter(["cat"])]:
        add(f"search_batch(queries={v!r:.20})", "", lambda ix, p, v=v: ix.search_batch(v), "ok")
    for v in BAD_BOOL:
        add(f"search_batch(as_arrays={v!r:.20})", "as_arrays",
            lambda ix, p, v=v: ix.search_batch(["cat"], as_arrays=v))
    for v in [0, -2, -HUGE, 1.5, NAN, "2", True, None, [2], OBJ]:
        add(f"search_batch(num_threads={v!r:.20})", "num_threads",
            lambda ix, p, v=v: ix.search_batch(["cat"], num_threads=v))
    for v in [1, -1, 3, np.int64(2), HUGE]:  # more threads than queries: capped, not an error
        add(f"search_batch(num_threads={v!r:.20})", "",
            lambda ix, p, v=v: ix.search_batch(["cat", "dog"] * 20, num_threads=v), "ok")

    # --- allowed_mask, collection_stats, internal ids (make_index has internal ids 0..2)
    for v in [5, "abc", [1, 0, 1], np.ones(3, dtype=np.int64), np.ones(3, dtype=np.float32),
              np.ones(2, dtype=bool), np.ones(4, dtype=np.uint8), np.ones((3, 1), dtype=bool),
              OBJ]:
        add(f"search(allowed_mask={v!r:.20})", "allowed_mask",
            lambda ix, p, v=v: ix.search("cat", 5, allowed_mask=v))
        add(f"search_batch(allowed_mask={v!r:.20})", "allowed_mask",
            lambda ix, p, v=v: ix.search_batch(["cat"], 5, allowed_mask=v))
    add("search(allowed_ids and allowed_mask)", "allowed_mask",
        lambda ix, p: ix.search("cat", allowed_ids=[1], allowed_mask=np.ones(3, dtype=bool)))
    for v in [np.ones(3, dtype=bool), np.zeros(3, dtype=np.uint8), np.ones(6, dtype=bool)[::2]]:
        add(f"search(allowed_mask={v!r:.20})", "",
            lambda ix, p, v=v: ix.search("cat", 5, allowed_mask=v), "ok")
    own = {"cat": 1, "dog": 2, "eel": 2, "fox": 1}
    for v in [5, {"num_docs": 3}, (3, 9, own), OBJ]:
        add(f"search(collection_stats={v!r:.20})", "collection_stats",
            lambda ix, p, v=v: ix.search("cat", collection_stats=v))
    for label, make in [
            ("num_docs=-1", lambda: CollectionStats(-1, 6, own)),
            ("num_docs=1.5", lambda: CollectionStats(1.5, 6, own)),
            ("total_length=None", lambda: CollectionStats(3, None, own)),
            ("df=[1]", lambda: CollectionStats(3, 6, [1])),
            ("num_docs below the index's", lambda: CollectionStats(2, 6, own)),
            ("total_length below the index's", lambda: CollectionStats(3, 5, own)),
            ("no df for a query term", lambda: CollectionStats(9, 60, {"cat": 1})),
            ("df below the index's", lambda: CollectionStats(9, 60, {**own, "dog": 1})),
            ("df above num_docs", lambda: CollectionStats(9, 60, {**own, "dog": 10})),
            ("df not an int", lambda: CollectionStats(9, 60, {**own, "dog": 2.0}))]:
        add(f"search_batch(collection_stats: {label})", "collection_stats",
            lambda ix, p, make=make: ix.search_batch(["cat dog"], collection_stats=make()))
    add("search(collection_stats: bigger collection)", "",
        lambda ix, p: ix.search("dog zebra", collection_stats=CollectionStats(9, 60, own)), "ok")
    for v in [None, 5, "ab", [None], ["1"], [1.5], [True], OBJ]:
        add(f"internal_ids({v!r:.20})", "doc_ids", lambda ix, p, v=v: ix.internal_ids(v))
    add("internal_ids([99])", "doc_id", lambda ix, p: ix.internal_ids([1, 99]))
    add("internal_ids(range)", "", lambda ix, p: ix.internal_ids(range(1, 4)), "ok")
    for v in ["cat", 5, [None], [1], OBJ]:
        add(f"collection_stats({v!r:.20})", "terms", lambda ix, p, v=v: ix.collection_stats(v))
    add("collection_stats(['cat', 'zebra'])", "",
        lambda ix, p: ix.collection_stats(["cat", "zebra"]), "ok")
    for v in BAD_INT:
        add(f"document_terms({v!r:.20})", "doc_id", lambda ix, p, v=v: ix.document_terms(v))
    add("document_terms(unknown)", "doc_id", lambda ix, p: ix.document_terms(99))

    # --- statistics
    for v in BAD_STR:
        add(f"get_term_frequency(term={v!r:.20})", "term",
            lambda ix, p, v=v: ix.get_term_frequency(v, 1))
        add(f"get_document_frequency(term={v!r:.20})", "term",
            lambda ix, p, v=v: ix.get_document_frequency(v))
    add("get_term_frequency('cat dog')", "term", lambda ix, p: ix.get_term_frequency("cat dog", 1))
    add("get_document_frequency('cat dog')", "term",
        lambda ix, p: ix.get_document_frequency("cat dog"))
    add("get_document_frequency(<lone surrogate>)", "term",
        lambda ix, p: ix.get_document_frequency(SURROGATE))
    for v in ["", "   ", "the", "ﬁ"]:
        add(f"get_document_frequency({v!r:.20})", "",
            lambda ix, p, v=v: ix.get_document_frequency(v), "ok")
    add("get_term_frequency(unknown doc)", "doc_id", lambda ix, p: ix.get_term_frequency("c", 99))
    for v in [None, 1, [1], "x", b"x", 1.5, True, OBJ]:
        add(f"__contains__({v!r:.20})", "", lambda ix, p, v=v: v in ix, "ok")

    # --- save / load
    for v in [None, 1, ["a"], {"a": 1}, 1.5, OBJ]:
        add(f"save(path={v!r:.20})", "path", lambda ix, p, v=v: ix.save(v))
        add(f"load(path={v!r:.20})", "path", lambda ix, p, v=v: InvertedIndex.load(v))
    add("save(path=<folder>)", "", lambda ix, p: ix.save(p))
    add("save(path=<missing folder>/x)", "", lambda ix, p: ix.save(p / "nope" / "x"))
    add("load(path=<folder>)", "", lambda ix, p: InvertedIndex.load(p))
    add("load(path=/dev/zero)", "", lambda ix, p: InvertedIndex.load("/dev/zero"))
    add("load(path=<empty file>)", "", lambda ix, p: InvertedIndex.load(_empty(p)))
    add("load(path=<fifo>)", "", lambda ix, p: InvertedIndex.load(_fifo(p)))
    for v in BAD_BOOL:
        add(f"load(mmap={v!r:.20})", "mmap",
            lambda ix, p, v=v: InvertedIndex.load(_saved(ix, p), mmap=v))
    for v in [5, "x", [1], b"x"]:
        add(f"load(analyzer={v!r:.20})", "analyzer",
            lambda ix, p, v=v: InvertedIndex.load(_saved(ix, p), analyzer=v))

    # --- an analyzer that returns junk
    for v in [None, 5, "abc", [1, "a"], [None], b"ab", {"a": 1}]:
        add(f"analyzer returns {v!r:.20}", "analyzer",
            lambda ix, p, v=v: InvertedIndex(analyzer=lambda t, v=v: v).add_document(1, "ab"))
    add("analyzer returns a generator", "",
        lambda ix, p: _generator_analyzer(), "ok")

    # --- Analyzer
    for v in BAD_BOOL:
        add(f"Analyzer(lowercase={v!r:.20})", "lowercase", lambda ix, p, v=v: Analyzer(lowercase=v))
    for v in [None, 1, b"x", "(", "", r"\w*", r"(\w)(\w)", ["a"]]:
        add(f"Analyzer(token_pattern={v!r:.20})", "token_pattern",
            lambda ix, p, v=v: Analyzer(token_pattern=v))
    for v in [5, "french", [1], [None], b"ab", 1.5, OBJ, True]:
        add(f"Analyzer(stopwords={v!r:.20})", "stopwords", lambda ix, p, v=v: Analyzer(stopwords=v))
    for v in [5, "klingon", "", True, ["english"], b"english"]:
        add(f"Analyzer(stemmer={v!r:.20})", "stemmer", lambda ix, p, v=v: Analyzer(stemmer=v))
    for v in [5, "x", [1]]:
        add(f"Analyzer(tokenizer={v!r:.20})", "tokenizer", lambda ix, p, v=v: Analyzer(tokenizer=v))
    for v in BAD_STR:
        add(f"Analyzer()({v!r:.20})", "text", lambda ix, p, v=v: Analyzer()(v))
        add(f"Analyzer().split({v!r:.20})", "text", lambda ix, p, v=v: Analyzer().split(v))
    for v in [None, "abc", 5, [1], [None], [b"x"], {"a": 1}]:
        add(f"Analyzer().normalize({v!r:.20})", "tokens",
            lambda ix, p, v=v: Analyzer().normalize(v))
    add("Analyzer()(surrogate)", "text", lambda ix, p: Analyzer(token_pattern=r"\S+")(SURROGATE))
    for v in ["", "ﬁne", "a" * 1_000_000]:
        add(f"Analyzer()({v!r:.20})", "", lambda ix, p, v=v: Analyzer()(v), "ok")

    # --- postings codecs
    for v in [None, [1.5], [-1], ["a"], [[1]], [2**64], [True], "abc", b"ab", {"a": 1}, OBJ]:
        add(f"encode_varints({v!r:.20})", "values", lambda ix, p, v=v: encode_varints(v))
    for v in [None, "abc", [300], [-1], [1.5], [[1]], {"a": 1}, 5, OBJ]:
        add(f"decode_varints({v!r:.20})", "data", lambda ix, p, v=v: decode_varints(v))
    for v in [b"\x80", b"\xff" * 11]:
        add(f"decode_varints({v!r:.20})", "data", lambda ix, p, v=v: decode_varints(v))
    for v in [None, [1.5], [2**63], ["a"], "abc", [[1]], [True], b"ab", {"a": 1}, OBJ]:
        add(f"zigzag_encode({v!r:.20})", "values", lambda ix, p, v=v: zigzag_encode(v))
    for v in [None, [-1], [2**64], [1.5], "abc", [[1]], [True], OBJ]:
        add(f"zigzag_decode({v!r:.20})", "values", lambda ix, p, v=v: zigzag_decode(v))
    for call in [lambda: encode_varints([]), lambda: encode_varints([0, 2**64 - 1]),
                 lambda: decode_varints(b""), lambda: decode_varints(bytearray(b"\x01")),
                 lambda: decode_varints(memoryview(b"\x01\x02")),
                 lambda: decode_varints(np.array([1, 2], dtype=np.uint8)),
                 lambda: decode_varints([1, 2]), lambda: zigzag_encode([-(2**63), 2**63 - 1]),
                 lambda: zigzag_decode([0, 2**64 - 1]), lambda: zigzag_encode(np.int8([1]))]:
        add("codec on valid input", "", lambda ix, p, call=call: call(), "ok")
    return cases


def _empty(tmp: Path) -> Path:
    (tmp / "empty").write_bytes(b"")
    return tmp / "empty"


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo"
    if not path.exists():
        os.mkfifo(path)
    return path


def _saved(index: InvertedIndex, tmp: Path) -> Path:
    # save a copy so the probed index itself is not sealed by save()
    copy = InvertedIndex()
    copy.add_document(1, "cat dog")
    copy.save(tmp / "saved.llmds")
    return tmp / "saved.llmds"


def _generator_analyzer() -> None:
    index = InvertedIndex(analyzer=lambda text: (w for w in text.split()))
    index.add_document(1, "ab cd ab")
    assert index.get_term_frequency("ab", 1) == 2
    index._check()


CASES = _cases()


@pytest.mark.parametrize(("label", "arg", "call", "expect"), CASES,
                         ids=[f"{i}:{c[0]}"[:80] for i, c in enumerate(CASES)])
def test_hostile_argument(tmp_path, label, arg, call, expect):
    index = make_index()
    before = state(index)
    if expect == "ok":
        call(index, tmp_path)
        index._check()
        return
    with pytest.raises((TypeError, ValueError, KeyError, OSError)) as info:
        call(index, tmp_path)
    message = str(info.value)
    assert not INTERNAL.search(message), f"{label}: internal message {message!r}"
    if arg:
        assert arg in message, f"{label}: message {message!r} does not name {arg!r}"
    assert state(index) == before, f"{label}: a failed call changed the index"
    index._check()


def test_probe_size():
    """The probe covers every public call (the count is reported in issue 12)."""
    assert len(CASES) >= 300
