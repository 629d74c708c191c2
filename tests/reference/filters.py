"""Naive reference for llmds.filters: evaluate a filter on one metadata dict, in plain Python."""

from __future__ import annotations

import math
from typing import Any


def _key(v: Any) -> Any:
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, int | float) and math.isfinite(v):
        return ("n", v)
    return None


def _cmp(meta: dict[str, Any], field: str, op: str, arg: Any) -> bool:
    present = field in meta
    value = meta.get(field)
    k = _key(value) if present else None
    if op == "$eq":
        return k is not None and k == _key(arg)
    if op == "$ne":
        return present and (k is None or k != _key(arg))
    if op == "$in":
        return k is not None and any(k == _key(a) for a in arg)
    if op == "$nin":
        return present and not (k is not None and any(k == _key(a) for a in arg))
    if k is None or k[0] != "n":
        return False
    x = float(value)
    return {"$gt": x > arg, "$gte": x >= arg, "$lt": x < arg, "$lte": x <= arg}[op]


def matches(meta: dict[str, Any], filt: dict[str, Any]) -> bool:
    """True if the document with metadata ``meta`` passes ``filt``."""
    for key, value in filt.items():
        if key == "$and":
            ok = all(matches(meta, f) for f in value)
        elif key == "$or":
            ok = any(matches(meta, f) for f in value)
        elif key == "$not":
            ok = not matches(meta, value)
        elif isinstance(value, dict):
            ok = all(_cmp(meta, key, op, arg) for op, arg in value.items())
        else:
            ok = _cmp(meta, key, "$eq", value)
        if not ok:
            return False
    return True
