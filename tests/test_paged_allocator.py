import dataclasses

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds.errors import CapacityError
from llmds.paged_allocator import PagedAllocator, PageStats
from tests.reference.kv import NaiveAllocator

N = 8


def snapshot(a: PagedAllocator):
    return list(a._refcount), list(a._free), a.num_shared


def test_alloc_hands_out_lowest_ids_first():
    a = PagedAllocator(5)
    assert a.alloc(2) == [0, 1]
    assert a.alloc(1) == [2]
    assert a.num_used == 3 and a.num_free == 2 and len(a) == 3
    a._check()


def test_alloc_is_all_or_nothing():
    a = PagedAllocator(4)
    a.alloc(3)
    before = snapshot(a)
    with pytest.raises(CapacityError, match="requested 2 pages, 1 free"):
        a.alloc(2)
    assert snapshot(a) == before
    assert not a.can_allocate(2) and a.can_allocate(1)


def test_capacity_error_is_a_runtime_error():
    a = PagedAllocator(2)
    a.alloc(2)
    with pytest.raises(RuntimeError):
        a.alloc(1)


@pytest.mark.parametrize(
    ("n", "exc", "msg"),
    [
        (0, ValueError, "num_pages must be >= 1"),
        (-1, ValueError, ">= 1"),
        (5, ValueError, "exceeds the pool size 4"),
        (1.5, TypeError, "int"),
        (True, TypeError, "int"),
    ],
)
def test_alloc_rejects_bad_counts(n, exc, msg):
    a = PagedAllocator(4)
    with pytest.raises(exc, match=msg):
        a.alloc(n)
    assert a.num_free == 4
    assert not a.can_allocate(0)


@pytest.mark.parametrize(
    ("bad", "exc"),
    [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("4", TypeError),
     (None, TypeError), (2**31, ValueError), (2**24 + 1, ValueError)],
)
def test_constructor_rejects_bad_sizes(bad, exc):
    with pytest.raises(exc, match="num_pages must"):
        PagedAllocator(bad)


def test_size_cap_is_checked_before_allocating():
    with pytest.raises(ValueError, match=r"num_pages must be <= 16777216 \(~44 bytes"):
        PagedAllocator(2**31)


@pytest.mark.parametrize("call", ["free", "incref", "decref"])
@pytest.mark.parametrize(
    ("ids", "exc"),
    [([True], TypeError), ([np.True_], TypeError), ([1.0], TypeError), (["1"], TypeError),
     ([None], TypeError), ([[1]], TypeError), (1, TypeError), ("01", TypeError),
     ({1: 1}, TypeError), (None, TypeError), ([2**70], ValueError), ([-1], ValueError)],
)
def test_page_ids_must_be_ints_never_bools(call, ids, exc):
    a = PagedAllocator(4)
    a.alloc(3)
    before = snapshot(a)
    with pytest.raises(exc, match="page"):
        getattr(a, call)(ids)
    assert snapshot(a) == before
    a._check()


@pytest.mark.parametrize(("n", "exc"), [(1.5, TypeError), (True, TypeError), ("2", TypeError),
                                        (None, TypeError), (-1, ValueError)])
def test_can_allocate_rejects_non_ints(n, exc):
    with pytest.raises(exc, match="n must"):
        PagedAllocator(4).can_allocate(n)


def test_refcount_rejects_bools():
    a = PagedAllocator(4)
    a.alloc(2)
    with pytest.raises(TypeError, match="page_id must be an int, got bool True"):
        a.refcount(True)
    assert a.refcount(np.int64(1)) == 1 and not a.is_shared(0)


def test_free_rejects_double_free_and_unknown_ids_changing_nothing():
    a = PagedAllocator(4)
    pages = a.alloc(2)
    a.free([pages[0]])
    before = snapshot(a)
    with pytest.raises(ValueError, match="double free: page 0"):
        a.free([pages[1], pages[0]])  # the valid id is not freed either
    assert snapshot(a) == before
    with pytest.raises(ValueError, match="unknown page id 9"):
        a.free([pages[1], 9])
    with pytest.raises(ValueError, match="unknown page id -1"):
        a.free([-1])
    with pytest.raises(TypeError, match=r"page_ids\[0\] must be an int"):
        a.free(["x"])
    with pytest.raises(ValueError, match="released 2 times but has 1"):
        a.free([pages[1], pages[1]])
    assert snapshot(a) == before
    a._check()


def test_refcounts_share_pages():
    a = PagedAllocator(3)
    (p,) = a.alloc(1)
    a.incref([p])
    assert a.refcount(p) == 2 and a.is_shared(p) and a.num_shared == 1
    a.free([p])
    assert a.refcount(p) == 1 and not a.is_shared(p) and a.num_used == 1
    assert a.decref([p]) == [p]
    assert a.num_free == 3
    with pytest.raises(ValueError, match="page 1 is free"):
        a.incref([1])
    a._check()


def test_numpy_ids_are_accepted():
    a = PagedAllocator(3)
    pages = np.array(a.alloc(2))
    a.free(pages)
    assert a.num_free == 3


def test_stats_and_fragmentation():
    a = PagedAllocator(6)
    a.alloc(6)
    s = a.stats()
    assert (s.total, s.used, s.free, s.shared) == (6, 6, 0, 0)
    assert s.utilisation == 1.0 and s.fragmentation == 0.0
    a.free([1, 3, 4])  # free runs: [1], [3, 4] -> largest run 2 of 3 free
    a.incref([0])
    s = a.stats()
    assert (s.used, s.free, s.shared) == (3, 3, 1)
    assert s.fragmentation == pytest.approx(1 - 2 / 3)
    assert s.utilisation == pytest.approx(0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.total = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="used \\+ free"):
        PageStats(total=2, used=1, free=0, shared=0, utilisation=0.5, fragmentation=0.0)


def test_defragment_moves_used_pages_and_refcounts():
    a = PagedAllocator(6)
    a.alloc(6)
    a.free([0, 2, 3])
    a.incref([4])
    mapping = a.defragment()
    assert mapping == {1: 0, 4: 1, 5: 2}
    assert [a.refcount(p) for p in range(6)] == [1, 2, 1, 0, 0, 0]
    assert a.stats().fragmentation == 0.0
    assert a.alloc(3) == [3, 4, 5]
    a._check()
    assert PagedAllocator(3).defragment() == {}


class AllocatorAgainstModel(RuleBasedStateMachine):
    """Model: a dict page -> refcount of the pages handed out."""

    def __init__(self):
        super().__init__()
        self.alloc = PagedAllocator(N)
        self.model = NaiveAllocator(N)

    @rule(n=st.integers(-1, N + 2))
    def alloc_pages(self, n):
        if n <= 0 or n > N:
            with pytest.raises(ValueError):
                self.alloc.alloc(n)
        elif n > self.model.num_free:
            with pytest.raises(CapacityError):
                self.alloc.alloc(n)
        else:
            pages = self.alloc.alloc(n)
            assert len(set(pages)) == n
            assert not set(pages) & set(self.model.held), "a page is owned twice"
            for p in pages:
                self.model.held[p] = 1

    @precondition(lambda self: self.model.held)
    @rule(data=st.data())
    def incref(self, data):
        page = data.draw(st.sampled_from(sorted(self.model.held)))
        self.alloc.incref([page])
        self.model.held[page] += 1

    @rule(ids=st.lists(st.integers(-1, N), max_size=4))
    def free(self, ids):
        before = snapshot(self.alloc)
        ok = self.model.release(ids)
        if ok:
            self.alloc.free(ids)
        else:
            with pytest.raises(ValueError):
                self.alloc.free(ids)
            assert snapshot(self.alloc) == before

    @rule()
    def defragment(self):
        mapping = self.alloc.defragment()
        held = self.model.held
        moved = {mapping.get(p, p): c for p, c in held.items()}
        assert len(moved) == len(held)
        assert sorted(moved) == list(range(len(held)))
        self.model.held = moved

    @invariant()
    def consistent(self):
        self.alloc._check()
        assert self.alloc.num_free == self.model.num_free
        for p in range(N):
            assert self.alloc.refcount(p) == self.model.held.get(p, 0)
        s = self.alloc.stats()
        assert s.shared == sum(1 for c in self.model.held.values() if c > 1)
        free = self.model.num_free
        expected = 1 - self.model.largest_free_run() / free if free else 0.0
        assert s.fragmentation == pytest.approx(expected)


TestAllocatorAgainstModel = pytest.mark.slow(AllocatorAgainstModel.TestCase)
