"""One validation layer: argument checks with one message style, shared by every class.

Every check takes the value first and the argument's name second, returns the value
coerced to its canonical Python/NumPy type, and raises

* ``TypeError`` when the value has the wrong type (``"k must be an int, got str 'x'"``),
* ``ValueError`` when the type is right but the value is not (``"k must be >= 1, got 0"``).

The message always names the argument and shows the value (shortened to 60
characters), so a caller never sees a Python internal such as ``unhashable type``.
``bool`` is never accepted where a number is expected (``True`` is not page 1), and
NumPy scalars are accepted wherever the matching Python type is.

These run at the API boundary, once per call; kernels never validate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "check_bool",
    "check_choice",
    "check_finite_array",
    "check_int",
    "check_int_array",
    "check_int_list",
    "check_nonneg_int",
    "check_number",
    "check_path",
    "check_positive_int",
    "check_sequence",
    "check_size",
    "check_str",
    "check_text",
    "check_top_k",
    "is_int",
    "show",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_SHOW = 60


def show(value: object) -> str:
    """``type 'repr'`` of ``value`` for an error message, the repr cut to 60 characters.

    >>> show("abc"), show(1.5), show([0] * 100)[:20]
    ("str 'abc'", 'float 1.5', 'list [0, 0, 0, 0, 0,')
    """
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not hide the real error
        text = "<unprintable>"
    if len(text) > _SHOW:
        text = text[: _SHOW - 3] + "..."
    return f"{type(value).__name__} {text}"


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for ``bool`` / ``np.bool_``. O(1)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as a Python int within ``[minimum, maximum]``. O(1).

    >>> check_int(3, "k", minimum=1)
    3
    >>> check_int(True, "k")
    Traceback (most recent call last):
    TypeError: k must be an int, got bool True
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {show(value)}")
    out = int(value)  # type: ignore[call-overload]
    if minimum is not None and out < minimum:
        if maximum is not None:
            raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {out}")
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        if minimum is not None:
            raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {out}")
        raise ValueError(f"{name} must be <= {maximum}, got {out}")
    return out


def check_positive_int(value: object, name: str, *, maximum: int | None = None) -> int:
    """``value`` as an int >= 1 (and <= ``maximum``). O(1)."""
    return check_int(value, name, minimum=1, maximum=maximum)


def check_nonneg_int(value: object, name: str, *, maximum: int | None = None) -> int:
    """``value`` as an int >= 0 (and <= ``maximum``). O(1)."""
    return check_int(value, name, minimum=0, maximum=maximum)


def check_size(value: object, name: str, *, maximum: int, why: str = "") -> int:
    """A size (>= 1) capped before anything is allocated, with the cap in the message. O(1).

    >>> check_size(2**40, "num_pages", maximum=2**31 - 1, why="page ids are int32")
    Traceback (most recent call last):
    ValueError: num_pages must be <= 2147483647 (page ids are int32), got 1099511627776
    """
    out = check_int(value, name, minimum=1)
    if out > maximum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be <= {maximum}{reason}, got {out}")
    return out


def check_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    finite: bool = True,
    exclusive_minimum: bool = False,
) -> float:
    """``value`` (int or float, not bool, not a str) as a float within the bounds. O(1).

    >>> check_number("7.5", "x")
    Traceback (most recent call last):
    TypeError: x must be a number, got str '7.5'
    >>> check_number(float("nan"), "x")
    Traceback (most recent call last):
    ValueError: x must be a finite number, not NaN
    >>> check_number(float("inf"), "x", finite=False)
    inf
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer
                                                          | np.floating):
        raise TypeError(f"{name} must be a number, got {show(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number, got {show(value)}") from None
    if math.isnan(out):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}number, not NaN")
    if finite and math.isinf(out):
        raise ValueError(f"{name} must be a finite number, got {out}")
    if minimum is not None:
        if exclusive_minimum and not out > minimum:
            raise ValueError(f"{name} must be > {minimum}, got {out}")
        if not exclusive_minimum and out < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {out}")
    return out


def check_bool(value: object, name: str) -> bool:
    """``value`` as a bool (``True``/``False`` or ``np.bool_`` only). O(1)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {show(value)}")
    return bool(value)


def check_path(value: object, name: str = "path") -> str | os.PathLike[str]:
    """``value`` if it is a ``str`` or ``os.PathLike`` (the file is not opened). O(1).

    >>> check_path(3)
    Traceback (most recent call last):
    TypeError: path must be a str or os.PathLike, got int 3
    """
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {show(value)}")
    return value


def check_str(value: object, name: str, *, nonempty: bool = False) -> str:
    """``value`` as a str; with ``nonempty`` it must hold a non-space character. O(len)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {show(value)}")
    if nonempty and not value.strip():
        raise ValueError(f"{name} must not be empty, got {value!r}")
    return value


def check_text(value: object, name: str, *, nonempty: bool = False) -> str:
    """``value`` as a str that encodes to UTF-8 (no lone surrogates). O(len).

    Text that reaches an index must survive ``encode("utf-8")`` (saving, C stemmers).

    >>> check_text("a" + chr(0xD800), "text")
    Traceback (most recent call last):
    ValueError: text must be valid Unicode, got a lone surrogate '\ud800' at position 1
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {show(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{name} must be valid Unicode, got a lone surrogate "
                             f"{value[exc.start]!r} at position {exc.start}") from None
    if nonempty and not value.strip():
        raise ValueError(f"{name} must not be empty, got {show(value)}")
    return value


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """``value`` as one of ``choices`` (strings). O(len(choices)).

    >>> check_choice("l1", "metric", ("l2", "ip"))
    Traceback (most recent call last):
    ValueError: metric must be one of 'l2', 'ip', got 'l1'
    """
    options = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, options))}, "
                        f"got {show(value)}")
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")
    return value


def check_top_k(value: object, name: str = "top_k") -> int:
    """A result count: an int >= 1. O(1)."""
    return check_int(value, name, minimum=1)


def check_int_list(
    values: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> list[int]:
    """A sequence of ints (no bools, no floats, not a str) as a list. O(n)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of ints, got {show(values)}")
    out = []
    for i, v in enumerate(values):
        out.append(check_int(v, f"{name}[{i}]", minimum=minimum, maximum=maximum))
    return out


def check_sequence(value: object, name: str, what: str, *, ordered: bool = True) -> None:
    """Reject what cannot be a sequence of ``what``: a str, bytes, a non-iterable and,
    if ``ordered``, a dict or a set (their order is not the caller's). O(1).

    >>> check_sequence({"a": 1}, "queries", "str")
    Traceback (most recent call last):
    TypeError: queries must be a sequence of str, got dict {'a': 1}
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable) or (
            ordered and isinstance(value, Mapping | Set)):
        kind = "sequence" if ordered else "iterable"
        raise TypeError(f"{name} must be a {kind} of {what}, got {show(value)}")


def check_int_array(
    values: object,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    dtype: npt.DTypeLike = np.int64,
) -> npt.NDArray[Any]:
    """A 1-D integer array (NumPy, list of ints) within the bounds, as ``dtype``. O(n).

    Floats, bools, strings and objects are rejected by type, never truncated; uint64
    values above int64 are rejected by range, never wrapped.

    >>> check_int_array([1, 2], "ids").tolist()
    [1, 2]
    >>> check_int_array(np.array([1.0]), "ids")
    Traceback (most recent call last):
    TypeError: ids must hold integers, got dtype float64
    """
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} must be a 1-D sequence of ints, got {show(values)}")
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise TypeError(f"{name} must be a 1-D sequence of ints, got {show(values)}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=dtype)
    ints = None
    if arr.dtype.kind == "O":
        ints = arr.tolist()
    elif arr.dtype.kind == "f" and isinstance(values, list | tuple):
        ints = list(values)  # NumPy turns [1, 2**63] into float64: keep the exact ints
    if arr.dtype.kind not in "iu" and (ints is None or not all(is_int(v) for v in ints)):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if ints is not None:
        ints = [int(v) for v in ints]
        lo, hi = min(ints), max(ints)
    else:
        lo = int(arr.min())
        hi = int(arr.max())
    if minimum is not None and lo < minimum:
        raise ValueError(f"{name} must hold values >= {minimum}, got {lo}")
    if maximum is not None and hi > maximum:
        raise ValueError(f"{name} must hold values <= {maximum}, got {hi}")
    info = np.iinfo(np.dtype(dtype))
    if lo < info.min or hi > info.max:
        raise ValueError(f"{name} must hold values in [{info.min}, {info.max}], "
                         f"got {lo if lo < info.min else hi}")
    if ints is not None:
        return np.array(ints, dtype=dtype)
    return arr.astype(dtype, copy=False)


def check_finite_array(
    values: object,
    name: str,
    *,
    shape: Sequence[int | None] | None = None,
    dtype: npt.DTypeLike = np.float32,
) -> npt.NDArray[Any]:
    """A numeric array of the given shape (``None`` = any length) with finite values. O(n).

    >>> check_finite_array([[1.0, float("inf")]], "vectors", shape=(None, 2))
    Traceback (most recent call last):
    ValueError: vectors must be finite (no NaN or inf)
    """
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise TypeError(f"{name} must be a numeric array, got {show(values)}") from None
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if shape is not None and (arr.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(arr.shape, shape,
                                                                   strict=True))):
        want_text = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want_text}, got {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return out
