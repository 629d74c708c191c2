"""HNSW argument checks, on top of :mod:`llmds._validate` (one message style).

Size caps are checked before anything is allocated: the largest embedding models have
a few thousand dimensions, hnswlib suggests ``M`` in 2..100, and a ``search_batch``
result array is capped at 2**28 entries (3 GiB). Ids are ints in ``[0, 2**63 - 1]``:
-1 pads ``search_batch`` results, so no stored id can be mistaken for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import (
    INT64_MAX,
    check_choice,
    check_finite_array,
    check_int,
    check_int_array,
    check_number,
)

__all__ = ["MAX_DIM", "MAX_EF", "MAX_M", "METRICS", "check_ef", "check_ids", "check_k",
           "check_params", "check_results", "coerce_vectors"]

METRICS = {"l2": 0, "ip": 1, "cosine": 1}  # kernel metric codes
MAX_DIM = 2**16
MAX_M = 1024
MAX_EF = 2**31 - 1  # also the largest k
_MAX_RESULTS = 2**28
_MAX_SEED = 2**64 - 1


def check_params(dim: Any, M: Any, ef_construction: Any, ef_search: Any, ml: Any, seed: Any,
                 metric: Any) -> tuple[int, int, int, int, float, int | None, str]:
    """The constructor's arguments, checked; ``ml`` defaults to ``1 / ln(M)``. O(1)."""
    dim = check_int(dim, "dim", minimum=1, maximum=MAX_DIM)
    M = check_int(M, "M", minimum=2, maximum=MAX_M)
    ef_construction = check_int(ef_construction, "ef_construction", minimum=1, maximum=MAX_EF)
    ef_search = check_int(ef_search, "ef_search", minimum=1, maximum=MAX_EF)
    ml = 1.0 / math.log(M) if ml is None else check_number(ml, "ml", minimum=0.0,
                                                           exclusive_minimum=True)
    metric = check_choice(metric, "metric", METRICS)
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0, maximum=_MAX_SEED)
    return dim, M, ef_construction, ef_search, ml, seed, metric


def coerce_vectors(x: Any, name: str, ndim: int, dim: int, cosine: bool,
                   ) -> npt.NDArray[np.float32]:
    """``x`` as a C-contiguous float32 array of ``ndim`` dimensions and ``dim`` columns.

    A 1-D request also takes one row ``(1, dim)``; a 2-D request takes an empty
    sequence as an empty batch. Finite values only; with ``cosine`` rows are normalised
    (in float64, so large finite values cannot overflow to a zero vector). O(size).
    """
    out = check_finite_array(x, name)
    if ndim == 1 and out.ndim == 2 and out.shape[0] == 1:
        out = out[0]
    elif ndim == 2 and out.ndim == 1 and out.size == 0:
        out = out.reshape(0, dim)
    if out.ndim != ndim or out.shape[-1] != dim:
        want = f"({dim},)" if ndim == 1 else f"(n, {dim})"
        raise ValueError(f"{name} must have shape {want}, got {out.shape}")
    if cosine:
        x64 = out.astype(np.float64)
        norms = np.linalg.norm(x64, axis=-1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{name} has a zero vector, which has no cosine direction")
        out = np.ascontiguousarray(x64 / norms, dtype=np.float32)
    return out


def check_k(k: Any) -> int:
    """A result count in ``[1, 2**31 - 1]``. O(1)."""
    return check_int(k, "k", minimum=1, maximum=MAX_EF)


def check_ef(ef: Any, default: int) -> int:
    """A beam width in ``[1, 2**31 - 1]``, ``default`` for ``None``. O(1)."""
    if ef is None:
        return default
    return check_int(ef, "ef", minimum=1, maximum=MAX_EF)


def check_results(num_queries: int, k: int) -> None:
    """Refuse a ``search_batch`` whose ``(num_queries, k)`` result arrays exceed the cap."""
    if num_queries * k > _MAX_RESULTS:
        raise ValueError(f"len(queries) * k must be <= {_MAX_RESULTS}, got "
                         f"{num_queries} * {k}")


def check_ids(ids: Any, n: int) -> npt.NDArray[np.int64]:
    """``n`` unique ids in ``[0, 2**63 - 1]`` as int64 (uint64 is never wrapped). O(n)."""
    arr = check_int_array(ids, "ids", maximum=INT64_MAX)
    if arr.shape[0] != n:
        raise ValueError(f"ids must hold one id per vector ({n}), got {arr.shape[0]}")
    if n and arr.min() < 0:
        raise ValueError(f"ids must be in [0, {INT64_MAX}] (-1 pads search results), "
                         f"got {int(arr.min())}")
    if len(set(arr.tolist())) != n:
        raise ValueError("ids must be unique within one call, got a repeated id")
    return arr
