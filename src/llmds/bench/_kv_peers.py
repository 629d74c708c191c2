"""The KV-cache benchmark's peers: vLLM's v1 KVCacheManager, and its algorithm
re-implemented in plain Python for when vLLM cannot be imported (internal to
``llmds.bench``; :mod:`llmds.bench.bench_kv_cache` times them on the chat trace)."""

from __future__ import annotations

import hashlib
import os
import pickle
from typing import Any

from llmds.bench import harness
from llmds.bench.workloads import ChatRequest

__all__ = ["TRACE_PAGE", "VLLMReplay", "VLLMStyleBaseline", "lifecycle", "vllm_modules"]

TRACE_PAGE = 16


def vllm_modules() -> dict[str, Any] | str:
    """vLLM's v1 KV-cache manager pieces, or the reason they cannot be imported."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    mods = {}
    for name in (
        "torch",
        "vllm.v1.kv_cache_interface",
        "vllm.v1.core.kv_cache_manager",
        "vllm.v1.core.kv_cache_utils",
        "vllm.utils.hashing",
        "vllm.v1.request",
        "vllm.sampling_params",
    ):
        mod = harness.peer(name)
        if mod is None:
            return f"{name}: {harness.skipped(name)}"
        mods[name] = mod
    return mods


class VLLMReplay:
    """The trace through vLLM's ``KVCacheManager`` as its scheduler drives it."""

    def __init__(self, mods: dict[str, Any], trace: list[ChatRequest]) -> None:
        self.m = mods
        utils = mods["vllm.v1.core.kv_cache_utils"]
        sha256 = mods["vllm.utils.hashing"].sha256
        utils.init_none_hash(sha256)
        self.hasher = utils.get_request_block_hasher(TRACE_PAGE, sha256)
        self.reqs = [(str(r.request_id), r.prompt.tolist(), r.output.tolist()) for r in trace]

    def manager(self, num_blocks: int) -> Any:
        iface = self.m["vllm.v1.kv_cache_interface"]
        spec = iface.FullAttentionSpec(
            block_size=TRACE_PAGE,
            num_kv_heads=1,
            head_size=1,
            dtype=self.m["torch"].float32,
        )
        cfg = iface.KVCacheConfig(
            num_blocks=num_blocks,
            kv_cache_tensors=[],
            kv_cache_groups=[iface.KVCacheGroupSpec(["layer0"], spec)],
        )
        return self.m["vllm.v1.core.kv_cache_manager"].KVCacheManager(
            cfg,
            max_model_len=1 << 20,
            scheduler_block_size=TRACE_PAGE,
            hash_block_size=TRACE_PAGE,
            enable_caching=True,
        )

    def requests(self) -> list[tuple[Any, list[int], list[int]]]:
        """Fresh vLLM ``Request`` objects for the trace, without a block hasher: the
        engine builds them whatever its KV-cache manager (~47 us each), so a timed
        replay gets them from an untimed setup and attaches the hasher itself."""
        Request = self.m["vllm.v1.request"].Request
        SamplingParams = self.m["vllm.sampling_params"].SamplingParams
        return [(Request(rid, prompt, SamplingParams(max_tokens=len(output)), None),
                 prompt, output) for rid, prompt, output in self.reqs]

    def setup(self, num_blocks: int) -> tuple[Any, list[tuple[Any, list[int], list[int]]]]:
        """A fresh manager and fresh requests (the untimed part of one replay)."""
        return self.manager(num_blocks), self.requests()

    def run(self, state: Any) -> float:
        """Replay the trace as vLLM's scheduler drives its manager; returns the hit rate.

        ``state`` is :meth:`setup`'s pair, or a bare manager (then the requests are
        built inside, as before). Each request gets vLLM's SHA-256 block hasher here,
        as ``Request.__init__`` attaches it (so hashing the prompt is timed), and the
        returned blocks' ids are read as the scheduler reads them.
        """
        mgr, reqs = state if isinstance(state, tuple) else (state, self.requests())
        return lifecycle(mgr, reqs, self.hasher)


def lifecycle(mgr: Any, reqs: list[tuple[Any, list[int], list[int]]],
              hasher: Any = None) -> float:
    """Each request through ``mgr`` (vLLM's ``KVCacheManager`` interface): lookup,
    allocate the prompt, decode the output in one step, allocate it, free; returns
    the hit rate. With ``hasher``, vLLM's block hasher is attached to each request
    first, as vLLM's ``Request.__init__`` does."""
    hit = total = 0
    for req, prompt, output in reqs:
        if hasher is not None:
            req._block_hasher = hasher  # what Request(..., block_hasher=hasher) sets
            req.update_block_hashes()
        blocks, num_computed, _ = mgr.get_computed_blocks(req)
        new = mgr.allocate_slots(req, len(prompt) - num_computed, num_computed, blocks)
        if new is None:
            raise RuntimeError("the KV-cache manager could not allocate the prompt")
        new.get_block_ids()
        req.num_computed_tokens = len(prompt)
        req.append_output_token_ids(output)
        new = mgr.allocate_slots(req, len(output))
        if new is None:
            raise RuntimeError("the KV-cache manager could not allocate the output")
        new.get_block_ids()
        req.num_computed_tokens += len(output)
        mgr.free(req)
        hit += num_computed
        total += len(prompt)
    return hit / total if total else 0.0


class _Block:
    __slots__ = ("block_hash", "block_id", "next", "prev", "ref_cnt")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash: bytes | None = None
        self.prev: _Block | None = None
        self.next: _Block | None = None


class VLLMStyleBaseline:
    """vLLM v1's block pool re-implemented in plain Python (not vLLM itself).

    SHA-256 over ``pickle((parent_hash, tuple(block_tokens), None))`` per full
    block, a dict of cached blocks, a doubly linked free queue (evict from the
    head, freed blocks appended tail-first), hit capped at ``len(prompt) - 1``.
    """

    def __init__(self, num_blocks: int) -> None:
        self.blocks = [_Block(i) for i in range(num_blocks)]
        self.head = _Block(-1)
        self.tail = _Block(-2)
        prev = self.head
        for b in self.blocks:
            prev.next, b.prev = b, prev
            prev = b
        prev.next, self.tail.prev = self.tail, prev
        self.cached: dict[bytes, _Block] = {}
        self.none_hash = hashlib.sha256(b"none").digest()

    def _remove(self, b: _Block) -> None:
        b.prev.next, b.next.prev = b.next, b.prev  # type: ignore[union-attr]
        b.prev = b.next = None

    def _append(self, b: _Block) -> None:
        last = self.tail.prev
        last.next, b.prev, b.next, self.tail.prev = b, last, self.tail, b  # type: ignore[union-attr]

    def _hashes(self, tokens: list[int], start: int, parent: bytes) -> list[bytes]:
        out = []
        for i in range(start, len(tokens) // TRACE_PAGE):
            blk = tuple(tokens[i * TRACE_PAGE : (i + 1) * TRACE_PAGE])
            parent = hashlib.sha256(
                pickle.dumps((parent, blk, None), protocol=pickle.HIGHEST_PROTOCOL)
            ).digest()
            out.append(parent)
        return out

    def _new(self, n: int) -> list[_Block]:
        got = []
        for _ in range(n):
            b = self.head.next
            if b is self.tail or b is None:
                raise RuntimeError("out of blocks")
            self._remove(b)
            if b.block_hash is not None:
                del self.cached[b.block_hash]
                b.block_hash = None
            b.ref_cnt = 1
            got.append(b)
        return got

    def _cache(self, blocks: list[_Block], hashes: list[bytes]) -> None:
        for b, h in zip(blocks, hashes, strict=False):
            if b.block_hash is None and h not in self.cached:
                b.block_hash = h
                self.cached[h] = b

    def run(self, trace: list[tuple[list[int], list[int]]]) -> float:
        hit = total = 0
        for prompt, output in trace:
            hashes = self._hashes(prompt, 0, self.none_hash)
            limit = (len(prompt) - 1) // TRACE_PAGE
            blocks: list[_Block] = []
            for h in hashes[:limit]:
                b = self.cached.get(h)
                if b is None:
                    break
                blocks.append(b)
            for b in blocks:
                if b.ref_cnt == 0:
                    self._remove(b)
                b.ref_cnt += 1
            nc = len(blocks) * TRACE_PAGE
            blocks += self._new(-(-len(prompt) // TRACE_PAGE) - len(blocks))
            self._cache(blocks, hashes)
            seq = prompt + output
            more = self._hashes(seq, len(hashes), hashes[-1] if hashes else self.none_hash)
            blocks += self._new(-(-len(seq) // TRACE_PAGE) - len(blocks))
            self._cache(blocks[len(hashes) :], more)
            for b in reversed(blocks):
                b.ref_cnt -= 1
                if b.ref_cnt == 0:
                    self._append(b)
            hit += nc
            total += len(prompt)
        return hit / total if total else 0.0
