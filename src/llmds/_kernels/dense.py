"""Exact nearest-neighbour scoring (numba): every admitted vector against every query.

:func:`exact_distances` computes each (vector, query) distance with the HNSW kernels'
own :func:`~llmds._kernels.hnsw._dist`, so

* a pair's distance has the same bits whatever the matrix shapes, the rows admitted
  or the batch size: BLAS does not promise that (OpenBLAS 0.3.31 here gave
  1-ulp differences for the same pair between a 5,183-row and a 37-row product, and
  between one query and three), and a sharded index must score a document on its
  shard exactly as one index scores it;
* the exact path and the graph path of :class:`~llmds._vectors.VectorStore` give one
  document the same distance, so crossing ``brute_force_max`` changes no score.

Cost: O(queries * rows * dim); rows outer, so each vector is read from memory once per
call. Measured on SciFact (5,183 x 384 MiniLM vectors): one query 0.42 ms against
0.21 ms for NumPy's BLAS product; the pipeline uses this path only up to
``brute_force_max`` (default 1,024) admitted vectors.
"""

from __future__ import annotations

import numba

from llmds._kernels.hnsw import _FAST, _dist

__all__ = ["exact_distances"]


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def exact_distances(vectors, rows, queries, metric, out):
    """``out[i, j] = _dist(vectors[rows[j]], queries[i])`` (float32; 0: squared L2,
    1: ``1 - dot``). Preconditions: C-contiguous float32 ``vectors``/``queries`` of one
    width, ``rows`` valid int64 row numbers, ``out`` float32 ``(len(queries), len(rows))``.
    """
    nq = queries.shape[0]
    for j in range(rows.shape[0]):
        r = rows[j]
        for i in range(nq):
            out[i, j] = _dist(vectors, r, queries, i, metric)
