"""GPUs and model shapes the profile cost model knows, and KV memory from the model.

KV capacity follows vLLM's memory profiler (the V0 engine, releases 0.2 to 0.5)::

    pages = floor((gpu_memory x gpu_memory_utilization - weights - activations)
                  / (2 x layers x kv_heads x head_dim x dtype_bytes x page_size))

* ``gpu_memory`` is what PyTorch reports as the device's total memory (the figure in
  ``torch.cuda.OutOfMemoryError`` messages: 79.15 GiB for an A100-SXM4-80GB, 79.11 GiB
  for an H100 80GB, see :data:`GPUS`), not the marketing 80 GB.
* ``gpu_memory_utilization`` defaults to vLLM's default, 0.9.
* ``weights`` = parameters x 2 bytes (fp16), parameters computed from the published
  shape (Llama-2-7B: 6,738,415,616; Llama-3-8B: 8,030,261,248).
* ``activations`` is :func:`activation_bytes`: the live tensors at the peak of vLLM's
  profiling forward pass over ``max_num_batched_tokens`` tokens (default
  ``max(max_model_len, 2048)``, vLLM's default without chunked prefill): the residual
  stream and the normed input (2 x hidden), the fused gate/up output (2 x
  intermediate) and the activation output (intermediate), fp16, plus fp32 logits and
  probabilities of ``max_num_seqs`` (256) sampled rows. An estimate from first
  principles, not fitted to any logged number.

vLLM logs ``# GPU blocks: 7449, # CPU blocks: 512`` for ``meta-llama/Llama-2-7b-hf``,
fp16, ``max_seq_len=4096``, block size 16, default utilisation (FlightLLM artefact,
``FlightLLM/flightllm_test_demo`` ``profile/README.md``, vLLM of December 2023; the
GPU is an A100 by that README's requirements, and 7449 blocks x 8 MiB = 58.2 GiB
rules out a 32 GB V100). The formula gives 7463 pages (+0.19%) for ``a100``,
``llama-2-7b``: 119,408 tokens against vLLM's 119,184. The implied activation peak
(0.49 GiB) is a little above this estimate (0.38 GiB). Newer vLLM releases also
subtract CUDA-graph and non-PyTorch memory, so they report somewhat fewer blocks.

Everything here is a pure function of frozen records: thread-safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmds._validate import check_choice, check_int, check_number, check_positive_int

__all__ = [
    "GPUS",
    "MODELS",
    "GPUSpec",
    "ModelShape",
    "activation_bytes",
    "get_gpu",
    "get_model",
    "kv_capacity_tokens",
    "kv_pages",
]

GIB = 2**30


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """A GPU as the cost model needs it (published figures; fp16).

    ``memory_bytes``: total device memory as PyTorch reports it;
    ``hbm_tb_s``: HBM bandwidth (TB/s); ``fp16_tflops``: dense fp16 tensor-core peak;
    ``profile_dir``: Vidur's folder name under ``data/profiling/compute``.
    """

    name: str
    description: str
    memory_bytes: int
    hbm_tb_s: float
    fp16_tflops: float
    profile_dir: str
    source: str


@dataclass(frozen=True, slots=True)
class ModelShape:
    """A decoder-only Llama-family model's published shape (HF ``config.json``)."""

    name: str
    hf_name: str
    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_model_len: int
    profile_dir: str

    @property
    def num_params(self) -> int:
        """Parameters: embeddings + LM head (untied) + layers + final norm. O(1).

        >>> MODELS["llama-2-7b"].num_params
        6738415616
        """
        h, i = self.hidden_size, self.intermediate_size
        kv = self.num_kv_heads * self.head_dim
        attn = 2 * h * self.num_q_heads * self.head_dim + 2 * h * kv
        per_layer = attn + 3 * h * i + 2 * h
        return self.num_layers * per_layer + 2 * self.vocab_size * h + h

    @property
    def is_gqa(self) -> bool:
        """True when K/V heads are shared by several query heads (Vidur's GQA rule)."""
        return self.num_kv_heads < self.num_q_heads

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V of one token over all layers. O(1).

        >>> MODELS["llama-2-7b"].kv_bytes_per_token() // 1024  # KiB
        512
        """
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        """Bytes of the weights. O(1)."""
        return self.num_params * dtype_bytes


GPUS: dict[str, GPUSpec] = {
    "a100": GPUSpec(
        "a100", "NVIDIA A100-SXM4-80GB", round(79.15 * GIB), 2.039, 312.0, "a100",
        "79.15 GiB: PyTorch's total capacity of an A100 80GB in its OOM messages; "
        "2.039 TB/s and 312 TFLOP/s: NVIDIA A100 datasheet (SXM4 80GB)",
    ),
    "h100": GPUSpec(
        "h100", "NVIDIA H100-SXM5-80GB", round(79.11 * GIB), 3.35, 989.4, "h100",
        "79.11 GiB: PyTorch's total capacity of an H100 80GB (vllm-project/vllm#27508); "
        "3.35 TB/s and 989.4 TFLOP/s: NVIDIA H100 datasheet (SXM5)",
    ),
}

MODELS: dict[str, ModelShape] = {
    "llama-2-7b": ModelShape("llama-2-7b", "meta-llama/Llama-2-7b-hf", 32, 32, 32, 128, 4096,
                             11008, 32000, 4096, "meta-llama/Llama-2-7b-hf"),
    "llama-3-8b": ModelShape("llama-3-8b", "meta-llama/Meta-Llama-3-8B", 32, 32, 8, 128, 4096,
                             14336, 128256, 8192, "meta-llama/Meta-Llama-3-8B"),
}


def get_gpu(gpu: object) -> GPUSpec:
    """The :class:`GPUSpec` named ``gpu`` (one of :data:`GPUS`). O(1)."""
    return GPUS[check_choice(gpu, "gpu", GPUS)]


def get_model(model: object) -> ModelShape:
    """The :class:`ModelShape` named ``model`` (one of :data:`MODELS`). O(1)."""
    return MODELS[check_choice(model, "model", MODELS)]


def activation_bytes(
    model: ModelShape, max_num_batched_tokens: int, max_num_seqs: int = 256
) -> int:
    """Peak activation bytes of vLLM's profiling forward pass (module docstring). O(1).

    >>> round(activation_bytes(MODELS["llama-2-7b"], 4096) / GIB, 3)
    0.375
    """
    t = max_num_batched_tokens
    hidden = 2 * model.hidden_size + 3 * model.intermediate_size  # fp16 tensors live in the MLP
    logits = 2 * max_num_seqs * model.vocab_size * 4  # fp32 logits + probabilities
    return t * hidden * 2 + logits


def kv_pages(
    gpu: str,
    model: str,
    page_size: int = 16,
    *,
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int = 256,
    kv_dtype_bytes: int = 2,
) -> int:
    """KV pages (blocks of ``page_size`` tokens) that fit beside the weights. O(1).

    See the module docstring for the formula and the figures behind it. Raises
    ValueError naming the argument for an unknown GPU or model, a bad setting, or a
    setup where the weights and activations leave no room for a single page.

    >>> kv_pages("a100", "llama-2-7b")
    7463
    """
    g, m = get_gpu(gpu), get_model(model)
    page_size = check_positive_int(page_size, "page_size")
    util = check_number(gpu_memory_utilization, "gpu_memory_utilization", minimum=0.0,
                        maximum=1.0, exclusive_minimum=True)
    if max_num_batched_tokens is None:
        max_num_batched_tokens = max(m.max_model_len, 2048)
    tokens = check_positive_int(max_num_batched_tokens, "max_num_batched_tokens")
    seqs = check_positive_int(max_num_seqs, "max_num_seqs")
    dtype = check_int(kv_dtype_bytes, "kv_dtype_bytes", minimum=1, maximum=8)
    free = g.memory_bytes * util - m.weight_bytes() - activation_bytes(m, tokens, seqs)
    page_bytes = m.kv_bytes_per_token(dtype) * page_size
    pages = math.floor(free / page_bytes) if free > 0 else 0
    if pages < 1:
        raise ValueError(
            f"{m.name} on {g.name} at gpu_memory_utilization={util} leaves "
            f"{free / GIB:.2f} GiB for the KV cache: not one page of {page_size} tokens"
        )
    return pages


def kv_capacity_tokens(gpu: str, model: str, page_size: int = 16, **settings: object) -> int:
    """Tokens of KV cache: :func:`kv_pages` x ``page_size`` (vLLM's blocks x 16). O(1).

    >>> kv_capacity_tokens("a100", "llama-2-7b")
    119408
    """
    return kv_pages(gpu, model, page_size, **settings) * page_size  # type: ignore[arg-type]
