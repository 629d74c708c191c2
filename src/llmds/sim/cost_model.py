"""Iteration-time model of one forward pass of an LLM server.

    iteration_ms = overhead_ms
                 + per_token_ms      * batched_tokens      (linear layers, all tokens)
                 + prefill_quad_ms   * sum(chunk_len**2)   (prefill attention)
                 + per_kv_token_ms   * kv_tokens_read      (decode attention reads)

The default parameters are an order-of-magnitude guess for a 7B fp16 model on one
data-centre GPU (about 8 ms per step, 0.06 ms per batched token, a 2k-token prefill
chunk adding ~20 ms of attention, 0.3 ms per 1k KV tokens read); they were not
measured. **Absolute times are only as good as the parameters**: fit them with
:meth:`CostModel.fit` from measured ``(batch shape, latency)`` pairs before trusting
a millisecond figure. Comparisons between policies under the same parameters are the
point of the simulator. :class:`~llmds.sim.profiles.ProfileCostModel` is the
measured alternative (Vidur's GPU operator profiles); both answer the two calls the
simulator makes, :meth:`CostModel.iteration_ms_mix` (one continuous-batching
iteration) and :meth:`CostModel.decode_steps_ms` (a micro-batch's decode phase).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmds._validate import check_number

__all__ = ["CostModel"]


_MAX_MS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class CostModel:
    """Linear-in-features iteration cost (see the module docstring). All terms in ms.

    Every evaluation is O(1). Thread safety: immutable; share it freely.

    >>> CostModel(1.0, 0.5, 0.0, 0.0).iteration_ms(batched_tokens=4)
    3.0
    """

    overhead_ms: float = 8.0
    per_token_ms: float = 0.06
    prefill_quad_ms: float = 5e-6
    per_kv_token_ms: float = 3e-4

    def __post_init__(self) -> None:
        for name in ("overhead_ms", "per_token_ms", "prefill_quad_ms", "per_kv_token_ms"):
            # Above _MAX_MS, sums of the terms overflow the simulated clock to inf.
            check_number(getattr(self, name), name, minimum=0.0, maximum=_MAX_MS)

    def iteration_ms(
        self, batched_tokens: float = 0, sum_sq_chunk: float = 0, kv_tokens_read: float = 0
    ) -> float:
        """Duration of one iteration in ms. O(1)."""
        return (
            self.overhead_ms
            + self.per_token_ms * batched_tokens
            + self.prefill_quad_ms * sum_sq_chunk
            + self.per_kv_token_ms * kv_tokens_read
        )

    def iteration_ms_mix(
        self, num_decode: int, decode_kv_sum: int, prefill_chunks: Sequence[tuple[int, int]]
    ) -> float:
        """One iteration from its decode totals and prefill ``(chunk, cached)`` pairs. O(k).

        The simulator's call (ints, not checked): ``num_decode`` decode steps reading
        ``decode_kv_sum`` KV tokens, plus ``prefill_chunks``; the cached tokens of a
        chunk do not enter this model. Same value as :meth:`iteration_ms` of the totals.

        >>> CostModel(1.0, 0.5, 0.01, 0.001).iteration_ms_mix(2, 1000, [(10, 64)])
        9.0
        """
        tokens, sq = num_decode, 0
        for chunk, _cached in prefill_chunks:
            tokens += chunk
            sq += chunk * chunk
        return self.iteration_ms(tokens, sq, decode_kv_sum)

    def decode_steps_ms(
        self, num_decode: npt.ArrayLike, decode_kv_sum: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Times of pure-decode iterations, vectorised (micro-batch decode phases). O(n).

        Element ``s`` is ``iteration_ms(num_decode[s], 0, decode_kv_sum[s])``, 0 where
        ``num_decode[s] == 0``.
        """
        n = np.asarray(num_decode)
        kv = np.asarray(decode_kv_sum)
        step = self.overhead_ms + self.per_token_ms * n + self.per_kv_token_ms * kv
        return np.where(n > 0, step, 0.0).astype(np.float64)

    @classmethod
    def fit(cls, samples: Iterable[Sequence[float]]) -> CostModel:
        """Least-squares fit from ``(batched_tokens, sum_sq_chunk, kv_tokens_read, latency_ms)``.

        O(n). Coefficients that come out negative (noise, a collinear feature)
        are clipped to 0 and the rest refitted, so the model stays physical.
        Raises ValueError with fewer than 4 samples or malformed rows.

        >>> true = CostModel(5.0, 0.1, 1e-5, 2e-4)
        >>> rows = [(b, b * b, k, true.iteration_ms(b, b * b, k))
        ...         for b, k in [(1, 10), (64, 0), (512, 100), (8, 4000), (2048, 0), (32, 9000)]]
        >>> m = CostModel.fit(rows)
        >>> round(m.overhead_ms, 6), round(m.per_token_ms, 6)
        (5.0, 0.1)
        """
        data = np.asarray([tuple(r) for r in samples], dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != 4:
            raise ValueError(
                "samples must be rows of (batched_tokens, sum_sq_chunk, kv_tokens_read, "
                f"latency_ms), got an array of shape {data.shape}"
            )
        if data.shape[0] < 4:
            raise ValueError(f"fit needs at least 4 samples, got {data.shape[0]}")
        if not np.all(np.isfinite(data)):
            raise ValueError("samples must be finite")
        x = np.column_stack([np.ones(len(data)), data[:, :3]])
        y = data[:, 3]
        active = np.ones(4, dtype=bool)
        coef = np.zeros(4)
        for _ in range(4):  # tiny active-set NNLS: drop negative terms and refit
            sol, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
            coef[:] = 0.0
            coef[active] = sol
            if np.all(coef >= -1e-12):
                break
            active &= coef > 0
        coef = np.maximum(coef, 0.0)
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3]))
