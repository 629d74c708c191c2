"""IndexedHeap: examples, every bad input, and a stateful test against NaiveHeap."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds.indexed_heap import IndexedHeap
from tests.reference.heap import NaiveHeap


def test_seed_api_min_heap():
    h = IndexedHeap()
    assert h.is_empty() and h.size() == 0 and h.peek() is None
    h.push(1, 5.0)
    h.push(2, 3.0)
    h.push(3, 4.0)
    assert h.peek() == (3.0, 2) and h.size() == 3 and len(h) == 3
    h.decrease_key(1, 1.0)
    h.increase_key(2, 10.0)
    assert h.get_score(1) == 1.0 and h.get_score(99) is None
    assert h.delete(3) == (4.0, 3)
    assert h.pop() == (1.0, 1)
    assert h.pop() == (10.0, 2)
    assert h.is_empty()
    h._check()


def test_max_heap_directions_follow_the_seed():
    h = IndexedHeap(max_heap=True)
    for key, score in [(1, 1.0), (2, 5.0), (3, 3.0)]:
        h.push(key, score)
    assert h.peek() == (5.0, 2)
    h.decrease_key(2, 0.0)  # lowers the score: moves towards the back
    assert h.peek() == (3.0, 3)
    h.increase_key(1, 9.0)  # raises the score: moves to the front
    assert [h.pop() for _ in range(3)] == [(9.0, 1), (3.0, 3), (0.0, 2)]
    with pytest.raises(ValueError, match="decrease_key"):
        h.push(4, 1.0) or h.decrease_key(4, 2.0)
    with pytest.raises(ValueError, match="increase_key"):
        h.increase_key(4, 0.5)
    assert h.get_score(4) == 1.0
    h._check()


@pytest.mark.parametrize("max_heap", [False, True])
def test_fifo_among_equal_scores(max_heap):
    h = IndexedHeap(max_heap=max_heap)
    for key in range(50):
        h.push(key, 1.0)
    h.decrease_key(10, 1.0)  # equal score: keeps its insertion place
    h.update(20, 1.0)
    assert [h.pop()[1] for _ in range(50)] == list(range(50))


def test_grows_past_initial_capacity_and_keeps_order():
    rng = np.random.default_rng(0)
    h = IndexedHeap()
    scores = rng.integers(0, 100, 1000).astype(float)
    for key, s in enumerate(scores):
        h.push(key, s)
    h._check()
    expected = sorted((s, k) for k, s in enumerate(scores.tolist()))
    assert [h.pop() for _ in range(1000)] == expected


def test_update_remove_contains_push_many_pop_many():
    h = IndexedHeap()
    h.push_many(["a", "b", "c"], [3.0, 1, np.float32(2.0)])
    assert "a" in h and "z" not in h and [] not in h
    h.update("a", 0.0)
    h.update("b", 7.0)
    assert h.remove("c") == (2.0, "c")
    assert h.pop_many(5) == [(0.0, "a"), (7.0, "b")]
    assert h.pop_many(0) == []
    h.push_many([], [])
    m = IndexedHeap(max_heap=True)
    m.push_many(range(100), np.arange(100.0))
    assert m.pop_many(3) == [(99.0, 99), (98.0, 98), (97.0, 97)]
    m._check()
    assert sorted(m) == list(range(97))
    assert "IndexedHeap(max" in repr(m)


def test_inf_scores_and_signed_zero():
    h = IndexedHeap()
    h.push(1, math.inf)
    h.push(2, -math.inf)
    h.push(3, 0)
    assert [h.pop() for _ in range(3)] == [(-math.inf, 2), (0.0, 3), (math.inf, 1)]


@pytest.mark.parametrize("max_heap", [False, True])
def test_bad_inputs_raise_and_change_nothing(max_heap):
    h = IndexedHeap(max_heap=max_heap)
    h.push(1, 2.0)
    h.push(2, 3.0)
    before = h._entries()
    cases = [
        (KeyError, "already in the heap", lambda: h.push(1, 0.0)),
        (ValueError, "NaN", lambda: h.push(3, float("nan"))),
        (ValueError, "NaN", lambda: h.push(3, np.nan)),
        (TypeError, "score must be a number", lambda: h.push(3, "1.0")),
        (TypeError, "score must be a number", lambda: h.push(3, None)),
        (TypeError, "score must be a number", lambda: h.push(3, True)),
        (TypeError, "key_id must be hashable", lambda: h.push([3], 1.0)),
        (ValueError, "larger than the current score", lambda: h.decrease_key(1, 2.5)),
        (ValueError, "smaller than the current score", lambda: h.increase_key(1, 1.5)),
        (ValueError, "NaN", lambda: h.decrease_key(1, math.nan)),
        (ValueError, "NaN", lambda: h.update(1, math.nan)),
        (KeyError, "not in the heap", lambda: h.decrease_key(9, 0.0)),
        (KeyError, "not in the heap", lambda: h.increase_key(9, 0.0)),
        (KeyError, "not in the heap", lambda: h.update(9, 0.0)),
        (KeyError, "not in the heap", lambda: h.delete(9)),
        (KeyError, "not in the heap", lambda: h.remove(9)),
        (TypeError, "hashable", lambda: h.delete([1])),
        (KeyError, "already in the heap or repeated", lambda: h.push_many([5, 5], [1, 2])),
        (KeyError, "already in the heap or repeated", lambda: h.push_many([5, 1], [1, 2])),
        (ValueError, "equal length", lambda: h.push_many([5, 6], [1.0])),
        (ValueError, "NaN", lambda: h.push_many([5, 6], [1.0, math.nan])),
        (TypeError, "real number", lambda: h.push_many([5], ["x"])),
        (ValueError, "k must be >= 0", lambda: h.pop_many(-1)),
        (TypeError, "k must be an int", lambda: h.pop_many(1.5)),
    ]
    for exc, message, call in cases:
        with pytest.raises(exc, match=message):
            call()
        assert h._entries() == before, message
        h._check()
    with pytest.raises(TypeError, match="max_heap must be a bool"):
        IndexedHeap(max_heap="yes")  # type: ignore[arg-type]


def test_pop_empty_raises_index_error():
    h = IndexedHeap()
    with pytest.raises(IndexError, match="empty"):
        h.pop()
    h.push(1, 1.0)
    h.pop()
    with pytest.raises(IndexError):
        h.pop()
    h._check()


def test_kernels_run_without_jit():
    code = (
        "from llmds.indexed_heap import IndexedHeap\n"
        "h = IndexedHeap()\n"
        "for k, s in enumerate([5, 1, 4, 1, 3, 9, 2, 6] * 20): h.push(k, float(s))\n"
        "h.decrease_key(0, 0.0); h.increase_key(1, 8.0); h.delete(7); h.update(2, 3.5)\n"
        "h.push_many([1000, 1001], [0.5, 0.25]); h._check()\n"
        "out = [h.pop() for _ in range(len(h))]\n"
        "assert out == sorted(out, key=lambda t: t[0]), out\n"
        "assert out[:3] == [(0.0, 0), (0.25, 1001), (0.5, 1000)], out[:3]\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


scores = st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0, math.inf])  # ties are common
keys = st.integers(0, 12)


class HeapAgainstModel(RuleBasedStateMachine):
    """Random operation sequences; IndexedHeap must agree with NaiveHeap after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.max_heap = False
        self.heap = IndexedHeap()
        self.model = NaiveHeap()

    @rule(max_heap=st.booleans())
    def reset(self, max_heap):
        self.max_heap = max_heap
        self.heap = IndexedHeap(max_heap=max_heap)
        self.model = NaiveHeap(max_heap=max_heap)

    @rule(key=keys, score=scores)
    def push(self, key, score):
        if key in self.model:
            with pytest.raises(KeyError):
                self.heap.push(key, score)
        else:
            self.heap.push(key, score)
            self.model.push(key, score)

    @rule()
    def pop(self):
        if not len(self.model):
            with pytest.raises(IndexError):
                self.heap.pop()
        else:
            assert self.heap.pop() == self.model.pop()

    @rule(key=keys, score=scores)
    def decrease_key(self, key, score):
        current = self.model.get_score(key)
        if current is None:
            with pytest.raises(KeyError):
                self.heap.decrease_key(key, score)
        elif score > current:
            with pytest.raises(ValueError):
                self.heap.decrease_key(key, score)
        else:
            self.heap.decrease_key(key, score)
            self.model.set_score(key, score)

    @rule(key=keys, score=scores)
    def increase_key(self, key, score):
        current = self.model.get_score(key)
        if current is None:
            with pytest.raises(KeyError):
                self.heap.increase_key(key, score)
        elif score < current:
            with pytest.raises(ValueError):
                self.heap.increase_key(key, score)
        else:
            self.heap.increase_key(key, score)
            self.model.set_score(key, score)

    @precondition(lambda self: len(self.model))
    @rule(data=st.data(), score=scores)
    def update(self, data, score):
        key = data.draw(st.sampled_from([k for _, _, k in self.model.items]))
        self.heap.update(key, score)
        self.model.set_score(key, score)

    @rule(key=keys)
    def delete(self, key):
        if key in self.model:
            assert self.heap.delete(key) == self.model.delete(key)
        else:
            with pytest.raises(KeyError):
                self.heap.delete(key)

    @rule(k=st.integers(0, 4))
    def pop_many(self, k):
        want = [self.model.pop() for _ in range(min(k, len(self.model)))]
        assert self.heap.pop_many(k) == want

    @rule(new=st.lists(st.integers(100, 110), max_size=4, unique=True), score=scores)
    def push_many(self, new, score):
        fresh = [k for k in new if k not in self.model]
        self.heap.push_many(fresh, [score] * len(fresh))
        for k in fresh:
            self.model.push(k, score)

    @invariant()
    def agrees(self):
        self.heap._check()
        assert len(self.heap) == len(self.model)
        assert self.heap.peek() == self.model.peek()
        # Same (score, insertion seq, key) triples: order and tie-breaks then agree too.
        assert sorted(self.heap._entries(), key=lambda e: e[1]) == sorted(
            self.model.items, key=lambda e: e[1]
        )
        for _, _, k in self.model.items:
            assert self.heap.get_score(k) == self.model.get_score(k)


TestHeapAgainstModel = HeapAgainstModel.TestCase
