"""GPU-profile cost model for :mod:`llmds.sim`: Vidur's operator profiles, model shapes, KV memory.

* :mod:`~llmds.sim.profiles.hardware`: the GPUs and models known, KV capacity
  (:func:`kv_pages`, :func:`kv_capacity_tokens`) from the model's published shape.
* :mod:`~llmds.sim.profiles.tables`: finding and reading the profile CSVs (validated).
* :mod:`~llmds.sim.profiles.fit`: monotone interpolation of the profile points.
* :mod:`~llmds.sim.profiles.cost`: :class:`ProfileCostModel`, one iteration's time.
* :mod:`~llmds.sim.profiles.validation`: held-out errors, the profiles README's
  hand-worked figures, and published end-to-end numbers compared with predictions.

The simulator uses it through :meth:`llmds.sim.SimConfig.on_gpu` (the model with
flagged extrapolation, and the KV pool :func:`kv_pages` gives), ``cost.gpu`` /
``cost.model`` in config files and ``llmds simulate --gpu --model``.

Quick start (needs the profiles under ``../shared/datasets`` or ``$LLMDS_DATA``)::

    from llmds.sim.profiles import ProfileCostModel, kv_pages
    cost = ProfileCostModel.from_profiles(gpu="a100", model="llama-2-7b")
    cost.iteration_ms(decode_kv_lens=[1024] * 32, prefill_chunks=[])   # ~19.9 ms
    kv_pages("a100", "llama-2-7b")                                      # 7463 pages of 16
"""

from llmds.sim.profiles.cost import KV_GRANULARITY, TOKEN_GRANULARITY, ProfileCostModel
from llmds.sim.profiles.hardware import (
    GPUS,
    MODELS,
    GPUSpec,
    ModelShape,
    activation_bytes,
    get_gpu,
    get_model,
    kv_capacity_tokens,
    kv_pages,
)
from llmds.sim.profiles.tables import find_profiles_dir

__all__ = [
    "GPUS",
    "KV_GRANULARITY",
    "MODELS",
    "TOKEN_GRANULARITY",
    "GPUSpec",
    "ModelShape",
    "ProfileCostModel",
    "activation_bytes",
    "find_profiles_dir",
    "get_gpu",
    "get_model",
    "kv_capacity_tokens",
    "kv_pages",
]
