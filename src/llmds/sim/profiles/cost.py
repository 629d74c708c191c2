"""A per-iteration cost model built from Vidur's published GPU operator profiles.

One iteration (a batch mixing decode requests and prefill chunks) is composed as
Vidur composes it (``vidur/execution_time_predictor``, commit ``7d47513``):

* linear/norm ops (QKV, O, gate/up, down projections, RoPE, two RMSNorms, SiLU, one
  residual add) are looked up at the batch's total token count rounded **up to a
  multiple of 8**;
* decode attention once, at (number of decoding requests, their mean KV length,
  floored, then rounded up to a multiple of 64);
* prefill attention once for all prefill chunks: KV lengths rounded up to 64 and
  summed, chunk sizes combined as ``round(sqrt(sum(chunk**2)))``;
* for GQA models (Llama-3-8B, not Llama-2-7B) the decode (prefill) part is
  multiplied by 1.1 when more than one request is in it;
* one layer = the sum of those; the model = layers x one layer. Embedding, final
  norm, LM head and sampling are not counted (Vidur does not either);
* CPU overhead (``cpu_overhead=True``; Vidur's default is off): scheduler + sampler +
  input preparation + output processing + Ray communication, by the number of
  requests in the batch, from the legacy A100 table. Below its smallest profiled
  batch (8) the batch-8 value is used: an upper bound, as the overhead grows with
  the batch.

The tables come from :mod:`llmds.sim.profiles.fit` (monotone piecewise-linear per
op; monotone 2-D attention surfaces) and are precomputed into Python lists, so
:meth:`ProfileCostModel.iteration_ms_totals` is a handful of list lookups.

**Where a table is missing** the model says so in ``assumptions`` and
``attention_source == "scaled"``:

* H100 (no attention profile): the A100 Llama-2-7B attention times divided by the
  HBM bandwidth ratio, 3.35 / 2.039 = 1.643 (datasheets). Decode attention is
  memory-bound (the A100 profile reads KV at ~1.8 TB/s); the profiled prefill kernel
  runs at ~16% of the A100's fp16 peak, far from compute-bound, and FlashAttention-2
  reaches ~35% of H100 peak vs 50-73% of A100 peak (FlashAttention-3 and -2 papers),
  a ratio of 1.5-2.2 that brackets the bandwidth ratio. The compute-peak ratio (3.2)
  is not used.
* Llama-3-8B (attention not transcribed): Llama-2-7B's attention with decode scaled
  by the ratio of KV bytes per token per layer (8 vs 32 KV heads: x0.25; decode
  reads the cache) and prefill by the ratio of query heads x head_dim (x1: same
  FLOPs). Checked against five Llama-3-8B decode rows of a FlashInfer-backend copy of
  Vidur's profile (:data:`~llmds.sim.profiles.validation.GQA_DECODE_ROWS`): with the
  1.1 GQA factor the rule is within -7% to +3% of them; unscaled Llama-2-7B times
  would be 3.4x too high. A different attention backend, so indicative only.
* Llama-3-8B and H100 CPU overheads (not profiled): the A100 Llama-2-7B ones.

**Prefill rule.** ``prefill_rule="vidur"`` (the default) combines a batch's prefill
chunks as Vidur does (above). ``"per_request"`` looks each chunk up at its own
``(chunk, cached)`` and sums the times (the GQA 1.1 still applies when more than one
chunk is in the batch): FlashAttention's variable-length kernel works sequence by
sequence, and the sum never leaves the profile when every chunk is inside it, whereas
Vidur's summed KV can (below). :meth:`ProfileCostModel.iteration_ms_totals` always uses
Vidur's rule (the totals cannot express the other); :meth:`~ProfileCostModel.iteration_ms`
and :meth:`~ProfileCostModel.iteration_ms_mix` follow ``prefill_rule``.

**Beyond the profiled range** (tokens above the largest profiled count, decode
batch above 128, mean decode KV, combined chunk or *summed* prefill KV above the
attention profile's 4096, CPU batch above 128) a call raises ``ValueError`` naming
the quantity and the range, unless the model was built with ``extrapolate=True``: it
then extends each table linearly with the slope over its last quarter and counts
each extrapolated lookup in ``num_extrapolated``. Vidur's prefill rule sums KV over
the prefill chunks of a batch, so several prefix-cached prompts starting in one
iteration can pass 4096 although each is inside the profile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_bool, check_choice, check_int, show
from llmds.sim.profiles import fit
from llmds.sim.profiles.hardware import GPUS, MODELS, GPUSpec, ModelShape, get_gpu, get_model
from llmds.sim.profiles.tables import (
    LINEAR_OPS,
    AttentionProfile,
    CpuProfile,
    LinearProfile,
    find_profiles_dir,
    load_attention,
    load_cpu_overheads,
    load_linear,
)

__all__ = ["KV_GRANULARITY", "PREFILL_RULES", "TOKEN_GRANULARITY", "ProfileCostModel",
           "attention_grid", "load_profiles"]

TOKEN_GRANULARITY = 8  # Vidur rounds a batch's token count up to a multiple of 8
KV_GRANULARITY = 64  # ... and KV lengths up to a multiple of 64
GQA_BATCHING_OVERHEAD = 0.1  # Vidur's attention_{decode,prefill}_batching_overhead_fraction
#: How a batch's prefill chunks are combined (module docstring, "Prefill rule").
PREFILL_RULES = ("vidur", "per_request")
_REF_GPU, _REF_MODEL = "a100", "llama-2-7b"
_G = fit.GRID_STEP


def _attention_path(root: Path, gpu: GPUSpec, model: ModelShape) -> Path:
    return root / "data" / "profiling" / "compute" / gpu.profile_dir / model.profile_dir


def load_profiles(
    gpu: str, model: str, root: Path
) -> tuple[LinearProfile, AttentionProfile, float, float, list[str], CpuProfile]:
    """Profiles for ``(gpu, model)`` and how attention is derived when it is missing.

    Returns ``(linear, attention, decode_scale, prefill_scale, assumptions, cpu)``:
    the attention profile is the measured one when ``attention_tp1_extract.csv`` exists
    for the pair, else A100 Llama-2-7B's, to be multiplied by the two scales (module
    docstring). O(file sizes).
    """
    g, m = get_gpu(gpu), get_model(model)
    linear = load_linear(root, g, m)
    notes: list[str] = []
    dscale = pscale = 1.0
    if (_attention_path(root, g, m) / "attention_tp1_extract.csv").is_file():
        attention = load_attention(root, g, m)
    else:
        rg, rm = GPUS[_REF_GPU], MODELS[_REF_MODEL]
        attention = load_attention(root, rg, rm)
        if g.name != rg.name:
            ratio = rg.hbm_tb_s / g.hbm_tb_s
            dscale *= ratio
            pscale *= ratio
            notes.append(f"attention: {rg.name} profile x {ratio:.4f} (HBM bandwidth "
                         f"{rg.hbm_tb_s} / {g.hbm_tb_s} TB/s); no {g.name} attention profile")
        if m.name != rm.name:
            kv = (m.num_kv_heads * m.head_dim) / (rm.num_kv_heads * rm.head_dim)
            q = (m.num_q_heads * m.head_dim) / (rm.num_q_heads * rm.head_dim)
            dscale *= kv
            pscale *= q
            notes.append(f"attention: {rm.name} profile, decode x {kv:g} (KV bytes per "
                         f"token), prefill x {q:g} (query heads x head_dim); no {m.name} "
                         f"attention profile")
    try:
        cpu = load_cpu_overheads(root, m)
    except ValueError:
        cpu = load_cpu_overheads(root, MODELS[_REF_MODEL])
        notes.append(f"cpu overhead: {_REF_MODEL} table (none for {m.name})")
    if g.name != _REF_GPU:
        notes.append(f"cpu overhead: measured on {_REF_GPU} (none for {g.name})")
    return linear, attention, dscale, pscale, notes, cpu


def attention_grid(a: AttentionProfile) -> tuple[int, int, int]:
    """The attention tables' extent: (max decode batch, max chunk, max KV). O(rows).

    KV reaches the profile's largest ``kv`` (decode) or ``kv + chunk`` (prefill), rounded
    up to :data:`KV_GRANULARITY`; chunks to :data:`~llmds.sim.profiles.fit.GRID_STEP`.
    """
    kv_max = int(max(a.decode_kv.max(), (a.prefill_kv + a.prefill_chunk).max()))
    chunk_max = int(a.prefill_chunk.max())
    return (int(a.decode_batch.max()), -(-chunk_max // _G) * _G,
            -(-kv_max // KV_GRANULARITY) * KV_GRANULARITY)


def _extend(n: int, pos: float, get: Callable[[int], float]) -> float:
    """Value at fractional index ``pos`` of a length-``n`` table read by ``get``.

    Inside: linear interpolation. Beyond either end: linear with the slope over the
    nearest quarter of the table (at least one step), never below 0.
    """
    last = n - 1
    if 0.0 <= pos <= last:
        i = min(int(pos), last - 1) if last > 0 else 0
        t = pos - i
        return get(i) if t == 0.0 or last == 0 else get(i) * (1.0 - t) + get(i + 1) * t
    q = max(1, last // 4)
    if pos > last:
        return get(last) + (pos - last) * (get(last) - get(last - q)) / q
    return max(0.0, get(0) - (0.0 - pos) * (get(q) - get(0)) / q)


class ProfileCostModel:
    """Iteration time of one LLM forward pass from GPU operator profiles (module docstring).

    Build it with :meth:`from_profiles`. Invariants (checked by :meth:`_check`): every
    table is finite, >= 0 and non-decreasing along each of its axes (tokens; batch and
    KV; chunk and KV; CPU batch), so the predicted time never falls when any one
    quantity grows with the others fixed.

    Complexity: :meth:`iteration_ms_totals` O(1); :meth:`iteration_ms` O(requests);
    :meth:`decode_steps_ms` O(steps). Memory: the tables, ~130k floats (~1 MB) as
    Python lists plus NumPy copies.

    Thread safety: the tables are read-only, so concurrent calls return what serial
    calls would; ``num_extrapolated`` is a plain counter, exact only without
    concurrent callers.
    """

    __slots__ = ("_cpu", "_cpu_min", "_dec", "_gqa", "_lin", "_per_request", "_pre",
                 "assumptions", "attention_source", "cpu_overhead", "decode_surface",
                 "extrapolate", "gpu", "linear_per_layer_ms", "model", "num_extrapolated",
                 "prefill_rule", "prefill_surface", "sources")

    def __init__(
        self,
        gpu: GPUSpec,
        model: ModelShape,
        linear_per_layer_ms: npt.NDArray[np.float64],
        decode_surface: fit.Surface,
        prefill_surface: fit.Surface,
        cpu_ms: npt.NDArray[np.float64] | None,
        cpu_min_batch: int = 1,
        *,
        extrapolate: bool = False,
        assumptions: Sequence[str] = (),
        sources: Sequence[str] = (),
        prefill_rule: str = "vidur",
    ) -> None:
        self.gpu, self.model = gpu, model
        self.prefill_rule = check_choice(prefill_rule, "prefill_rule", PREFILL_RULES)
        self._per_request = self.prefill_rule == "per_request"
        self.linear_per_layer_ms = np.asarray(linear_per_layer_ms, dtype=np.float64)
        self.decode_surface, self.prefill_surface = decode_surface, prefill_surface
        self.cpu_overhead = cpu_ms is not None
        self.extrapolate = check_bool(extrapolate, "extrapolate")
        self.assumptions = tuple(assumptions)
        self.attention_source = (
            "scaled" if any(a.startswith("attention") for a in self.assumptions) else "measured"
        )
        self.sources = tuple(sources)
        self.num_extrapolated = 0
        self._gqa = 1.0 + GQA_BATCHING_OVERHEAD if model.is_gqa else 1.0
        self._lin: list[float] = self.linear_per_layer_ms.tolist()
        self._dec: list[list[float]] = decode_surface.values.tolist()
        self._pre: list[list[float]] = prefill_surface.values.tolist()
        self._cpu: list[float] = [] if cpu_ms is None else np.asarray(cpu_ms, np.float64).tolist()
        self._cpu_min = cpu_min_batch

    # ---------------------------------------------------------------- building
    @classmethod
    def from_profiles(
        cls,
        gpu: str = "a100",
        model: str = "llama-2-7b",
        profiles_dir: str | os.PathLike[str] | None = None,
        *,
        cpu_overhead: bool = False,
        extrapolate: bool = False,
        prefill_rule: str = "vidur",
    ) -> ProfileCostModel:
        """Fit the tables from Vidur's profiles (found by :func:`find_profiles_dir`). ~0.2 s.

        ``prefill_rule`` is one of :data:`PREFILL_RULES` (module docstring).
        Raises ValueError naming the known GPUs/models for an unknown one,
        ``FileNotFoundError`` when the profiles or a file are missing, and
        :class:`~llmds.errors.CorruptFileError` (a ValueError) for a malformed file.
        """
        g, m = get_gpu(gpu), get_model(model)
        cpu_on = check_bool(cpu_overhead, "cpu_overhead")
        check_bool(extrapolate, "extrapolate")
        check_choice(prefill_rule, "prefill_rule", PREFILL_RULES)
        root = find_profiles_dir(profiles_dir)
        linear, att, dscale, pscale, notes, cpu = load_profiles(g.name, m.name, root)
        return cls.from_tables(g, m, linear, att, dscale, pscale, cpu if cpu_on else None,
                               extrapolate=extrapolate, assumptions=notes,
                               prefill_rule=prefill_rule)

    @classmethod
    def from_tables(
        cls,
        gpu: GPUSpec,
        model: ModelShape,
        linear: LinearProfile,
        attention: AttentionProfile,
        decode_scale: float = 1.0,
        prefill_scale: float = 1.0,
        cpu: CpuProfile | None = None,
        *,
        extrapolate: bool = False,
        assumptions: Sequence[str] = (),
        prefill_rule: str = "vidur",
    ) -> ProfileCostModel:
        """Fit from already loaded profiles (tests and held-out runs use subsets). O(grid)."""
        tmax = int(linear.tokens[-1])
        grid = np.arange(0, tmax // TOKEN_GRANULARITY + 1) * TOKEN_GRANULARITY
        per_layer = np.zeros(len(grid))
        for op in LINEAR_OPS:
            per_layer += fit.MonotoneCurve.fit(linear.tokens, linear.medians[op])(grid)
        per_layer[0] = 0.0
        a = attention
        max_batch, chunk_max, kv_max = attention_grid(a)
        dec = fit.decode_surface(a.decode_batch, a.decode_kv, a.decode_ms * decode_scale,
                                 max_batch, kv_max)
        pre = fit.prefill_surface(a.prefill_chunk, a.prefill_kv, a.prefill_ms * prefill_scale,
                                  chunk_max, kv_max)
        cpu_ms, cpu_min = None, 1
        if cpu is not None:
            total = sum(cpu.medians.values())
            cpu_min = int(cpu.batch[0])
            batches = np.arange(cpu_min, int(cpu.batch[-1]) + 1, dtype=np.float64)
            cpu_ms = fit.MonotoneCurve.fit(cpu.batch, total)(batches)
        sources = [str(linear.path), str(attention.path)] + ([str(cpu.path)] if cpu else [])
        return cls(gpu, model, per_layer, dec, pre, cpu_ms, cpu_min, extrapolate=extrapolate,
                   assumptions=assumptions, sources=sources, prefill_rule=prefill_rule)

    # ---------------------------------------------------------------- ranges
    @property
    def max_tokens(self) -> int:
        """Largest token count the linear tables cover."""
        return (len(self._lin) - 1) * TOKEN_GRANULARITY

    @property
    def max_decode_batch(self) -> int:
        """Largest decode batch the attention table covers."""
        return len(self._dec)

    @property
    def max_kv(self) -> int:
        """Largest KV length (and summed prefill KV) the attention tables cover."""
        return self.decode_surface.kv_max

    @property
    def max_chunk(self) -> int:
        """Largest combined prefill chunk the attention table covers."""
        return self.prefill_surface.x_max

    def _beyond(self, what: str, value: float, limit: int) -> None:
        self.num_extrapolated += self.extrapolate
        if not self.extrapolate:
            raise ValueError(
                f"{what} {value:g} is beyond the profiled range (<= {limit}) of "
                f"{self.gpu.name}/{self.model.name}; build the model with extrapolate=True "
                f"for a linear extrapolation (counted in num_extrapolated)"
            )

    # ---------------------------------------------------------------- parts (any range)
    def linear_ms(self, tokens: int) -> float:
        """Linear/norm time of one layer at ``tokens`` (rounded up to 8). O(1)."""
        k = -(-tokens // TOKEN_GRANULARITY)
        lin = self._lin
        if k < len(lin):
            return lin[k]
        self._beyond("a batch of tokens", tokens, self.max_tokens)
        return _extend(len(lin), float(k), lin.__getitem__)

    def decode_attention_ms(self, num_decode: int, mean_kv: int) -> float:
        """Decode attention of one layer: ``num_decode`` requests at KV ``mean_kv``. O(1).

        ``mean_kv`` is rounded up to a multiple of 64; GQA's 1.1 is not applied here.
        """
        if num_decode <= 0:
            return 0.0
        kvr = -(-mean_kv // KV_GRANULARITY) * KV_GRANULARITY
        dec = self._dec
        j = kvr // _G
        if num_decode <= len(dec) and j < len(dec[0]):
            return dec[num_decode - 1][j]
        if num_decode > len(dec):
            self._beyond("a decode batch of", num_decode, len(dec))
        if j >= len(dec[0]):
            self._beyond("a decode KV length of", kvr, self.max_kv)
        return _extend(len(dec), num_decode - 1.0,
                       lambda i: _extend(len(dec[i]), float(j), dec[i].__getitem__))

    def prefill_attention_ms(self, chunk: float, kv: int) -> float:
        """Prefill attention of one layer: combined ``chunk`` over summed ``kv``. O(1).

        ``kv`` must already be the sum of KV lengths rounded up to 64 each. Chunks below
        16 tokens cost what 16 do (launch-bound: 64- and 80-token chunks both take 15 us).
        """
        if chunk <= 0:
            return 0.0
        pre = self._pre
        x = max(chunk, float(_G)) / _G - 1.0  # grid rows are chunks 16, 32, ...
        y = kv / _G
        if x <= len(pre) - 1 and y <= len(pre[0]) - 1:
            i = min(int(x), len(pre) - 2)
            t = x - i
            j = int(y)
            if j == y:
                return pre[i][j] * (1.0 - t) + pre[i + 1][j] * t
        else:
            if x > len(pre) - 1:
                self._beyond("a combined prefill chunk of", chunk, self.max_chunk)
            if y > len(pre[0]) - 1:
                self._beyond("a summed prefill KV length of", kv, self.max_kv)
        return _extend(len(pre), x, lambda i: _extend(len(pre[i]), y, pre[i].__getitem__))

    def cpu_ms(self, batch: int) -> float:
        """CPU overhead of one iteration with ``batch`` requests (0 when disabled). O(1)."""
        cpu = self._cpu
        if not cpu or batch <= 0:
            return 0.0
        k = max(batch, self._cpu_min) - self._cpu_min
        if k < len(cpu):
            return cpu[k]
        self._beyond("a CPU-overhead batch of", batch, self._cpu_min + len(cpu) - 1)
        return _extend(len(cpu), float(k), cpu.__getitem__)

    # ---------------------------------------------------------------- iterations
    def iteration_ms_totals(
        self,
        num_decode: int,
        decode_kv_sum: int,
        num_prefill: int = 0,
        prefill_tokens: int = 0,
        prefill_sq_sum: int = 0,
        prefill_kv_sum: int = 0,
    ) -> float:
        """One iteration's time in ms from batch totals (the simulator's fast path). O(1).

        ``num_decode`` decoding requests whose KV lengths sum to ``decode_kv_sum``;
        ``num_prefill`` prefill chunks of ``prefill_tokens`` tokens in all, whose sizes'
        squares sum to ``prefill_sq_sum`` and whose KV lengths, each rounded up to a
        multiple of :data:`KV_GRANULARITY`, sum to ``prefill_kv_sum``. All ints >= 0.
        """
        try:
            if min(num_decode, decode_kv_sum, num_prefill, prefill_tokens, prefill_sq_sum,
                   prefill_kv_sum) < 0:
                raise ValueError
            tokens = (num_decode + prefill_tokens) | 0  # ints only: a float raises TypeError
        except (TypeError, ValueError):
            self._explain(num_decode, decode_kv_sum, num_prefill, prefill_tokens,
                          prefill_sq_sum, prefill_kv_sum)
            raise
        if tokens == 0:
            return 0.0
        lin = self._linear(tokens)
        if num_prefill:
            p = self.prefill_attention_ms(round(math.sqrt(prefill_sq_sum)), prefill_kv_sum)
        elif prefill_tokens or prefill_sq_sum or prefill_kv_sum:
            raise ValueError("prefill totals must be 0 when num_prefill is 0, got "
                             f"prefill_tokens={prefill_tokens}, prefill_sq_sum={prefill_sq_sum},"
                             f" prefill_kv_sum={prefill_kv_sum}")
        else:
            p = 0.0
        if decode_kv_sum and not num_decode:
            raise ValueError(f"decode_kv_sum must be 0 when num_decode is 0, got {decode_kv_sum}")
        return self._compose(num_decode, decode_kv_sum, num_prefill, lin, p)

    def _linear(self, tokens: int) -> float:
        k = (tokens + 7) >> 3
        lin = self._lin
        return lin[k] if k < len(lin) else self.linear_ms(tokens)

    def _compose(self, num_decode: int, decode_kv_sum: int, num_prefill: int, layer: float,
                 prefill_ms: float) -> float:
        """Model time from one layer's linear part, the decode totals and prefill attention."""
        if num_decode:
            d = self.decode_attention_ms(num_decode, decode_kv_sum // num_decode)
            layer += d * self._gqa if num_decode > 1 else d
        layer += prefill_ms * self._gqa if num_prefill > 1 else prefill_ms
        total = layer * self.model.num_layers
        if self._cpu:
            total += self.cpu_ms(num_decode + num_prefill)
        return total

    def iteration_ms_mix(
        self, num_decode: int, decode_kv_sum: int, prefill_chunks: Sequence[tuple[int, int]]
    ) -> float:
        """One iteration from its decode totals and prefill ``(chunk, cached)`` pairs. O(k).

        The simulator's call, with ``prefill_rule`` applied; the values are ints it
        built itself and are not checked (:meth:`iteration_ms` checks them). Equal to
        ``iteration_ms(decode_kv_lens, prefill_chunks)`` for any ``decode_kv_lens``
        of ``num_decode`` entries summing to ``decode_kv_sum``.
        """
        if not prefill_chunks:
            if not num_decode:
                return 0.0
            return self._compose(num_decode, decode_kv_sum, 0, self._linear(num_decode), 0.0)
        g = KV_GRANULARITY
        tokens = num_decode
        for chunk, _cached in prefill_chunks:
            tokens += chunk
        lin = self._linear(tokens)
        if self._per_request:
            p = 0.0
            for chunk, cached in prefill_chunks:
                p += self.prefill_attention_ms(chunk, -(-cached // g) * g)
        else:
            sq = kv = 0
            for chunk, cached in prefill_chunks:
                sq += chunk * chunk
                kv += -(-cached // g) * g
            p = self.prefill_attention_ms(round(math.sqrt(sq)), kv)
        return self._compose(num_decode, decode_kv_sum, len(prefill_chunks), lin, p)

    def _explain(self, *values: object) -> None:
        names = ("num_decode", "decode_kv_sum", "num_prefill", "prefill_tokens",
                 "prefill_sq_sum", "prefill_kv_sum")
        for name, v in zip(names, values, strict=True):
            check_int(v, name, minimum=0)

    def iteration_ms(
        self,
        decode_kv_lens: Sequence[int] | npt.NDArray[np.integer[Any]] = (),
        prefill_chunks: Iterable[tuple[int, int]] = (),
    ) -> float:
        """One iteration's time in ms for a batch mix. O(requests).

        ``decode_kv_lens``: KV length (tokens already cached) of each decoding request;
        ``prefill_chunks``: ``(chunk_tokens, cached_tokens)`` of each prefill chunk,
        ``chunk_tokens >= 1``, combined by ``prefill_rule``. Raises TypeError/ValueError
        naming a bad entry, and ValueError for a batch beyond the profiled range unless
        ``extrapolate``.

        >>> import numpy as np
        >>> from llmds.sim.profiles import fit
        >>> from llmds.sim.profiles.hardware import GPUS, MODELS
        >>> flat = fit.Surface(np.ones((4, 5)), 1, 1, np.zeros(4))  # 1 ms everywhere
        >>> m = ProfileCostModel(GPUS["a100"], MODELS["llama-2-7b"], np.arange(3.0),
        ...                      flat, flat, None)
        >>> m.iteration_ms([5, 7], [])  # (8-token row 1 ms + decode 1 ms) x 32 layers
        64.0
        """
        if isinstance(decode_kv_lens, np.ndarray):
            n_dec = int(decode_kv_lens.size)
            if n_dec and (decode_kv_lens.dtype.kind not in "iu" or decode_kv_lens.ndim != 1
                          or int(decode_kv_lens.min()) < 0):
                raise ValueError(f"decode_kv_lens must be a 1-D array of ints >= 0, got "
                                 f"{show(decode_kv_lens)}")
            dsum = int(decode_kv_lens.sum()) if n_dec else 0
        else:
            n_dec = len(decode_kv_lens)
            lens = decode_kv_lens
            # one C-level pass over the types; bools, floats and NumPy ints go one by one
            if n_dec and (set(map(type, lens)) != {int} or min(lens) < 0):
                lens = [check_int(v, f"decode_kv_lens[{i}]", minimum=0)
                        for i, v in enumerate(lens)]
            dsum = sum(lens)
        chunks: list[tuple[int, int]] = []
        for i, item in enumerate(prefill_chunks):
            try:
                c, cached = item
                ok = type(c) is int and type(cached) is int and c >= 1 and cached >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                if not isinstance(item, Sequence) or len(item) != 2:
                    raise TypeError(f"prefill_chunks[{i}] must be a (chunk_tokens, "
                                    f"cached_tokens) pair, got {show(item)}")
                c = check_int(item[0], f"prefill_chunks[{i}][0]", minimum=1)
                cached = check_int(item[1], f"prefill_chunks[{i}][1]", minimum=0)
            chunks.append((c, cached))
        return self.iteration_ms_mix(n_dec, dsum, chunks)

    def decode_steps_ms(
        self, num_decode: npt.ArrayLike, decode_kv_sum: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Times of pure-decode iterations, vectorised (micro-batch decode phases). O(n).

        Element ``s`` is ``iteration_ms_totals(num_decode[s], decode_kv_sum[s])``.
        """
        n = np.asarray(num_decode)
        kv = np.asarray(decode_kv_sum)
        if n.shape != kv.shape or n.ndim != 1:
            raise ValueError(f"num_decode and decode_kv_sum must be 1-D of one length, got "
                             f"shapes {n.shape} and {kv.shape}")
        if n.size == 0:
            return np.zeros(0)
        if n.dtype.kind not in "iu" or kv.dtype.kind not in "iu" or n.min() < 0 or kv.min() < 0:
            raise ValueError("num_decode and decode_kv_sum must hold ints >= 0")
        n = n.astype(np.int64)
        kv = kv.astype(np.int64)
        k = (n + 7) >> 3
        mean = kv // np.maximum(n, 1)
        j = (-(-mean // KV_GRANULARITY) * KV_GRANULARITY) // _G
        dec = self.decode_surface.values
        inside = (k < len(self._lin)) & (n <= dec.shape[0]) & (j < dec.shape[1])
        if not inside.all():
            return np.array([self.iteration_ms_totals(int(a), int(b)) for a, b in
                             zip(n.tolist(), kv.tolist(), strict=True)])
        lin = self.linear_per_layer_ms[k]
        att = np.where(n > 0, dec[np.maximum(n - 1, 0), j], 0.0)
        att = np.where(n > 1, att * self._gqa, att)
        out = (lin + att) * self.model.num_layers
        if self._cpu:
            out += np.array([self.cpu_ms(int(b)) for b in n.tolist()])
        return np.where(n > 0, out, 0.0)

    # ---------------------------------------------------------------- introspection
    def describe(self) -> dict[str, Any]:
        """What the model is built from and what it assumes (for reports). O(1)."""
        return {"gpu": self.gpu.name, "gpu_description": self.gpu.description,
                "model": self.model.name, "layers": self.model.num_layers,
                "attention_source": self.attention_source, "assumptions": list(self.assumptions),
                "cpu_overhead": self.cpu_overhead, "extrapolate": self.extrapolate,
                "prefill_rule": self.prefill_rule,
                "max_tokens": self.max_tokens, "max_decode_batch": self.max_decode_batch,
                "max_kv": self.max_kv, "max_chunk": self.max_chunk,
                "sources": list(self.sources)}

    def __repr__(self) -> str:
        return (f"ProfileCostModel(gpu={self.gpu.name!r}, model={self.model.name!r}, "
                f"attention={self.attention_source!r}, cpu_overhead={self.cpu_overhead}, "
                f"extrapolate={self.extrapolate}, prefill_rule={self.prefill_rule!r})")

    def _check(self) -> None:
        """Assert the invariants (tests only). O(table size)."""
        tables = [self.linear_per_layer_ms, self.decode_surface.values,
                  self.prefill_surface.values, np.asarray(self._cpu, dtype=np.float64)]
        for t in tables:
            assert np.all(np.isfinite(t)) and np.all(t >= 0.0)
        for t in tables:
            for axis in range(t.ndim):
                assert np.all(np.diff(t, axis=axis) >= 0.0), "a table decreases"
        assert self._lin == self.linear_per_layer_ms.tolist()
        assert self._dec == self.decode_surface.values.tolist()
        assert self._pre == self.prefill_surface.values.tolist()
        assert self.decode_surface.x0 == 1 and self.prefill_surface.x0 == _G
        assert self.attention_source in ("measured", "scaled")
        assert self.prefill_rule in PREFILL_RULES
        assert self._per_request == (self.prefill_rule == "per_request")
