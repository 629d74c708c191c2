import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from llmds.errors import CapacityError, UnknownSequenceError
from llmds.kv_cache import KVCache
from tests.reference.kv import NaiveKV, ideal_prefix_hits


def snapshot(cache: KVCache):
    return (
        {k: (list(s.pages), s.num_tokens) for k, s in cache._seqs.items()},
        cache._pages.alloc.refcounts(),
        dict(cache._pages.table),
        list(cache._pages.evictable),
        list(cache._pages.alloc._free),
        cache.stats(),
        cache.pool.copy() if isinstance(cache.pool, np.ndarray) else cache.pool.clone(),
    )


# ---------------------------------------------------------------- seed API
def test_usage_guide_example_runs_as_written():
    cache = KVCache(page_size=512, max_pages=10000, enable_prefix_sharing=True)
    prefix = [1, 2, 3]
    kv_tokens = prefix + [4, 5, 6] * 100
    cache.attach(seq_id=1, kv_tokens=kv_tokens, prefix_tokens=prefix)
    kv_tokens2 = prefix + [7, 8, 9] * 100
    cache.attach(seq_id=2, kv_tokens=kv_tokens2, prefix_tokens=prefix)
    cached = cache.get(seq_id=1)
    assert cached == kv_tokens
    cache.detach(seq_id=1)
    cache.detach(seq_id=2)
    s = cache.stats()
    assert s["used_pages"] == 0 and s["num_sequences"] == 0
    cache._check()


def test_default_pool_is_modest():
    cache = KVCache()
    assert cache.pool.dtype == np.float64
    assert cache.pool.shape == (10000, 512)
    assert cache.stats()["bytes_per_page"] == 512 * 8


def test_full_prefix_pages_are_shared_and_refcounted():
    cache = KVCache(page_size=4, max_pages=16)
    prompt = list(range(10))
    cache.attach(1, [*prompt, 100], prefix_tokens=prompt)
    cache.attach(2, [*prompt, 200, 201], prefix_tokens=prompt)
    t1, t2 = cache.block_table(1), cache.block_table(2)
    assert t1.dtype == np.int32
    assert t1[:2].tolist() == t2[:2].tolist()  # two full pages shared
    assert t1[2] != t2[2]  # the partial third page is private
    s = cache.stats()
    assert s["shared_pages"] == 2 and s["pages_saved_by_sharing"] == 2
    assert s["prefix_queried_tokens"] == 20 and s["prefix_hit_tokens"] == 8
    assert s["prefix_hit_rate"] == pytest.approx(0.4)
    assert cache.get(2) == [*prompt, 200, 201]
    cache._check()


def test_no_sharing_when_disabled():
    cache = KVCache(page_size=4, max_pages=16, enable_prefix_sharing=False)
    prompt = list(range(8))
    cache.attach(1, prompt, prefix_tokens=prompt)
    cache.attach(2, prompt, prefix_tokens=prompt)
    assert cache.stats()["shared_pages"] == 0
    assert cache.stats()["used_pages"] == 4
    cache.detach(1)
    cache.detach(2)
    assert cache.stats()["free_pages"] == 16
    cache._check()


def test_attach_with_different_values_is_copy_on_write():
    cache = KVCache(page_size=2, max_pages=8)
    cache.attach(1, [1.0, 2.0], prefix_tokens=[5, 6])
    cache.attach(2, [9.0, 9.0], prefix_tokens=[5, 6])  # same ids, other values
    assert cache.block_table(1)[0] != cache.block_table(2)[0]
    assert cache.get(1) == [1.0, 2.0] and cache.get(2) == [9.0, 9.0]
    assert cache.stats()["cow_copies"] == 1
    cache._check()


def test_get_returns_a_deep_copy_and_none_for_unknown():
    cache = KVCache(page_size=2, max_pages=4, token_shape=(2,), dtype=np.float32)
    cache.attach(1, [[1, 2], [3, 4], [5, 6]])
    out = cache.get(1)
    assert out == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    out[0][0] = 99.0
    assert cache.get(1)[0][0] == 1.0
    arr = cache.get_array(1)
    arr[:] = 0
    assert cache.get(1)[2] == [5.0, 6.0]
    assert cache.get(42) is None


def test_empty_sequence():
    cache = KVCache(page_size=2, max_pages=2)
    cache.attach(1, [])
    assert cache.get(1) == [] and cache.block_table(1).tolist() == []
    cache.append(1, 3.0)
    assert cache.get(1) == [3.0]
    cache.detach(1)
    cache._check()


# ----------------------------------------------------- append, fork, COW
def test_append_and_fork_copy_on_write():
    cache = KVCache(page_size=4, max_pages=8)
    cache.attach(1, [1, 2, 3, 4, 5])
    cache.fork(1, 2)
    assert cache.block_table(1).tolist() == cache.block_table(2).tolist()
    cache.append(2, 6)  # last page is shared and partial -> copy it
    assert cache.get(1) == [1, 2, 3, 4, 5]
    assert cache.get(2) == [1, 2, 3, 4, 5, 6]
    t1, t2 = cache.block_table(1), cache.block_table(2)
    assert t1[0] == t2[0] and t1[1] != t2[1]
    assert cache.stats()["cow_copies"] == 1
    cache.append(1, [7, 8, 9, 10])  # its page is private again: no copy
    assert cache.stats()["cow_copies"] == 1
    assert cache.get(1) == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert len(cache.block_table(1)) == 3
    cache._check()


def test_append_multi_dim_tokens():
    cache = KVCache(page_size=2, max_pages=4, token_shape=(2, 3), dtype=np.float32)
    cache.attach(1, np.zeros((1, 2, 3)))
    cache.append(1, np.ones((2, 3)))  # one token
    cache.append(1, np.full((2, 2, 3), 2.0))  # two tokens
    arr = cache.get_array(1)
    assert arr.shape == (4, 2, 3)
    assert arr[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="kv must have shape"):
        cache.append(1, np.ones(3))


# ------------------------------------------------ token-level path, LRU
def test_allocate_reuses_cached_pages_after_free():
    cache = KVCache(page_size=4, max_pages=16)
    prompt = list(range(10))
    assert cache.allocate("a", prompt) == 0
    cache.append_tokens("a", [50, 51])  # fills page 2 -> cached too
    pages = cache.block_table("a").tolist()
    cache.free("a")
    s = cache.stats()
    assert s["used_pages"] == 0 and s["cached_pages"] == 3
    assert cache.allocate("b", [*prompt, 50, 51, 52]) == 12
    assert cache.block_table("b").tolist()[:3] == pages
    assert cache.allocate("c", [0, 1, 2, 3, 9]) == 4  # shares only page 0
    assert cache.stats()["prefix_hit_rate"] == pytest.approx((0 + 12 + 4) / (10 + 13 + 5))
    cache._check()


def test_block_ids_are_the_block_table_as_a_new_list():
    cache = KVCache(page_size=2, max_pages=8)
    cache.allocate("a", [1, 2, 3, 4, 5])
    ids = cache.block_ids("a")
    assert ids == cache.block_table("a").tolist() and all(type(p) is int for p in ids)
    assert cache.block_ids("a", 1) == ids[1:] and cache.block_ids("a", 9) == []
    ids.append(99)  # a copy: the block table is untouched
    assert cache.block_ids("a") == cache.block_table("a").tolist()
    for bad, exc in ((-1, ValueError), (1.0, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="start"):
            cache.block_ids("a", bad)
    with pytest.raises(UnknownSequenceError):
        cache.block_ids("zz")
    cache._check()


@pytest.mark.parametrize("algo", ["sha256", "chain64"])
def test_probe_then_allocate_never_reuses_a_stale_walk(algo):
    """``cached_pages`` remembers its walk for the next ``allocate`` (vLLM probes,
    then allocates): any change of the table in between, another namespace or
    other tokens must make ``allocate`` walk again."""
    cache = KVCache(page_size=2, max_pages=6, hash_algorithm=algo)
    cache.allocate("a", [1, 2, 3, 4, 5, 6])
    cache.free("a")
    assert len(cache.cached_pages([1, 2, 3, 4, 5, 6, 7])) == 3
    assert cache.allocate("b", [1, 2, 3, 4, 5, 6, 7]) == 6  # resumes the probe's walk
    cache.free("b")
    assert len(cache.cached_pages([1, 2, 3, 4])) == 2
    assert cache.allocate("c", [1, 2, 3, 4], extra_key="other") == 0  # another root
    cache.free("c")
    assert len(cache.cached_pages([1, 2, 3, 4, 5, 6])) == 3
    assert cache.evict() == 5  # the table changes between probe and allocate
    assert cache.allocate("d", [1, 2, 3, 4, 5, 6]) == 0
    head = cache.block_ids("d")[0]
    cache.free("d")
    assert cache.cached_pages([1, 2, 9, 9]) == [head]
    cache.allocate("e", [1, 2, 9, 9, 5, 6])  # registers [9, 9] after the probe
    assert cache.allocate("f", [1, 2, 9, 9, 5, 6]) == 6
    cache._check()


def test_namespaces_never_share():
    cache = KVCache(page_size=2, max_pages=16)
    cache.allocate(1, [1, 2, 3, 4], extra_key="tenant-a")
    assert cache.allocate(2, [1, 2, 3, 4], extra_key="tenant-b") == 0
    assert cache.allocate(3, [1, 2, 3, 4], extra_key="tenant-a") == 4
    assert cache.allocate(4, [1, 2, 3, 4]) == 0
    cache.attach(5, [1, 2], prefix_tokens=[1, 2], extra_key="tenant-a")
    assert cache.block_table(5)[0] != cache.block_table(1)[0]  # other values -> COW
    cache._check()


def test_lru_eviction_takes_tail_of_chain_first():
    cache = KVCache(page_size=2, max_pages=4)
    cache.allocate("old", [1, 2, 3, 4, 5, 6])  # 3 cached pages: p0 <- p1 <- p2
    _head, _mid, tail = cache.block_table("old").tolist()
    cache.free("old")
    cache.allocate("x", [9, 9, 8, 8])  # needs 2 pages: 1 free + evict 1 (the tail)
    assert cache.stats()["evictions"] == 1
    assert tail in cache.block_table("x").tolist()
    cache.free("x")
    assert cache.allocate("again", [1, 2, 3, 4]) == 4  # head and middle survive
    cache._check()


def test_touching_a_cached_page_protects_it():
    cache = KVCache(page_size=2, max_pages=3)
    cache.allocate(1, [1, 1])
    cache.allocate(2, [2, 2])
    cache.free(1)
    cache.free(2)
    cache.allocate(3, [1, 1])  # reuse page of seq 1: it becomes most recent
    cache.free(3)
    cache.allocate(4, [7, 7, 8, 8])  # one free page + one eviction: [2, 2] goes
    assert cache.allocate(5, [1, 1]) == 2
    cache.free(5)
    cache.free(4)
    assert cache.allocate(6, [2, 2]) == 0
    cache._check()


def test_evict_on_demand():
    cache = KVCache(page_size=2, max_pages=4)
    cache.allocate(1, [1, 2, 3, 4])
    cache.free(1)
    assert cache.evict(1) == 1
    assert cache.evict() == 1
    assert cache.evict() == 0
    assert cache.stats()["free_pages"] == 4
    with pytest.raises(ValueError, match="num_pages"):
        cache.evict(-1)


def test_append_tokens_after_fork_copies_partial_page():
    cache = KVCache(page_size=4, max_pages=8)
    cache.allocate(1, [1, 2, 3, 4, 5, 6])
    cache.fork(1, 2)
    cache.append_tokens(2, [7, 8])  # completes page 1 of seq 2 after a copy
    assert cache.block_table(1)[1] != cache.block_table(2)[1]
    assert cache.stats()["cow_copies"] == 1
    cache.free(1)
    cache.free(2)
    assert cache.allocate(3, [1, 2, 3, 4, 5, 6, 7, 8, 0]) == 8
    cache._check()


def test_chain64_mode_behaves_the_same():
    cache = KVCache(page_size=4, max_pages=8, hash_algorithm="chain64")
    cache.allocate(1, list(range(9)))
    cache.append_tokens(1, [1, 2, 3])
    cache.free(1)
    assert cache.allocate(2, [*list(range(9)), 1, 2, 3]) == 12
    assert cache.allocate(3, list(range(8)), extra_key="t") == 0
    cache._check()


def test_capacity_error_changes_nothing():
    cache = KVCache(page_size=2, max_pages=4)
    cache.allocate(1, [1, 2, 3, 4])
    cache.attach(2, [1, 2])
    cache.free(1)  # 2 cached pages + 1 free
    before = snapshot(cache)
    for call in (
        lambda: cache.attach(3, list(range(8))),
        lambda: cache.allocate(3, list(range(8))),
        lambda: cache.append(2, [0.0] * 7),
        lambda: cache.allocate(3, [1, 2, 3, 4, 9, 9, 9, 9, 9, 9]),
    ):
        with pytest.raises(CapacityError):
            call()
        after = snapshot(cache)
        assert after[:6] == before[:6]
        np.testing.assert_array_equal(after[6], before[6])
    # the two cached pages can still be reused while allocating one more
    assert cache.allocate(4, [1, 2, 3, 4, 5]) == 4
    cache._check()


def test_capacity_error_is_documented_type():
    cache = KVCache(page_size=2, max_pages=1)
    with pytest.raises(RuntimeError, match="need 2 free pages"):
        cache.attach(1, [1, 2, 3])


# -------------------------------------------------------------- bad input
def test_unknown_and_duplicate_sequence_ids():
    cache = KVCache(page_size=2, max_pages=4)
    cache.attach(1, [1])
    for call in (
        lambda: cache.detach(9),
        lambda: cache.free(9),
        lambda: cache.append(9, 1.0),
        lambda: cache.fork(9, 10),
        lambda: cache.block_table(9),
        lambda: cache.append_tokens(9, [1]),
        lambda: cache.num_tokens(9),
        lambda: cache.get_array(9),
    ):
        with pytest.raises(UnknownSequenceError, match=r"unknown (seq_id|parent_id) 9"):
            call()
    with pytest.raises(KeyError):
        cache.detach(9)
    with pytest.raises(ValueError, match="seq_id 1 is already attached"):
        cache.attach(1, [2])
    with pytest.raises(ValueError, match="seq_id 1 is already attached"):
        cache.allocate(1, [2])
    with pytest.raises(ValueError, match="child_id 1 is already attached"):
        cache.fork(1, 1)
    with pytest.raises(TypeError, match="hashable"):
        cache.attach([1], [2])
    cache.detach(1)
    with pytest.raises(UnknownSequenceError):
        cache.detach(1)


def test_bad_inputs():
    cache = KVCache(page_size=2, max_pages=4)
    with pytest.raises(ValueError, match="prefix_tokens has 3 tokens, more than the 2"):
        cache.attach(1, [1, 2], prefix_tokens=[1, 2, 3])
    with pytest.raises(TypeError, match="kv_tokens must hold numbers"):
        cache.attach(1, ["a", "b"])
    with pytest.raises(ValueError, match="kv_tokens must have shape"):
        cache.attach(1, [[1, 2]])
    with pytest.raises(TypeError, match="prefix_tokens must hold integer"):
        cache.attach(1, [1.0, 2.0], prefix_tokens=[1.5, 2.5])
    with pytest.raises(ValueError, match="token_ids must be 1-D"):
        cache.allocate(1, [[1, 2]])
    with pytest.raises(TypeError, match="token_ids must hold integer"):
        cache.allocate(1, [True, False])
    with pytest.raises(TypeError, match="extra_key must be None, int, str, bytes or a tuple"):
        cache.allocate(1, [1, 2], extra_key=[1])
    cache.attach(2, [1.0])
    with pytest.raises(ValueError, match="not created by allocate"):
        cache.append_tokens(2, [1])
    assert len(cache) == 1 and 2 in cache and 1 not in cache
    cache._check()


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1.5}, "page_size"),
        ({"max_pages": 0}, "max_pages"),
        ({"max_pages": -2}, "max_pages"),
        ({"token_shape": (0,)}, "token_shape"),
        ({"hash_algorithm": "md5"}, "hash_algorithm"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, msg):
    with pytest.raises((TypeError, ValueError), match=msg):
        KVCache(**kwargs)


@pytest.mark.slow
def test_kernel_runs_without_jit():
    code = (
        "import numpy as np\n"
        "from llmds.kv_cache import KVCache\n"
        "c = KVCache(page_size=4, max_pages=8)\n"
        "c.allocate(1, list(range(9)))\n"
        "c.free(1)\n"
        "assert c.allocate(2, list(range(9))) == 8\n"
        "from llmds._kernels.kv import chain_hashes\n"
        "with np.errstate(over='ignore'):\n"
        "    h = chain_hashes(np.arange(8, dtype=np.uint64), 4, 2, np.uint64(7))\n"
        "print(h.tolist())\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    from llmds._kernels.kv import chain_hashes

    with np.errstate(over="ignore"):  # this process may run without the JIT too
        jitted = chain_hashes(np.arange(8, dtype=np.uint64), 4, 2, np.uint64(7)).tolist()
    assert out.stdout.strip() == str(jitted)


def test_trace_hit_rate_matches_ideal_model():
    from llmds.bench.workloads import multi_turn_chat_trace

    trace = multi_turn_chat_trace(
        60,
        seed=3,
        system_prompt_tokens=40,
        user_tokens=(5, 30),
        follow_up_tokens=(3, 20),
        output_tokens=(3, 30),
    )
    cache = KVCache(page_size=4, max_pages=100_000)
    for r in trace:
        cache.allocate(r.request_id, r.prompt)
        cache.append_tokens(r.request_id, r.output)
        cache.free(r.request_id)
    ideal = ideal_prefix_hits([(r.prompt.tolist(), r.output.tolist()) for r in trace], 4)
    assert cache.stats()["prefix_hit_rate"] == pytest.approx(ideal)
    assert cache.stats()["evictions"] == 0
    cache._check()


# ------------------------------------------------------- stateful model
PS, MAXP = 3, 12
values = st.lists(st.sampled_from([0.0, 1.0, 2.0]), max_size=7)
tokens = st.lists(st.integers(0, 2), max_size=8)


class KVCacheAgainstModel(RuleBasedStateMachine):
    """Model: seq_id -> list of values; the cache must read back what was written."""

    seqs = Bundle("seqs")

    def __init__(self):
        super().__init__()
        self.cache = KVCache(page_size=PS, max_pages=MAXP)
        self.model = NaiveKV(PS)
        self.next_id = 0

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    def _try(self, fn):
        """Run fn; on CapacityError check nothing changed and return False."""
        before = snapshot(self.cache)
        try:
            fn()
        except CapacityError:
            after = snapshot(self.cache)
            assert after[:6] == before[:6]
            return False
        return True

    @rule(target=seqs, vals=values, prefix_len=st.integers(0, 7), shared_prefix=st.booleans())
    def attach(self, vals, prefix_len, shared_prefix):
        seq_id = self._new_id()
        prefix = [int(v) for v in vals[: min(prefix_len, len(vals))]]
        ok = self._try(lambda: self.cache.attach(seq_id, vals, prefix if shared_prefix else None))
        if ok:
            self.model.attach(seq_id, vals)
            return seq_id
        return -1

    def _put(self, page, off, vals):
        """Write token ids as values into the pool, as an engine writes its KV."""
        self.cache.pool[page, off : off + len(vals)] = vals

    @staticmethod
    def _page_values(toks, i):
        return [float(t) for t in toks[i * PS : (i + 1) * PS]]

    @rule(toks=tokens, ns=st.sampled_from([None, "t"]))
    def probe(self, toks, ns):
        """Read-only; it also leaves a walk that a later ``allocate`` may resume."""
        before = snapshot(self.cache)
        pages = self.cache.cached_pages(toks, extra_key=ns)
        assert len(pages) <= len(toks) // PS
        for i, page in enumerate(pages):  # a cached page holds its tokens
            assert self.cache.pool[page].tolist() == self._page_values(toks, i)
        after = snapshot(self.cache)
        assert after[:6] == before[:6]

    @rule(target=seqs, toks=tokens, ns=st.sampled_from([None, "t"]), probe_first=st.booleans())
    def allocate(self, toks, ns, probe_first):
        seq_id = self._new_id()
        probed = self.cache.cached_pages(toks, extra_key=ns) if probe_first else None
        hit = []

        def go():
            hit.append(self.cache.allocate(seq_id, toks, extra_key=ns))

        ok = self._try(go)
        if ok:
            table = self.cache.block_table(seq_id).tolist()
            # the reused pages already hold exactly these values (same chain, same tokens)
            for i in range(hit[0] // PS):
                assert self.cache.pool[table[i]].tolist() == self._page_values(toks, i)
            if probed is not None:
                assert table[: hit[0] // PS] == probed
            for i, page in enumerate(table):
                chunk = toks[i * PS : (i + 1) * PS]
                self._put(page, 0, chunk)
            self.model.attach(seq_id, [float(t) for t in toks])
            self.model.tokens[seq_id] = list(toks)
            return seq_id
        return -1

    @rule(seq=seqs, vals=values)
    def append(self, seq, vals):
        if seq not in self.model.values:
            with pytest.raises(UnknownSequenceError):
                self.cache.append(seq, vals)
            return
        if self._try(lambda: self.cache.append(seq, vals)):
            self.model.append(seq, vals)

    @rule(seq=seqs, toks=tokens)
    def append_tokens(self, seq, toks):
        if seq not in self.model.tokens:
            with pytest.raises((UnknownSequenceError, ValueError)):
                self.cache.append_tokens(seq, toks)
            return
        start = self.cache.num_tokens(seq)

        def go():
            self.cache.append_tokens(seq, toks)

        if self._try(go):
            table = self.cache.block_table(seq).tolist()
            for j, t in enumerate(toks):
                page, off = divmod(start + j, PS)
                self._put(table[page], off, [t])
            self.model.values[seq].extend(float(t) for t in toks)
            self.model.tokens[seq].extend(toks)

    @rule(target=seqs, seq=seqs)
    def fork(self, seq):
        child = self._new_id()
        if seq not in self.model.values:
            with pytest.raises(UnknownSequenceError):
                self.cache.fork(seq, child)
            return -1
        self.cache.fork(seq, child)
        self.model.fork(seq, child)
        return child

    @rule(seq=consumes(seqs))
    def detach(self, seq):
        if seq not in self.model.values:
            with pytest.raises(UnknownSequenceError):
                self.cache.detach(seq)
            return
        self.cache.detach(seq)
        self.model.detach(seq)

    @rule(k=st.integers(0, 3))
    def evict(self, k):
        self.cache.evict(k)

    @invariant()
    def contents_match(self):
        self.cache._check()
        for seq, vals in self.model.values.items():
            assert self.cache.get(seq) == vals
        s = self.cache.stats()
        assert s["num_sequences"] == len(self.model.values)
        assert s["used_pages"] + s["cached_pages"] + s["free_pages"] == MAXP

    def teardown(self):
        for seq in list(self.model.values):
            self.cache.detach(seq)
        self.cache.evict()
        s = self.cache.stats()
        assert s["used_pages"] == 0 and s["free_pages"] == MAXP
        assert s["total_page_refs"] == 0
        self.cache._check()


KVCacheAgainstModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestKVCacheAgainstModel = pytest.mark.slow(KVCacheAgainstModel.TestCase)


class Chain64KVCacheAgainstModel(KVCacheAgainstModel):
    """The same model test with the opt-in chain64 page hashes."""

    def __init__(self):
        super().__init__()
        self.cache = KVCache(page_size=PS, max_pages=MAXP, hash_algorithm="chain64")


Chain64KVCacheAgainstModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None
)
TestChain64KVCacheAgainstModel = pytest.mark.slow(Chain64KVCacheAgainstModel.TestCase)


def test_can_allocate():
    cache = KVCache(page_size=4, max_pages=2)
    assert cache.can_allocate(8) and not cache.can_allocate(9) and cache.can_allocate(0)
    cache.allocate(1, [1, 2, 3, 4])
    assert not cache.can_allocate(5)
    cache.free(1)  # the page stays cached but can be evicted
    assert cache.can_allocate(8)
    with pytest.raises(ValueError, match="num_tokens"):
        cache.can_allocate(-1)


# ------------------------------------------------------- benchmark helpers
def test_seed_benchmark_function_returns_seed_keys():
    from benchmarks.bench_kv_cache import benchmark_kv_cache

    res = benchmark_kv_cache(num_sequences=10, tokens_per_seq=40, page_size=8)
    for op in ("attach", "get", "detach"):
        for p in ("p50", "p95", "p99"):
            assert res[f"{op}_{p}_ms"] >= 0.0
    assert res["peak_rss_mb"] > 0 and "memory_delta_mb" in res
    # 20 shared tokens = 2 full pages of 8 shared by sequences with the same prompt
    assert res["pages_with_sharing"] < res["pages_without_sharing"] == 50
    assert 0.0 < res["memory_saved_fraction"] < 1.0


def test_vllm_style_baseline_matches_kvcache_hit_rate():
    from llmds.bench.bench_kv_cache import (
        VLLMStyleBaseline,
        ideal_hit_rate,
        replay_llmds,
    )
    from llmds.bench.workloads import multi_turn_chat_trace

    trace = multi_turn_chat_trace(40, seed=5)
    ours = replay_llmds(trace, 100_000, "chain64").stats()["prefix_hit_rate"]
    base = VLLMStyleBaseline(100_000 // 16).run(
        [(r.prompt.tolist(), r.output.tolist()) for r in trace]
    )
    assert ours == pytest.approx(ideal_hit_rate(trace, 16))
    assert base == pytest.approx(ours, abs=0.01)  # vLLM caps a hit at len(prompt) - 1


# ------------------------------------------------------ numbers and sizes (issue 12 §3)
@pytest.mark.parametrize(
    ("value", "exc", "msg"),
    [(None, TypeError, "kv must be numbers"), ("7.5", TypeError, "kv must be numbers"),
     (float("nan"), ValueError, "finite"), ([1.0, float("inf")], ValueError, "finite"),
     (True, TypeError, "dtype bool"), ([1, None], TypeError, "dtype object")],
)
def test_append_rejects_non_numbers(value, exc, msg):
    cache = KVCache(page_size=2, max_pages=4)
    cache.attach(1, [1.0])
    before = snapshot(cache)
    with pytest.raises(exc, match=msg):
        cache.append(1, value)
    assert cache.get(1) == [1.0]
    assert snapshot(cache)[:6] == before[:6]
    cache._check()


def test_integer_pools_take_integers_in_range():
    cache = KVCache(page_size=2, max_pages=4, dtype=np.uint8)
    cache.attach(1, [255, 0])
    with pytest.raises(ValueError, match=r"in \[0, 255\]"):
        cache.append(1, 256)
    with pytest.raises(TypeError, match="integers for a uint8 pool"):
        cache.append(1, 7.5)
    assert cache.get(1) == [255, 0]


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"max_pages": 2**31}, "max_pages must be <= 16777216"),
     ({"page_size": 2**21}, "page_size must be in"),
     ({"max_pages": 2**20, "page_size": 2**20}, "more than MAX_POOL_BYTES"),
     ({"token_shape": (2**20, 2**20)}, "more than MAX_POOL_BYTES"),
     ({"vocab_size": 2**32 + 1}, "vocab_size")],
)
def test_sizes_are_capped_before_allocating(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        KVCache(**kwargs)


def test_vocab_size_bounds_token_ids():
    cache = KVCache(page_size=2, max_pages=4, vocab_size=100)
    cache.allocate(1, [99, 0, 5])
    for bad in ([100], [-1], [2**40]):
        with pytest.raises(ValueError, match="token_ids must hold values"):
            cache.append_tokens(1, bad)
    with pytest.raises(ValueError, match="prefix_tokens must hold values"):
        cache.attach(2, [1.0], prefix_tokens=[100])
    assert cache.num_tokens(1) == 3 and 2 not in cache
    cache._check()


@pytest.mark.parametrize("algo", ["sha256", "chain64"])
def test_reused_token_buffer_does_not_change_cached_identities(algo):
    """An engine reuses one uint32 buffer for token ids: the cache must copy the
    partial page's ids (it once kept a view), or later pages hash the wrong tokens."""
    buf = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint32)
    cache = KVCache(page_size=4, max_pages=8, hash_algorithm=algo)
    cache.allocate("a", buf)  # one full page + the partial [5, 6]
    buf[:] = 99  # the caller's buffer now holds other ids
    cache.append_tokens("a", np.array([7, 8], dtype=np.uint32))  # fills [5, 6, 7, 8]
    buf[:] = 98
    cache.free("a")
    assert cache.allocate("b", [1, 2, 3, 4, 5, 6, 7, 8]) == 8  # both pages: real ids
    cache._check()
