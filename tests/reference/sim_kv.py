"""Naive model of the simulator's radix KV backend: a set of cached page-prefixes.

Every whole-page prefix a request inserts (at the end of its prefill and when it
finishes) joins the set; a request's prefix hit is the longest whole-page prefix
of its tokens in the set. Without eviction (a pool large enough) that is exactly
what :class:`llmds.sim.kv_backends.RadixBackend` must report; with eviction it is
an upper bound. Page counts: the tree holds one page per cached page-prefix, and
a live request owns ``ceil(tokens / page) - hit / page`` pages. O(n**2) per call.
"""

from __future__ import annotations

from collections.abc import Sequence


class NaiveServingKV:
    """Mirrors RadixBackend's contract at the granularity of one page."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.cached: set[tuple[int, ...]] = set()
        self.seqs: dict[int, tuple[list[int], int]] = {}  # sid -> (tokens, hit)

    def hit(self, tokens: Sequence[int]) -> int:
        ps, k = self.page_size, 0
        while k + ps <= len(tokens) and tuple(tokens[: k + ps]) in self.cached:
            k += ps
        return k

    def allocate(self, sid: int, tokens: Sequence[int], hit: int) -> None:
        self.seqs[sid] = (list(tokens), hit)

    def append(self, sid: int, tokens: Sequence[int]) -> None:
        toks, hit = self.seqs[sid]
        self.seqs[sid] = (toks + list(tokens), hit)

    def _insert(self, sid: int, computed: int) -> int:
        toks = self.seqs[sid][0]
        ps = self.page_size
        keep = min(computed, len(toks)) // ps * ps
        for end in range(ps, keep + 1, ps):
            self.cached.add(tuple(toks[:end]))
        return keep

    def cache_prefill(self, sid: int, computed: int) -> None:
        keep = self._insert(sid, computed)
        toks, hit = self.seqs[sid]
        self.seqs[sid] = (toks, max(hit, keep))

    def free(self, sid: int, computed: int) -> None:
        self._insert(sid, computed)
        del self.seqs[sid]

    def own_pages(self) -> int:
        ps = self.page_size
        return sum(-(-len(t) // ps) - h // ps for t, h in self.seqs.values())
