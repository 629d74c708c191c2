"""Naive reference for the profile cost model: Vidur's composition of one iteration, spelt out.

Takes the per-op functions as plain callables and composes one batch exactly as the
profiles README describes it, request by request, with no tables or fast paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def vidur_iteration_ms(
    linear: Callable[[int], float],
    decode: Callable[[int, int], float],
    prefill: Callable[[int, int], float],
    layers: int,
    gqa: bool,
    decode_kv_lens: Sequence[int],
    prefill_chunks: Sequence[tuple[int, int]],
    cpu: Callable[[int], float] | None = None,
) -> float:
    tokens = len(decode_kv_lens) + sum(c for c, _ in prefill_chunks)
    if tokens == 0:
        return 0.0
    rounded = math.ceil(tokens / 8) * 8
    layer = linear(rounded)
    if decode_kv_lens:
        mean = int(sum(decode_kv_lens) / len(decode_kv_lens))
        d = decode(len(decode_kv_lens), math.ceil(mean / 64) * 64)
        layer += d * (1.1 if gqa and len(decode_kv_lens) > 1 else 1.0)
    if prefill_chunks:
        kv = sum(math.ceil(k / 64) * 64 for _, k in prefill_chunks)
        chunk = round(math.sqrt(sum(c * c for c, _ in prefill_chunks)))
        p = prefill(chunk, kv)
        layer += p * (1.1 if gqa and len(prefill_chunks) > 1 else 1.0)
    total = layer * layers
    if cpu is not None:
        total += cpu(len(decode_kv_lens) + len(prefill_chunks))
    return total
