"""InvertedIndex and Analyzer from many threads, and as pickled / copied objects.

Every concurrent result is compared with the answer of a serial run, exactly (same
bits: the same index arrays and kernel give the same floats). No timing is asserted.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llmds import _index_search
from llmds._threads import num_threads_for, run_parallel
from llmds.analysis import Analyzer
from llmds.inverted_index import InvertedIndex

NUM_THREADS = 8
VOCAB = [f"w{i}" for i in range(300)] + ["running", "runs", "dogs", "the", "and", "foxes"]


def zipf_text(rng: np.random.Generator, n: int) -> str:
    idx = np.minimum(rng.zipf(1.3, size=n) - 1, len(VOCAB) - 1)
    return " ".join(VOCAB[i] for i in idx)


def build(seed: int = 0, num_docs: int = 400) -> InvertedIndex:
    """Segments, a merge, tombstones and an unsealed buffer: every search path."""
    rng = np.random.default_rng(seed)
    index = InvertedIndex(seal_postings=8 * num_docs)
    index.add_documents((i, zipf_text(rng, int(rng.integers(5, 60))))
                        for i in range(num_docs // 2))
    for i in range(num_docs // 2, num_docs):
        index.add_document(i, zipf_text(rng, int(rng.integers(5, 60))))
    for i in range(0, num_docs, 7):
        index.delete_document(i)
    index.update_document(3, "running dogs and foxes w1 w2")
    assert index.num_segments >= 1 and index.stats()["buffer_docs"] > 0
    return index


def queries(seed: int = 1, n: int = 120) -> list[str]:
    rng = np.random.default_rng(seed)
    return [zipf_text(rng, int(rng.integers(1, 6))) for _ in range(n)] + ["", "zzz", "the"]


def run_threads(work: Callable[[int], None], n: int = NUM_THREADS) -> None:
    """Run ``work(i)`` on ``n`` threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


# ------------------------------------------------------------------ concurrent readers
@pytest.mark.slow
def test_concurrent_searches_equal_serial():
    index = build()
    qs = queries()
    allowed = list(range(0, 400, 3))
    single = [index.search(q, 10) for q in qs]
    filtered = [index.search(q, 10, allowed_ids=allowed) for q in qs]
    batch = index.search_batch(qs, 10, num_threads=1)
    ids, scores, counts = index.search_batch(qs, 7, as_arrays=True, num_threads=1)
    wrong = [0] * NUM_THREADS

    def reader(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        for _ in range(60):
            i = int(rng.integers(len(qs)))
            kind = int(rng.integers(4))
            if kind == 0:
                wrong[t] += index.search(qs[i], 10) != single[i]
            elif kind == 1:
                wrong[t] += index.search(qs[i], 10, allowed_ids=allowed) != filtered[i]
            elif kind == 2:
                wrong[t] += index.search_batch(qs, 10, num_threads=int(rng.integers(1, 4))) \
                    != batch
            else:
                got = index.search_batch(qs, 7, as_arrays=True)
                wrong[t] += not (np.array_equal(got[0], ids) and np.array_equal(got[1], scores)
                                 and np.array_equal(got[2], counts))

    run_threads(reader)
    assert sum(wrong) == 0
    # nothing left behind: invariants hold (scratch all zero) and answers are unchanged
    index._check()
    assert [index.search(q, 10) for q in qs] == single


@pytest.mark.parametrize("num_threads", [1, 2, 3, 8, -1])
def test_search_batch_num_threads_same_results(num_threads):
    index = build(seed=2, num_docs=200)
    qs = queries(seed=3, n=70)
    serial = [index.search(q, 5) for q in qs]
    assert index.search_batch(qs, 5, num_threads=num_threads) == serial
    ids, _, counts = index.search_batch(qs, 5, as_arrays=True, num_threads=num_threads)
    assert [row[:c] for row, c in zip(ids.tolist(), counts.tolist(), strict=True)] == [
        [d for d, _ in r] for r in serial]
    allowed = {1, 2, 5, 8, 13, 21, 34, 55, 89, 144}
    assert index.search_batch(qs, 5, allowed_ids=allowed, num_threads=num_threads) == [
        index.search(q, 5, allowed_ids=allowed) for q in qs]
    index._check()


@pytest.mark.parametrize(("value", "exc"), [(0, ValueError), (-2, ValueError),
                                            (1.5, TypeError), ("2", TypeError),
                                            (True, TypeError), (None, TypeError)])
def test_num_threads_is_checked(value, exc):
    index = build(seed=4, num_docs=50)
    with pytest.raises(exc, match="num_threads"):
        index.search_batch(["w1"], 3, num_threads=value)


def test_token_cache_starting_over_under_threads(monkeypatch):
    """A full raw-token cache is replaced while other threads read it: answers stay exact."""
    monkeypatch.setattr(_index_search, "TOKEN_CACHE_MAX", 7)
    index = build(seed=5, num_docs=120)
    qs = queries(seed=6, n=80)
    serial = [index.search(q, 5) for q in qs]
    wrong = [0] * NUM_THREADS

    def reader(t: int) -> None:
        for i in np.random.default_rng(t).permutation(len(qs)).tolist():
            wrong[t] += index.search(qs[i], 5) != serial[i]

    run_threads(reader)
    assert sum(wrong) == 0
    assert len(index._query._cache) <= 7


def test_analyzer_from_threads_equals_serial():
    analyzer = Analyzer()
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(["running", "runs", "connected", "connection", "happily",
                                  "dogs", "cats", "the", f"x{i}"], size=30)) for i in range(40)]
    serial = [analyzer(t) for t in texts]
    wrong = [0] * NUM_THREADS

    def work(t: int) -> None:
        for _ in range(5):
            wrong[t] += [analyzer(x) for x in texts] != serial

    run_threads(work)
    assert sum(wrong) == 0


# ------------------------------------------------------------------ writers next to readers
def _ops(tmp: Path) -> list[Callable[[InvertedIndex], object]]:
    """A fixed sequence of writes; state ``s`` is the index after the first ``s`` of them."""
    rng = np.random.default_rng(8)
    texts = [zipf_text(rng, int(rng.integers(3, 40))) for _ in range(60)]
    ops: list[Callable[[InvertedIndex], object]] = []
    for i in range(20):
        ops.append(lambda ix, i=i: ix.add_document(1000 + i, texts[i]))
        if i % 4 == 0:  # ids the build kept (it deleted the multiples of 7)
            ops.append(lambda ix, i=i: ix.delete_document([1, 2, 4, 5, 8][i // 4]))
        if i % 5 == 0:
            ops.append(lambda ix, i=i: ix.update_document(1000 + i, texts[20 + i]))
    ops.append(lambda ix: ix.add_documents((2000 + j, texts[40 + j]) for j in range(20)))
    ops.append(lambda ix: ix.seal())
    ops.append(lambda ix: ix.save(tmp / "ix.llmds"))
    ops.append(lambda ix: ix.add_document(3000, "running dogs w3"))
    ops.append(lambda ix: ix.merge())
    ops.append(lambda ix: ix._compact())
    ops.append(lambda ix: ix.add_documents([(2000, "w9 w9"), (3001, "w8")], update=True))
    return ops


@pytest.mark.slow
def test_writer_next_to_readers_sees_whole_states(tmp_path):
    """Each search equals the serial answer of a state between its start and its end."""
    qs = queries(seed=9, n=25)
    ops = _ops(tmp_path)
    reference = build(seed=10, num_docs=200)
    answers = [[reference.search(q, 5) for q in qs]]
    for op in ops:
        op(reference)
        answers.append([reference.search(q, 5) for q in qs])
    batch_answers = [tuple(tuple(r) for r in a) for a in answers]
    index = build(seed=10, num_docs=200)
    done = [0]  # the writer has finished this many ops (published after each op)
    checked = [0] * NUM_THREADS

    def work(t: int) -> None:
        if t == 0:
            for i, op in enumerate(ops):
                op(index)
                done[0] = i + 1
            return
        rng = np.random.default_rng(t)
        while done[0] < len(ops) or checked[t] < 20:
            j = int(rng.integers(len(qs)))
            before = done[0]
            if t % 2:
                got = index.search(qs[j], 5)
                after = done[0]
                ok = any(got == answers[s][j] for s in range(before, min(after + 1,
                                                                           len(ops)) + 1))
            else:
                rows = tuple(tuple(r) for r in index.search_batch(qs, 5, num_threads=2))
                after = done[0]
                ok = rows in batch_answers[before : min(after + 1, len(ops)) + 1]
            assert ok, f"thread {t}: a result from no state between {before} and {after}"
            checked[t] += 1

    run_threads(work)
    index._check()
    assert [index.search(q, 5) for q in qs] == answers[-1]
    assert index.stats() == reference.stats()


def test_concurrent_writers_equal_a_serial_build():
    rng = np.random.default_rng(11)
    texts = [zipf_text(rng, int(rng.integers(3, 30))) for _ in range(NUM_THREADS * 30)]
    index = InvertedIndex(seal_postings=300)
    qs = queries(seed=12, n=30)

    def work(t: int) -> None:
        for i in range(t * 30, t * 30 + 30):
            if i % 10 == 0:
                index.add_documents([(i, texts[i])])
            else:
                index.add_document(i, texts[i])
            if i % 9 == 0:
                index.search_batch(qs[:5], 3)

    run_threads(work)
    index._check()
    serial = InvertedIndex(seal_postings=300)
    serial.add_documents(enumerate(texts))
    # same documents, so the same N, df, avgdl and per-document sums: equal answers
    assert [index.search(q, 8) for q in qs] == [serial.search(q, 8) for q in qs]


# ------------------------------------------------------------------ pickle and copies
def _same(a: InvertedIndex, b: InvertedIndex) -> None:
    qs = queries(seed=13, n=40)
    assert a.stats() == b.stats()
    assert [a.search(q, 6) for q in qs] == [b.search(q, 6) for q in qs]
    assert a.search_batch(qs, 6, allowed_ids=range(50)) == b.search_batch(
        qs, 6, allowed_ids=range(50))


def split_words(text: str) -> list[str]:
    """A module-level (hence picklable) custom analyzer."""
    return text.lower().split()


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
@pytest.mark.parametrize("analyzer", ["default", "options", "function"])
def test_copies_are_independent_and_equal(how, analyzer):
    kwargs = {"default": {}, "options": {"analyzer": Analyzer(stopwords=["w1"], stemmer=None)},
              "function": {"analyzer": split_words}}[analyzer]
    index = InvertedIndex(k1=1.2, b=0.6, seal_postings=500, merge_factor=3.0, **kwargs)
    rng = np.random.default_rng(14)
    index.add_documents((i, zipf_text(rng, 20)) for i in range(100))
    index.delete_document(5)
    index.add_document(500, "w1 w2 w3 running")  # stays in the buffer
    clone = {"pickle": lambda ix: pickle.loads(pickle.dumps(ix)), "deepcopy": copy.deepcopy,
             "copy": copy.copy}[how](index)
    assert clone is not index and (clone.k1, clone.b) == (1.2, 0.6)
    _same(index, clone)
    clone._check()
    clone.add_document(501, "w2 w2 w2")
    clone.delete_document(7)
    clone.seal()
    assert 501 not in index and 7 in index and index.stats()["buffer_docs"] == 1
    index._check()
    index.add_document(501, "w2 w2 w2")
    index.delete_document(7)
    index.seal()
    _same(index, clone)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_every_protocol(protocol, tmp_path):
    index = build(seed=15, num_docs=80)
    _same(index, pickle.loads(pickle.dumps(index, protocol=protocol)))
    index.save(tmp_path / "ix.llmds")
    loaded = InvertedIndex.load(tmp_path / "ix.llmds", mmap=True)
    _same(loaded, pickle.loads(pickle.dumps(loaded, protocol=protocol)))
    _same(InvertedIndex(), pickle.loads(pickle.dumps(InvertedIndex(), protocol=protocol)))


def test_unpicklable_analyzer_is_named():
    index = InvertedIndex(analyzer=lambda text: text.split())
    index.add_document(1, "a b")
    with pytest.raises(TypeError, match=r"analyzer .*cannot be pickled"):
        pickle.dumps(index)
    clone = copy.deepcopy(index)  # deepcopy needs no pickling
    assert clone.search("a") == index.search("a")
    with pytest.raises(TypeError, match=r"tokenizer .*cannot be pickled"):
        pickle.dumps(Analyzer(tokenizer=lambda text: text.split()))


def test_analyzer_copies():
    a = Analyzer(lowercase=False, token_pattern=r"\S+", stopwords=["The"], stemmer="english")
    for b in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        assert b is not a and b.config() == a.config()
        assert b("The Running DOGS the") == a("The Running DOGS the")
    assert copy.copy(a) is a  # immutable
    c = pickle.loads(pickle.dumps(Analyzer(tokenizer=split_words)))
    assert c("Dogs RUNNING") == ["dog", "run"] and c.custom


def test_bad_pickle_state_is_named():
    index = InvertedIndex()
    with pytest.raises(ValueError, match="state version"):
        index.__setstate__({"version": 99})


# ------------------------------------------------------------------ the thread helpers
def test_run_parallel_shares_work_and_reraises():
    """Tasks take items from a shared counter: every item done once, whoever runs."""
    items = itertools.count()
    done: list[int] = []
    ran: list[int] = []

    def task(i: int) -> None:
        ran.append(i)
        while (item := next(items)) < 500:
            done.append(item)

    run_parallel(task, 5)
    assert sorted(done) == list(range(500))
    assert 0 in ran and len(ran) == len(set(ran)) <= 5  # unstarted tasks are cancelled

    def fail(i: int) -> None:
        if i == 0:
            raise KeyError("task 0")

    with pytest.raises(KeyError, match="task 0"):
        run_parallel(fail, 4)


def test_run_parallel_nested_does_not_deadlock():
    """Callers on many threads, each task calling run_parallel again: all work gets done."""
    done: list[int] = []

    def outer(_: int) -> None:
        items = iter(range(6))
        run_parallel(lambda _j: done.extend(items), 3)

    run_threads(lambda t: run_parallel(outer, 6), n=4)
    assert len(done) % 6 == 0 and len(done) >= 4 * 6


def test_num_threads_for():
    assert num_threads_for(1, 1000, 10) == 1
    assert num_threads_for(3, 1000, 10) == 3
    assert num_threads_for(8, 25, 10) == 2  # at most one thread per 10 items
    assert num_threads_for(-1, 10**6, 1) >= 1
    assert num_threads_for(4, 0, 16) == 1
