"""Seeded workloads of the benchmark suite.

:func:`zipf_keys` (skewed key streams for the caches, the sketch and the retrieval
cache) lives here; the multi-turn chat trace is the simulator's
(:mod:`llmds.sim.workloads`) and is re-exported for the KV-memory benchmarks.

Every generator takes a ``seed`` and returns the same data for the same arguments on
every machine (NumPy ``default_rng``, PCG64). Thread safety: pure functions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmds._validate import check_nonneg_int, check_number, check_positive_int
from llmds.sim.workloads import ChatRequest, check_seed, multi_turn_chat_trace

__all__ = ["ChatRequest", "multi_turn_chat_trace", "zipf_keys"]


def zipf_keys(n: int, num_keys: int, s: float = 1.1, seed: int = 0) -> npt.NDArray[np.int64]:
    """``n`` keys in ``[0, num_keys)`` with P(rank r) proportional to ``1 / r**s``. O(n log k).

    Ranks are shuffled onto key ids so hot keys are spread over the id space.
    """
    n = check_nonneg_int(n, "n")
    num_keys = check_positive_int(num_keys, "num_keys")
    s = check_number(s, "s", minimum=0.0)
    rng = np.random.default_rng(check_seed(seed))
    weights = 1.0 / np.arange(1, num_keys + 1, dtype=np.float64) ** s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n), side="right")
    ranks = np.minimum(ranks, num_keys - 1)
    perm = rng.permutation(num_keys)
    return perm[ranks].astype(np.int64)
