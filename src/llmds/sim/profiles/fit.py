"""Turning profile points into monotone lookup tables, and measuring how well that works.

**Linear/norm ops and CPU overheads (one feature).** A monotone piecewise-linear
curve: the pool-adjacent-violators algorithm (:func:`pav`, isotonic regression) makes
the medians non-decreasing in the feature, then :func:`numpy.interp` joins them.
GEMM times step at tile boundaries (an H100 ``mlp_down_proj`` jumps 48% between 512
and 520 tokens), so no smooth curve fits them better than the measurements' own
neighbours; pooling only the points that break monotonicity keeps every other point
as measured. Vidur fits random forests instead; near profiled points a forest returns
roughly the measured median too.

**Attention (two features).** The profile grid is sparse and uneven (decode rows at
nine KV lengths with different batch ranges; prefill rows at 22 chunk sizes with
different KV ranges), so a surface is built in two layers:

1. a global physical form fitted by least squares on relative error with
   non-negative coefficients: decode ``c0 + c1 b + c2 b kv + c3 kv`` (memory-bound
   KV reads), prefill ``c0 + c1 c + c2 c^2 + c3 c kv + c4 kv`` (causal and
   cross-chunk attention work);
2. a multiplicative residual measured at the profile points and interpolated
   linearly along each profiled row (decode: a KV length, along batch; prefill: a
   chunk size, along KV), then linearly across the two nearest rows that cover the
   query; outside every row's range the nearest row's residual is carried over.

So profiled points are reproduced, the surface between rows follows the measured
residual pattern (the steps at batch 7, 14, ...), and regions no row covers follow
the physical form. The surface is tabulated on a grid (decode: every batch x KV
step 16; prefill: chunk x KV, step 16) and made monotone by a running maximum along
each axis (in batch/chunk, then in KV; the second pass keeps the first's order).

:func:`holdout_errors` hides a deterministic fraction of the points (seeded), fits on
the rest, and reports the relative error on the hidden ones per operation.

Everything here is a pure function of its arguments: thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "GRID_STEP",
    "MonotoneCurve",
    "Surface",
    "decode_surface",
    "error_summary",
    "holdout_mask",
    "pav",
    "prefill_surface",
]

F64 = npt.NDArray[np.float64]
GRID_STEP = 16  # tokens between grid nodes along KV (and chunk); profile keys are multiples


def pav(y: npt.ArrayLike) -> F64:
    """Non-decreasing least-squares fit of ``y`` (pool adjacent violators). O(n).

    >>> pav([1.0, 3.0, 2.0, 4.0]).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    vals: list[float] = []
    counts: list[int] = []
    for v in np.asarray(y, dtype=np.float64).tolist():
        vals.append(v)
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            n = counts[-2] + counts[-1]
            merged = (vals[-2] * counts[-2] + vals[-1] * counts[-1]) / n
            vals[-2:] = [merged]
            counts[-2:] = [n]
    return np.repeat(np.asarray(vals, dtype=np.float64), counts)


@dataclass(frozen=True, slots=True)
class MonotoneCurve:
    """Monotone piecewise-linear curve through the PAV fit of profile points.

    Invariant: ``x`` strictly increasing, ``y`` non-decreasing. Evaluation is
    O(log n) per point (:func:`numpy.interp`), clamped outside ``[x[0], x[-1]]``.
    """

    x: F64
    y: F64

    @classmethod
    def fit(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> MonotoneCurve:
        """Fit to points with distinct, increasing ``x``. O(n)."""
        xs = np.asarray(x, dtype=np.float64)
        if len(xs) < 2 or np.any(np.diff(xs) <= 0):
            raise ValueError("x must hold at least 2 strictly increasing values")
        return cls(xs, pav(y))

    def __call__(self, q: npt.ArrayLike) -> F64:
        return np.interp(np.asarray(q, dtype=np.float64), self.x, self.y)


def _physical_fit(features: F64, y: F64) -> F64:
    """Coefficients >= 0 minimising the squared relative error (small active set)."""
    w = 1.0 / np.maximum(y, 1e-9)
    a, b = features * w[:, None], y * w
    active = np.ones(features.shape[1], dtype=bool)
    coef = np.zeros(features.shape[1])
    for _ in range(features.shape[1]):
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        coef[:] = 0.0
        coef[active] = sol
        if np.all(coef >= 0.0):
            break
        active &= coef > 0.0
    return np.maximum(coef, 0.0)


def _decode_features(b: F64, kv: F64) -> F64:
    return np.column_stack([np.ones_like(b), b, b * kv, kv])


def _prefill_features(c: F64, kv: F64) -> F64:
    return np.column_stack([np.ones_like(c), c, c * c, c * kv, kv])


def _row_residuals(row_key: F64, along: F64, r: F64, q_row: F64, q_along: F64) -> F64:
    """Residual at queries: per-row interpolation, then across covering rows.

    ``row_key``/``along``/``r`` are the profile points; a row is the set of points
    sharing a ``row_key``. O(rows x queries).
    """
    rows = np.unique(row_key)
    interp = np.empty((len(rows), len(q_row)))
    covered = np.empty((len(rows), len(q_row)), dtype=bool)
    for i, k in enumerate(rows):
        sel = row_key == k
        xs, order = along[sel], np.argsort(along[sel], kind="stable")
        xs, rs = xs[order], r[sel][order]
        interp[i] = np.interp(q_along, xs, rs)
        covered[i] = (q_along >= xs[0]) & (q_along <= xs[-1])
    keys = rows[:, None]
    below = np.where(covered & (keys <= q_row), keys, -np.inf)
    above = np.where(covered & (keys >= q_row), keys, np.inf)
    lo, hi = below.argmax(axis=0), above.argmin(axis=0)
    has_lo = np.isfinite(below[lo, np.arange(len(q_row))])
    has_hi = np.isfinite(above[hi, np.arange(len(q_row))])
    cols = np.arange(len(q_row))
    r_lo, r_hi = interp[lo, cols], interp[hi, cols]
    k_lo, k_hi = rows[lo], rows[hi]
    span = np.where(k_hi > k_lo, k_hi - k_lo, 1.0)
    t = np.clip((q_row - k_lo) / span, 0.0, 1.0)
    both = r_lo + (r_hi - r_lo) * t
    nearest = interp[np.abs(keys - q_row).argmin(axis=0), cols]
    return np.where(has_lo & has_hi, both, np.where(has_lo, r_lo, np.where(has_hi, r_hi,
                                                                             nearest)))


@dataclass(frozen=True, slots=True)
class Surface:
    """A monotone table ``values[i, j]`` at ``x0 + i*dx`` (batch or chunk), ``j*GRID_STEP`` (KV).

    Invariant: non-decreasing along both axes. Lookups are O(1).
    """

    values: F64
    x0: int
    dx: int
    coef: F64  # the physical form's coefficients (for the record)

    @property
    def x_max(self) -> int:
        return self.x0 + self.dx * (self.values.shape[0] - 1)

    @property
    def kv_max(self) -> int:
        return GRID_STEP * (self.values.shape[1] - 1)

    def at(self, x: npt.ArrayLike, kv: npt.ArrayLike) -> F64:
        """Bilinear value at ``(x, kv)`` inside the grid (clamped at its edges). O(n)."""
        fx = (np.clip(np.asarray(x, np.float64), self.x0, self.x_max) - self.x0) / self.dx
        fk = np.clip(np.asarray(kv, np.float64), 0, self.kv_max) / GRID_STEP
        i = np.minimum(fx.astype(np.int64), self.values.shape[0] - 2)
        j = np.minimum(fk.astype(np.int64), self.values.shape[1] - 2)
        tx, tk = fx - i, fk - j
        v = self.values
        top = v[i, j] * (1 - tk) + v[i, j + 1] * tk
        bottom = v[i + 1, j] * (1 - tk) + v[i + 1, j + 1] * tk
        return np.asarray(top * (1 - tx) + bottom * tx, dtype=np.float64)


def _surface(features: Callable[[F64, F64], F64], row_is_x: bool, x: F64, kv: F64, y: F64,
             x_grid: F64, kv_max: int) -> Surface:
    coef = _physical_fit(features(x, kv), y)
    resid = y / np.maximum(features(x, kv) @ coef, 1e-9)
    kv_grid = np.arange(0, kv_max + 1, GRID_STEP, dtype=np.float64)
    gx, gk = np.meshgrid(x_grid, kv_grid, indexing="ij")
    qx, qk = gx.ravel(), gk.ravel()
    r = _row_residuals(x, kv, resid, qx, qk) if row_is_x else _row_residuals(kv, x, resid, qk, qx)
    table = (features(qx, qk) @ coef * r).reshape(gx.shape)
    table = np.maximum.accumulate(np.maximum.accumulate(table, axis=0), axis=1)
    step = int(x_grid[1] - x_grid[0]) if len(x_grid) > 1 else 1
    return Surface(table, int(x_grid[0]), step, coef)


def decode_surface(batch: F64, kv: F64, ms: F64, max_batch: int, kv_max: int) -> Surface:
    """Decode attention by (batch 1..max_batch, KV 0..kv_max); rows are KV lengths. O(grid)."""
    grid = np.arange(1, max_batch + 1, dtype=np.float64)
    return _surface(_decode_features, False, batch, kv, ms, grid, kv_max)


def prefill_surface(chunk: F64, kv: F64, ms: F64, chunk_max: int, kv_max: int) -> Surface:
    """Prefill attention by (chunk GRID_STEP..chunk_max, KV 0..kv_max); rows are chunks."""
    grid = np.arange(GRID_STEP, chunk_max + 1, GRID_STEP, dtype=np.float64)
    return _surface(_prefill_features, True, chunk, kv, ms, grid, kv_max)


def holdout_mask(n: int, fraction: float, seed: int, keep: npt.ArrayLike = ()) -> npt.NDArray[
        np.bool_]:
    """Deterministic held-out rows: a seeded ``fraction`` of ``n``, never those in ``keep``."""
    mask = np.random.default_rng(seed).random(n) < fraction
    mask[np.asarray(keep, dtype=np.int64)] = False
    return mask


def error_summary(pred: npt.ArrayLike, true: npt.ArrayLike) -> dict[str, float]:
    """Median, p95 and max of ``|pred - true| / true`` (fractions) and the point count."""
    t = np.asarray(true, dtype=np.float64)
    e = np.abs(np.asarray(pred, dtype=np.float64) - t) / t
    return {"n": float(len(e)), "median": float(np.median(e)),
            "p95": float(np.percentile(e, 95)), "max": float(e.max())}
