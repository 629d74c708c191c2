"""KVCache's value checks: the pool's token shape and dtype, and the values written.

Private to :mod:`llmds.kv_cache`. Values must be numbers: ``None``, strings and
bools raise ``TypeError``; an integer pool takes integers in its range, a float pool
finite values (NaN, inf and overflow raise ``ValueError``). Each check names the
argument and returns the value in its canonical form: a NumPy array for a NumPy
pool (:func:`coerce_values`), a tensor on the pool's device for a torch pool
(:func:`coerce_tensor_values`, which also takes tensors on any device).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._torch import pool_zeros
from llmds._validate import check_int, is_int, show

__all__ = ["check_dtype", "check_token_shape", "coerce_tensor_values", "coerce_values",
           "make_pool", "same_values"]

MAX_DIM = 1 << 40


def check_token_shape(token_shape: Any) -> tuple[int, ...]:
    """``token_shape`` (an int, or a tuple/list of at most 8 positive ints) as a tuple.

    >>> check_token_shape(3), check_token_shape([2, 4])
    ((3,), (2, 4))
    """
    if is_int(token_shape):
        token_shape = (token_shape,)
    if not isinstance(token_shape, tuple | list):
        raise TypeError(f"token_shape must be a tuple of ints, got {show(token_shape)}")
    if len(token_shape) > 8:
        raise ValueError(f"token_shape may have at most 8 dimensions, got {len(token_shape)}")
    return tuple(check_int(d, f"token_shape[{i}]", minimum=1, maximum=MAX_DIM)
                 for i, d in enumerate(token_shape))


def check_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` as an integer or float NumPy dtype (not a number, not bool/object)."""
    if isinstance(dtype, bool | int | float | complex | np.generic):
        raise TypeError(f"dtype must be a NumPy numeric dtype, got {show(dtype)}")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"dtype must be a NumPy numeric dtype, got {show(dtype)}") from None
    if dt.kind not in "iuf":
        raise TypeError(f"dtype must be an integer or float dtype, got {dt}")
    return dt


def make_pool(shape: tuple[int, ...], dt: Any, spec: Any, max_bytes: int) -> Any:
    """The zeroed pool of ``shape`` (pages, page_size, *token_shape): a NumPy array of
    ``dt`` when ``spec`` is None (``np.zeros``: the OS maps its pages lazily, zero
    pages until written), else the torch tensor ``spec`` describes. ValueError above
    ``max_bytes``, a MemoryError naming the sizes when the OS refuses."""
    n, ps, *token_shape = shape
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes > max_bytes:
        raise ValueError(
            f"the pool would take {nbytes} bytes (max_pages={n} * page_size={ps} * "
            f"token_shape={tuple(token_shape)} * {dt.itemsize}-byte {dt}), more than "
            f"MAX_POOL_BYTES={max_bytes}"
        )
    try:
        return np.zeros(shape, dtype=dt) if spec is None else pool_zeros(shape, spec)
    except MemoryError:
        raise MemoryError(
            f"could not reserve the {nbytes}-byte pool (max_pages={n}, page_size={ps}, "
            f"token_shape={tuple(token_shape)}, dtype={dt}); lower one of them"
        ) from None


def coerce_values(
    values: Any, name: str, dt: np.dtype[Any], tshape: tuple[int, ...], many: bool | None
) -> npt.NDArray[Any]:
    """``values`` as ``(k, *tshape)`` in dtype ``dt``; ``many=None`` also accepts one
    token. O(k). See the module docstring for what is accepted."""
    if values is None or isinstance(values, str | bytes):
        raise TypeError(f"{name} must be numbers, got {show(values)}")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a rectangular array of numbers, got {show(values)}"
        ) from None
    if arr.dtype.kind not in "iuf":
        if arr.size == 0 and arr.dtype.kind in "OUSb":
            arr = arr.astype(dt)  # an empty list of lists
        elif arr.dtype.kind == "O" and all(is_int(v) for v in arr.flat):
            arr = _big_ints(arr, name, dt)  # Python ints beyond int64
        else:
            raise TypeError(f"{name} must hold numbers (int or float), got dtype {arr.dtype}")
    arr = _shaped(arr, name, tshape, many)
    if arr.dtype == dt or arr.size == 0:
        out = arr.astype(dt, copy=False)
    elif dt.kind in "iu":
        if arr.dtype.kind == "f":
            raise TypeError(f"{name} must hold integers for a {dt} pool, got dtype {arr.dtype}")
        info = np.iinfo(dt)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"{name} must hold values in [{info.min}, {info.max}] for a "
                             f"{dt} pool, got {lo if lo < info.min else hi}")
        out = arr.astype(dt)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(dt)
    if dt.kind == "f" and out.size and not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite numbers (no NaN or inf) for a {dt} pool")
    return out


def _shaped(arr: Any, name: str, tshape: tuple[int, ...], many: bool | None) -> Any:
    """``arr`` (an array or a tensor) as ``(k, *tshape)``; ``many=None`` also accepts one
    token. ValueError names ``name`` and the shape. O(1)."""
    if many is None and arr.ndim == len(tshape):
        arr = arr.reshape(1, *tshape)
    if arr.ndim != len(tshape) + 1 or tuple(arr.shape[1:]) != tshape:
        raise ValueError(f"{name} must have shape (num_tokens, *{tshape}), got "
                         f"{tuple(arr.shape)}")
    return arr


def coerce_tensor_values(values: Any, name: str, pool: Any, tshape: tuple[int, ...],
                         many: bool | None) -> Any:
    """``values`` as a ``(k, *tshape)`` tensor of the torch ``pool``'s dtype and device.

    A tensor (any device) must be an integer or float one: bool, complex, uint64
    and, for an integer pool, float tensors raise TypeError. Anything else goes
    through :func:`coerce_values` first. An integer pool takes values in its dtype's
    range; a float pool finite values of magnitude at most its dtype's largest (so
    a bfloat16 or float8 pool never rounds an overflow to inf or saturates it).
    O(k), plus two reductions when the dtypes differ.
    """
    import torch  # present: the pool is a tensor

    dt = pool.dtype
    integer = not dt.is_floating_point
    if isinstance(values, torch.Tensor):
        src = values.detach()
        if src.dtype == torch.uint64:
            raise TypeError(f"{name} must not be a uint64 tensor (torch cannot check its "
                            "range); convert it to int64")
        if src.dtype == torch.bool or src.is_complex() or (integer and src.is_floating_point()):
            want = "integers" if integer else "numbers (int or float)"
            raise TypeError(f"{name} must hold {want} for a {dt} pool, got dtype {src.dtype}")
        src = _shaped(src, name, tshape, many)
        if src.dtype in (torch.uint16, torch.uint32):  # torch has no min/max for them
            src = src.to(torch.int64)
    else:
        staging = np.dtype(str(dt).removeprefix("torch.")) if integer else np.dtype(np.float64)
        src = torch.from_numpy(coerce_values(values, name, staging, tshape, many))
    if src.numel():
        _check_range(src, name, dt, integer)
    return src.to(device=pool.device, dtype=dt)


def _check_range(src: Any, name: str, dt: Any, integer: bool) -> None:
    """Raise ValueError unless every value of tensor ``src`` is finite and fits torch
    dtype ``dt`` (nothing to do for integers already of ``dt``). O(k)."""
    import torch

    # float8 has no isfinite/min/max: read it as float32 (exact)
    s = src.float() if src.is_floating_point() and src.dtype.itemsize == 1 else src
    if s.is_floating_point() and not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} must be finite numbers (no NaN or inf) for a {dt} pool")
    if src.dtype == dt:
        return
    lo, hi = s.min().item(), s.max().item()
    if integer:
        info = torch.iinfo(dt)
        if lo < info.min or hi > info.max:
            raise ValueError(f"{name} must hold values in [{info.min}, {info.max}] for a "
                             f"{dt} pool, got {lo if lo < info.min else hi}")
    elif max(-lo, hi) > torch.finfo(dt).max:
        raise ValueError(f"{name} must hold values of magnitude <= {torch.finfo(dt).max} "
                         f"for a {dt} pool, got {lo if -lo > hi else hi}")


def same_values(page: Any, chunk: Any) -> bool:
    """True if a pool page and a chunk of coerced values hold the same values. A torch
    pool compares bits (torch has no equality for every pool dtype, float8 among them;
    values are finite, so only 0.0 against -0.0 differs, which costs a private copy). O(page)."""
    if isinstance(page, np.ndarray):
        return bool(np.array_equal(page, chunk))
    import torch

    bits = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[page.dtype.itemsize]
    return bool(torch.equal(page.view(bits), chunk.view(bits)))


def _big_ints(arr: npt.NDArray[Any], name: str, dt: np.dtype[Any]) -> npt.NDArray[Any]:
    """An object array of Python ints (some beyond int64) in dtype ``dt``."""
    if dt.kind == "f":
        try:
            return arr.astype(dt)
        except OverflowError:
            raise ValueError(f"{name} must be finite numbers for a {dt} pool") from None
    info = np.iinfo(dt)
    bad = next(int(v) for v in arr.flat if not info.min <= v <= info.max)
    raise ValueError(
        f"{name} must hold values in [{info.min}, {info.max}] for a {dt} pool, got {bad}"
    )
