"""PyTorch at the API boundary, without importing it (internal).

torch is an optional dependency: ``import llmds`` must never import it. Every
helper here finds torch in ``sys.modules`` instead: if the caller has not imported
torch, no argument can be a tensor, so the check is one dictionary look-up (about
50 ns) and the NumPy paths pay nothing else. Only :func:`require_torch` imports it,
for a structure the caller asked to back with torch (a torch ``dtype`` or
``device``), and it says which extra to install when torch is missing.

The library's structures keep their bookkeeping on the host in NumPy; tensors are
converted once at the boundary: a CPU tensor shares its memory with the NumPy view
(``Tensor.numpy()``, no copy); a CUDA tensor is copied to the host once (token ids
and KV indices are a few bytes per token). Results go back with
:func:`as_index_format`: ``torch.from_numpy`` (no copy) on the CPU, one
host-to-device copy elsewhere.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import show

__all__ = [
    "IndexFormat",
    "as_array",
    "as_index_format",
    "index_format",
    "is_tensor",
    "is_torch_dtype",
    "pool_spec",
    "pool_zeros",
    "require_torch",
    "torch_device",
    "torch_or_none",
]

# (device, dtype) of the index tensors a structure hands back
IndexFormat = tuple[Any, Any]


def torch_or_none() -> Any:
    """The torch module if the process imported it, else ``None`` (never imports). O(1)."""
    return sys.modules.get("torch")


def require_torch(what: str) -> Any:
    """Import torch for ``what`` or raise ImportError naming the ``torch`` extra."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{what} needs PyTorch; install it with `pip install 'llmds[torch]'`"
        ) from None
    return torch


def torch_device(device: Any, what: str) -> Any:
    """``device`` (a ``torch.device`` or its name, e.g. ``"cuda:0"``) as a
    ``torch.device``, importing torch for ``what``; ValueError names ``device``. O(1)."""
    torch = require_torch(what)
    try:
        return torch.device(device)
    except (TypeError, RuntimeError, ValueError):
        raise ValueError(f"device must be a torch device, got {show(device)}") from None


# torch dtypes a pool may hold (names; the float8 ones exist only in newer torch)
# (not uint16/32/64: torch implements few operations for them, not even min and max)
_POOL_DTYPES = ("float16", "bfloat16", "float32", "float64", "float8_e4m3fn",
                "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "int8", "int16",
                "int32", "int64", "uint8")


def pool_spec(dtype: Any, device: Any, what: str) -> tuple[Any, Any] | None:
    """``(torch dtype, torch device)`` for a pool asked to be torch-backed, else ``None``.

    A pool is torch-backed when ``dtype`` is a torch dtype (``torch.bfloat16``...)
    or a ``device`` is given; then torch is imported for ``what`` and a NumPy
    dtype is mapped to its torch twin by name. The dtype must be a float
    (16/32/64-bit, bfloat16, float8) or integer one: bool, complex and quantized
    dtypes raise TypeError, a bad device ValueError, both naming the argument.
    Without either, returns ``None`` (a NumPy pool; the caller checks its dtype).
    O(1).

    >>> pool_spec("float32", None, "x") is None
    True
    """
    if not is_torch_dtype(dtype) and device is None:
        return None
    torch = require_torch(what)
    name = None
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif not isinstance(dtype, bool | int | float | complex):
        try:
            name = np.dtype(dtype).name
        except (TypeError, ValueError):
            name = None
    tdtype = getattr(torch, name, None) if name in _POOL_DTYPES else None
    if tdtype is None:
        raise TypeError(f"dtype must be a torch or NumPy float/int dtype, got {show(dtype)}")
    return tdtype, torch_device("cpu" if device is None else device, what)


def pool_zeros(shape: tuple[int, ...], spec: tuple[Any, Any]) -> Any:
    """A zero tensor of ``shape`` with ``spec``'s (dtype, device). O(size).

    On the CPU it is a view of ``np.zeros`` of a same-width signed int (zero bits
    are zero in every pool dtype), so the OS maps its pages lazily as it does for a
    NumPy pool; ``torch.zeros`` would write every byte. Elsewhere ``torch.zeros``.
    Raises MemoryError when the memory cannot be reserved.
    """
    import torch  # present: pool_spec imported it

    dtype, device = spec
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    raw = np.zeros(shape, dtype=f"i{dtype.itemsize}")
    return torch.from_numpy(raw).view(dtype)


def is_tensor(x: Any) -> bool:
    """True if ``x`` is a ``torch.Tensor`` (False whenever torch was never imported). O(1)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_torch_dtype(x: Any) -> bool:
    """True if ``x`` is a ``torch.dtype`` (e.g. ``torch.bfloat16``). O(1)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.dtype)


def as_array(x: Any, name: str) -> npt.NDArray[Any]:
    """``x`` as a NumPy array; a tensor on any device is brought to the host. O(n).

    A CPU tensor is viewed without a copy; a CUDA (or other device) tensor is
    copied to the host once. A tensor NumPy has no dtype for (bfloat16, complex32)
    raises TypeError naming ``name``; anything else goes through ``np.asarray``.
    """
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        try:
            return t.numpy()
        except TypeError:
            raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}") from None
    return np.asarray(x)


def index_format(x: Any) -> IndexFormat | None:
    """``(device, dtype)`` of an index tensor, or ``None`` for anything else. O(1)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return (x.device, x.dtype)
    return None


def as_index_format(arr: npt.NDArray[np.int64], fmt: IndexFormat) -> Any:
    """Host int64 indices as a tensor of format ``fmt`` (device, dtype). O(n).

    On the CPU with dtype int64 this is ``torch.from_numpy`` (no copy, ~1 us);
    another dtype costs one cast, another device one host-to-device copy.
    """
    import torch  # present: a format only exists once a tensor was seen

    t = torch.from_numpy(arr)
    device, dtype = fmt
    if dtype != torch.int64 or device.type != "cpu":
        t = t.to(device=device, dtype=dtype)
    return t
