"""KVCache's value checks: the pool's token shape and dtype, and the values written.

Private to :mod:`llmds.kv_cache`. Values must be numbers: ``None``, strings and
bools raise ``TypeError``; an integer pool takes integers in its range, a float pool
finite values (NaN, inf and overflow raise ``ValueError``). Each check names the
argument and returns the value in its canonical form.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_int, is_int, show

__all__ = ["check_dtype", "check_token_shape", "coerce_values"]

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
    if many is None and arr.ndim == len(tshape):
        arr = arr.reshape(1, *tshape)
    if arr.ndim != len(tshape) + 1 or arr.shape[1:] != tshape:
        raise ValueError(f"{name} must have shape (num_tokens, *{tshape}), got {arr.shape}")
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
