"""HNSW filters: an admitted-id set as a mask over slots, and exact search over few slots.

A filtered search either walks the graph with the non-admitted slots blocked (they
are still expanded, so the graph stays connected) or, when at most
:data:`BRUTE_FORCE_MAX` slots are admitted, answers exactly by brute force: a graph
search would have to walk most of the graph to find that few admitted nodes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import show

__all__ = ["BRUTE_FORCE_MAX", "allowed_slots", "exact_search"]

BRUTE_FORCE_MAX = 512


def allowed_slots(filt: Any, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Mask over slots (``labels`` = their ids) of the ids that ``filt`` admits. O(n).

    ``filt`` is a 1-D boolean mask indexed by id (ids past its end are not admitted)
    or a 1-D array of admitted ids (unknown ids are ignored). Raises ``TypeError`` /
    ``ValueError`` naming ``filter`` otherwise.
    """
    expected = "filter must be a 1-D boolean mask indexed by id or a 1-D array of ids"
    arr = None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        arr = None if isinstance(filt, str | bytes) else np.asarray(filt)
    if arr is None:
        raise TypeError(f"{expected}, got {show(filt)}")
    if arr.dtype == np.bool_:
        if arr.ndim != 1:
            raise ValueError(f"{expected}, got a mask of shape {arr.shape}")
        inside = labels < arr.shape[0]
        allowed = np.zeros(labels.shape[0], dtype=bool)
        allowed[inside] = arr[labels[inside]]
        return allowed
    if arr.ndim == 1 and arr.size == 0:
        return np.zeros(labels.shape[0], dtype=bool)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(f"{expected}, got dtype {arr.dtype} shape {arr.shape}")
    return np.isin(labels, arr)


def exact_search(q: npt.NDArray[np.float32], k: int, slots: npt.NDArray[np.intp],
                 vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64],
                 metric_code: int, ids: npt.NDArray[np.int64],
                 out_d: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Exact k-NN of the rows of ``q`` among ``slots`` into ``ids`` / ``out_d``; the counts.

    Distances as the kernels define them (``metric_code`` 0: squared L2, 1:
    ``1 - dot``), ties broken by slot order. O(len(q) * len(slots) * dim).
    """
    nq = q.shape[0]
    if slots.size == 0 or nq == 0:
        return np.zeros(nq, dtype=np.int64)
    v = vectors[slots]
    with np.errstate(over="ignore", invalid="ignore"):
        if metric_code == 0:
            d = ((q[:, None, :] - v[None, :, :]) ** 2).sum(-1, dtype=np.float32)
        else:
            d = (1.0 - q @ v.T).astype(np.float32)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    kk = order.shape[1]
    ids[:, :kk] = labels[slots[order]]
    out_d[:, :kk] = np.take_along_axis(d, order, axis=1)
    return np.full(nq, kk, dtype=np.int64)
