"""llmds.integrations.vllm: vLLM v1's KVCacheManager interface over KVCache.

The block-hash vectors were computed once with vLLM 0.34.0's own Request and block
hasher (``get_request_block_hasher(4, sha256)`` after ``init_none_hash(sha256)``,
PYTHONHASHSEED unset) and are frozen here. Lifecycles are checked against a naive
model: an unbounded cache of every full block ever allocated, hits capped at
``num_tokens - 1`` (tests/reference/kv.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmds.integrations.vllm import (
    KVCacheManager,
    hash_block_tokens,
    none_hash,
)
from tests.reference.kv import ideal_prefix_hits

NONE_HASH = "066b1e8987e027138e98701c46128929378935f9b6cd1549105ae6b4f0d71198"
VECTORS = {  # name: (prompt, lora (name, id, path) or None, cache_salt, block hashes)
    "plain": (list(range(10)), None, None, [
        "9da1c53089c000ad1a79a77c143b68dda00e2a85315bc1f690bbd03ba4a195dd",
        "1c9b6c0620e875631f1c5395ed56f2243aa113f88fc842f04fbb0654074b8d43"]),
    "lora": (list(range(10)), ("adapter", 7, "/models/a"), None, [
        "de756741ca6b6303a38a34c342283b9e2a62ed85638c4f0c3d30e051184f997e",
        "7fa0cc6d30596c387b205e009749c205cbb211d1f93f4f02c13ae2f57e6b9e86"]),
    "salt": ([5, 5, 5, 5, 9, 9, 9, 9, 1], None, "tenant-a", [
        "c7aa359f849a7726314b3f8a4555c9947782d227c6083cdb4d1a667df777f951",
        "198227f705e5d40f52912f396ec3ff3cc2699cb2b70af29e58481eb9e8ac263c"]),
    "big_ids": ([0, 255, 256, 65535, 65536, 2**31 - 2, 2**31 - 1, 7], None, None, [
        "a460e553ebf9a4709aec4c9f4b483550241baed2a0bb0b60e35dc02dbfa7abbe",
        "90b2234c3a2b8d6888ff12f6f10442c23b6aa42c03df5982d6cc2eef293080b2"]),
}


@dataclass
class Lora:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class Request:
    """The fields of vLLM's Request the manager reads (duck-typed)."""

    request_id: str
    prompt: list[int]
    lora_request: Any = None
    cache_salt: str | None = None
    output: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt + self.output

    @property
    def num_tokens(self) -> int:
        return len(self.prompt) + len(self.output)


@pytest.fixture(autouse=True)
def _no_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)


def test_none_hash_vector() -> None:
    assert none_hash().hex() == NONE_HASH
    assert none_hash("other") != none_hash()


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_block_hash_vectors(name: str) -> None:
    prompt, lora, salt, want = VECTORS[name]
    req = Request(name, prompt, Lora(*lora) if lora else None, salt)
    mgr = KVCacheManager(num_blocks=16, block_size=4)
    assert [h.hex() for h in mgr.block_hashes(req)] == want
    if name == "plain":
        assert hash_block_tokens(None, prompt[:4]).hex() == want[0]


def _serve(mgr: KVCacheManager, req: Request, output: list[int]) -> int:
    blocks, hit, _ = mgr.get_computed_blocks(req)
    got = mgr.allocate_slots(req, req.num_tokens - hit, hit, blocks)
    assert got is not None
    req.num_computed_tokens = req.num_tokens
    req.output = list(output)
    assert mgr.allocate_slots(req, len(output)) is not None
    req.num_computed_tokens = req.num_tokens
    ids = mgr.get_block_ids(req.request_id)[0]
    assert len(ids) == -(-req.num_tokens // mgr.block_size) and 0 not in ids
    mgr._check()
    mgr.free(req)
    mgr._check()
    return hit


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 2), min_size=1, max_size=14),
                          st.lists(st.integers(0, 2), max_size=6)), max_size=12),
       st.sampled_from([1, 2, 4]))
def test_lifecycle_against_naive_model(reqs: list, bs: int) -> None:
    mgr = KVCacheManager(num_blocks=1024, block_size=bs)
    hits = 0
    for i, (prompt, output) in enumerate(reqs):
        hits += _serve(mgr, Request(str(i), prompt), output)
    capped = [(p[:-1], p[-1:] + o) for p, o in reqs]  # the last prompt token is recomputed
    total = sum(len(p) for p, _ in reqs)
    ideal = ideal_prefix_hits(capped, bs) * sum(len(p) for p, _ in capped)
    assert hits == round(ideal)
    assert mgr.usage == 0.0 and total >= hits


def test_full_prompt_hit_recomputes_last_block() -> None:
    mgr = KVCacheManager(num_blocks=8, block_size=2)
    _serve(mgr, Request("a", [1, 2, 3, 4]), [])
    req = Request("b", [1, 2, 3, 4])
    blocks, hit, _ = mgr.get_computed_blocks(req)
    assert hit == 2 and len(blocks.get_block_ids()[0]) == 1  # capped at num_tokens - 1
    new = mgr.allocate_slots(req, 2, hit, blocks)
    assert new is not None and len(new.get_block_ids()[0]) == 1
    assert new.get_block_ids()[0][0] not in mgr.get_block_ids("a")[0]


def test_capacity_usage_and_reset() -> None:
    mgr = KVCacheManager(num_blocks=5, block_size=2, log_stats=True)  # 4 usable blocks
    req = Request("a", [1, 2, 3, 4, 5, 6])
    assert mgr.allocate_slots(req, 6) is not None
    assert mgr.usage == pytest.approx(0.75)
    big = Request("b", [9] * 6)
    assert mgr.allocate_slots(big, 6) is None  # does not fit: nothing changes
    assert mgr.get_block_ids("b") == ([],) and mgr.usage == pytest.approx(0.75)
    assert mgr.reset_prefix_cache() is False
    mgr.free(req)
    assert mgr.usage == 0.0  # cached blocks count as free
    mgr.record_prefix_cache_stats(req, 4)
    stats = mgr.make_prefix_cache_stats()
    assert stats is not None and (stats.requests, stats.queries, stats.hits) == (1, 6, 4)
    assert mgr.get_num_cached_tokens(Request("c", [1, 2, 3, 4, 5, 6])) == 4
    assert mgr.reset_prefix_cache() is True
    assert mgr.get_num_cached_tokens(Request("c", [1, 2, 3, 4, 5, 6])) == 0


def test_namespaces_and_bad_calls() -> None:
    mgr = KVCacheManager(num_blocks=32, block_size=2)
    _serve(mgr, Request("a", [1, 2, 3, 4, 5], cache_salt="t1"), [])
    assert mgr.get_computed_blocks(Request("b", [1, 2, 3, 4, 5], cache_salt="t2"))[1] == 0
    assert mgr.get_computed_blocks(Request("b", [1, 2, 3, 4, 5], cache_salt="t1"))[1] == 4
    lora = Lora("x", 1, "/x")
    assert mgr.get_computed_blocks(Request("b", [1, 2, 3, 4, 5], lora, "t1"))[1] == 0
    req = Request("c", [7, 7, 7, 7, 7])
    with pytest.raises(ValueError, match="num_new_computed_tokens"):
        mgr.allocate_slots(req, 1, 4)  # claims a hit that is not cached
    assert mgr.get_block_ids("c") == ([],)
    with pytest.raises(ValueError, match="token ids are known"):
        mgr.allocate_slots(req, 9)
    with pytest.raises(NotImplementedError):
        mgr.allocate_slots(req, 1, num_lookahead_tokens=2)
    with pytest.raises(TypeError, match="num_blocks"):
        KVCacheManager()
    mgr._check()


def test_pythonhashseed_changes_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    assert none_hash() != bytes.fromhex(NONE_HASH)
    assert os.environ["PYTHONHASHSEED"] == "7"
