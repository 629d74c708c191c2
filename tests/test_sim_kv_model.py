"""Stateful tests of the simulator's radix KV backend against tests/reference/sim_kv.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from llmds.errors import CapacityError
from llmds.sim.kv_backends import RadixBackend
from tests.reference.sim_kv import NaiveServingKV

PS = 2
_tokens = st.lists(st.integers(0, 2), min_size=1, max_size=12)


class _Machine(RuleBasedStateMachine):
    pool_pages = 4096
    exact = True  # no eviction possible: hits and page counts match the model exactly

    live = Bundle("live")

    def __init__(self) -> None:
        super().__init__()
        self.b = RadixBackend(page_size=PS, max_pages=self.pool_pages)
        self.m = NaiveServingKV(PS)
        self.next_sid = 0

    def _codes(self, toks):
        # big raw ids (> 2**32) that repeat exactly when the small ones do
        return self.b.remap.encode(np.asarray(toks, dtype=np.int64) + (5 << 40))

    @rule(target=live, toks=_tokens)
    def allocate(self, toks):
        sid = self.next_sid
        self.next_sid += 1
        before = (self.b.pool.num_free, self.b.tree.total_size(), self.b.tree.protected_size())
        expect = self.m.hit(toks)
        try:
            hit = self.b.allocate(sid, self._codes(toks))
        except CapacityError:
            assert not self.exact
            assert sid not in self.b.seqs
            after = (self.b.pool.num_free, self.b.tree.total_size(),
                     self.b.tree.protected_size())
            assert after == before  # a failed allocate changes nothing
            return None
        assert hit == expect if self.exact else hit <= expect
        self.m.allocate(sid, toks, hit)
        return sid

    @rule(sid=live, more=_tokens)
    def append(self, sid, more):
        if sid is None or sid not in self.m.seqs:
            return
        try:
            self.b.append_tokens(sid, self._codes(more))
        except CapacityError:
            assert not self.exact
            return
        self.m.append(sid, more)

    @rule(sid=live, frac=st.floats(0.0, 1.0))
    def cache_prefill(self, sid, frac):
        if sid is None or sid not in self.m.seqs:
            return
        computed = int(frac * len(self.m.seqs[sid][0]))
        self.b.cache_prefill(sid, computed)
        if self.exact:
            self.m.cache_prefill(sid, computed)
        else:
            self.m._insert(sid, computed)

    @rule(sid=consumes(live), frac=st.floats(0.0, 1.0))
    def free(self, sid, frac):
        if sid is None or sid not in self.m.seqs:
            return
        computed = int(frac * len(self.m.seqs[sid][0]))
        self.b.free(sid, computed)
        self.m.free(sid, computed)

    @invariant()
    def consistent(self):
        self.b._check()
        assert set(self.b.seqs) == set(self.m.seqs)
        if self.exact:
            assert self.b.tree.total_size() == len(self.m.cached) * PS
            own = sum(len(s.pages) for s in self.b.seqs.values())
            assert own == self.m.own_pages()
            assert self.b.pool.num_used == len(self.m.cached) + own

    def teardown(self):
        for sid in list(self.b.seqs):
            self.b.free(sid, 0)
        assert self.b.tree.protected_size() == 0
        assert self.b.drain() == self.pool_pages  # no page leaked


class _SmallPool(_Machine):
    pool_pages = 9  # the longest request (12 + 12 tokens) needs 12 pages: eviction + refusals
    exact = False


TestRadixBackendExact = pytest.mark.slow(_Machine.TestCase)
TestRadixBackendExact.settings = settings(max_examples=60, stateful_step_count=30)
TestRadixBackendSmallPool = pytest.mark.slow(_SmallPool.TestCase)
TestRadixBackendSmallPool.settings = settings(max_examples=60, stateful_step_count=30)
