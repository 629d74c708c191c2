"""One engine replica sharing a KV page tier and an admission budget through Redis.

Run it in two terminals (or twice in a row) against the same Redis::

    python -m llmds.dist.demo redis://127.0.0.1:6379/0

Each run is a replica: a :class:`~llmds.KVCache` whose second tier is a
:class:`~llmds.dist.RedisPageStore`, and a :class:`~llmds.dist.RedisAdmissionController`
whose budget (``--qps`` requests/s over every replica) lives in Redis. It serves a few
chat turns that share a system prompt with every other run; the prompts another
replica already served come back from Redis (``remote hit tokens``) instead of being
recomputed, and the admissions of all replicas together stay within one budget.
The KV values are a pure function of the tokens, so each hit is checked against what
the engine would have computed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from llmds import KVCache
from llmds.dist import RedisAdmissionController, RedisPageStore, RemoteTier

PAGE = 16
TOKEN_SHAPE = (2, 4)  # a toy KV row: K and V of 4 dims


def _kv(tokens: np.ndarray) -> np.ndarray:
    """The toy engine's KV: row ``i`` depends on ``tokens[: i + 1]`` only."""
    h = np.cumsum(tokens.astype(np.float64) % 997)
    return np.repeat((h % 65_521)[:, None], 8, axis=1).reshape(-1, *TOKEN_SHAPE).astype(
        np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmds.dist.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=8, help="chat turns to serve")
    parser.add_argument("--qps", type=float, default=20.0, help="requests/s, all replicas")
    args = parser.parse_args(argv)

    store = RedisPageStore(args.url, model="llmds-demo", dtype=np.float32, page_size=PAGE,
                           page_shape=(PAGE, *TOKEN_SHAPE))
    if not store.ping():
        print(f"no Redis at {store.url}; start one with: redis-server --save ''",
              file=sys.stderr)
        return 1
    admission = RedisAdmissionController(args.url, args.qps, 1e9, burst=1.0,
                                         name="llmds-demo")
    with RemoteTier(store, background=True) as tier:
        cache = KVCache(page_size=PAGE, max_pages=4096, token_shape=TOKEN_SHAPE,
                        dtype=np.float32, remote=tier)
        rng = np.random.default_rng(0)  # the same conversation in every replica
        system = rng.integers(0, 32_000, 200)
        history = system
        admitted = 0
        start = time.monotonic()
        for turn in range(args.requests):
            history = np.concatenate([history, rng.integers(0, 32_000, 40)])
            while not admission.try_admit(len(history))[0]:
                time.sleep(0.01)  # over the shared budget: wait for the bucket
            admitted += 1
            hit = cache.allocate(turn, history)
            truth = _kv(history)
            assert np.array_equal(cache.get_array(turn)[:hit], truth[:hit]), "wrong KV"
            table = cache.block_table(turn)
            for i in range(hit, len(history)):  # "prefill" the rest
                cache.pool[table[i // PAGE], i % PAGE] = truth[i]
            cache.free(turn)
            print(f"pid {os.getpid()} turn {turn}: {len(history)} prompt tokens, "
                  f"{hit} not recomputed")
        elapsed = time.monotonic() - start
    stats = cache.stats()
    print(f"pid {os.getpid()}: prefix hit rate {stats['prefix_hit_rate']:.2f}, remote hit "
          f"tokens {stats['remote_hit_tokens']}, pages written {tier.stats()['written_pages']}"
          f"; {admitted} admitted in {elapsed:.2f} s under a shared {args.qps:g} req/s")
    admission.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
