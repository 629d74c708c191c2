"""What a saved HNSW graph must satisfy before a kernel may touch it (see ``HNSW.load``).

The container's CRCs catch accidents; a hostile file recomputes them. The kernels
index arrays without bounds checks, so :func:`check_graph` checks, with vectorised
NumPy over the arrays ``read_container`` returned, every fact they rely on, and
raises :class:`~llmds.errors.CorruptFileError` naming the first one that fails:

* shapes and dtypes agree with ``num_slots`` (n), ``dim``, ``M`` and ``upper_rows``;
* vectors are finite (unit length for ``cosine``);
* ``0 <= levels <= MAX_LEVEL``; ``deleted`` in {0, 1}; labels >= 0, live ones unique;
  ``free`` holds exactly the deleted slots;
* the entry point is a slot whose level is the top level, which is ``levels.max()``
  (-1 / -1 for an empty graph);
* a node of level ``L >= 1`` owns rows ``upper_start .. upper_start + L - 1`` inside
  ``upper_links`` and no two nodes' rows overlap (``upper_start`` is -1 at level 0);
* every link row has a count in ``[0, capacity]`` (2M at layer 0, M above) and its
  links point to other slots (no self-link, no repeat) that have that layer.

``HNSW._check`` runs the same function on the live arrays, so these facts are the
class invariants and a loaded index passes it. O(n * M) time; temporary memory
bounded by processing link rows in chunks.

:func:`open_graph` reads a file and checks its header (kind, version, keys,
parameter names); :func:`state_container` does the same for the state ``pickle`` and
``copy.deepcopy`` carry (``HNSW.__getstate__``), so an unpickled index passes the same
checks as a loaded one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels.hnsw_build import MAX_LEVEL
from llmds._persist import Container, read_container
from llmds._validate import check_bool, check_path, is_int
from llmds.errors import CorruptFileError

__all__ = ["KIND", "MAX_LEVEL", "PARAMS", "VERSION", "check_graph", "check_path",
           "check_rng_state", "open_graph", "state_container"]

KIND = "llmds.HNSW"
VERSION = 1
PARAMS = ("dim", "M", "ef_construction", "ef_search", "ml", "seed", "metric")
_META = frozenset({"params", "num_slots", "upper_rows", "entry_point", "max_level",
                   "rng_state"})
_CHUNK = 1 << 16  # link rows validated per step (bounds the temporary arrays)


def _int(c: Container, meta: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = meta.get(key)
    if not is_int(value) or not lo <= value <= hi:  # type: ignore[operator]
        raise c.fail(f"{key} must be an int in [{lo}, {hi}], got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _links(c: Container, where: str, rows: npt.NDArray[np.int32], owner: npt.NDArray[np.int64],
           lev: npt.NDArray[np.int64], levels: npt.NDArray[np.int32], cap: int) -> None:
    """Check link rows ``(count, neighbours...)`` owned by ``owner`` at layers ``lev``."""
    n = levels.shape[0]
    for start in range(0, rows.shape[0], _CHUNK):
        block = rows[start : start + _CHUNK]
        counts = block[:, 0].astype(np.int64)
        if counts.size and (counts.min() < 0 or counts.max() > cap):
            raise c.fail(f"{where} link counts must be in [0, {cap}]")
        nbs = block[:, 1 : cap + 1].astype(np.int64)
        used = np.arange(cap)[None, :] < counts[:, None]
        vals = nbs[used]
        if vals.size == 0:
            continue
        if vals.min() < 0 or vals.max() >= n:
            raise c.fail(f"{where} links must be slots in [0, {n - 1}]")
        own = np.broadcast_to(owner[start : start + _CHUNK, None], nbs.shape)[used]
        if (vals == own).any():
            raise c.fail(f"{where} holds a self-link")
        layer = np.broadcast_to(lev[start : start + _CHUNK, None], nbs.shape)[used]
        if (levels[vals] < layer).any():
            raise c.fail(f"{where} links to a node that lacks the layer")
        # unused positions get distinct negative fillers, so only real repeats collide
        filled = np.sort(np.where(used, nbs, -1 - np.arange(cap)[None, :]), axis=1)
        if (filled[:, 1:] == filled[:, :-1]).any():
            raise c.fail(f"{where} repeats a link")


def check_graph(c: Container, dim: int, m: int, metric: str) -> dict[str, Any]:
    """Validate the graph arrays and counts of ``c`` (see the module docstring).

    Returns ``{"arrays": {...}, "num_slots", "upper_rows", "entry_point", "max_level"}``.
    """
    meta = c.meta
    a = {name: c.array(name, dtype, ndim) for name, dtype, ndim in (
        ("vectors", "float32", 2), ("links0", "int32", 2), ("levels", "int32", 1),
        ("upper_start", "int32", 1), ("upper_links", "int32", 2), ("deleted", "uint8", 1),
        ("labels", "int64", 1), ("free", "int64", 1))}
    n = _int(c, meta, "num_slots", 0, 2**31 - 1)
    rows = _int(c, meta, "upper_rows", 0, 2**31 - 1)
    shapes = {"vectors": (n, dim), "links0": (n, 2 * m + 1), "levels": (n,),
              "upper_start": (n,), "upper_links": (rows, m + 1), "deleted": (n,),
              "labels": (n,)}
    for name, shape in shapes.items():
        if a[name].shape != shape:
            raise c.fail(f"array {name!r} has shape {a[name].shape}, expected {shape}")
    vectors, levels, deleted, labels = a["vectors"], a["levels"], a["deleted"], a["labels"]
    if not np.isfinite(vectors).all():
        raise c.fail("vectors hold NaN or inf")
    if metric == "cosine" and n:
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        if np.abs(norms - 1.0).max() > 1e-4:
            raise c.fail("cosine vectors must have unit length")
    if n and (levels.min() < 0 or levels.max() > MAX_LEVEL):
        raise c.fail(f"levels must be in [0, {MAX_LEVEL}]")
    if n and deleted.max() > 1:
        raise c.fail("deleted must hold 0 or 1")
    if n and labels.min() < 0:
        raise c.fail("labels must be >= 0")
    live = np.flatnonzero(deleted == 0)
    if np.unique(labels[live]).shape[0] != live.shape[0]:
        raise c.fail("labels repeat a live id")
    if not np.array_equal(np.sort(a["free"]), np.flatnonzero(deleted)):
        raise c.fail("free must list exactly the deleted slots")
    entry = _int(c, meta, "entry_point", -1, n - 1)
    top = _int(c, meta, "max_level", -1, MAX_LEVEL)
    if (n == 0) != (entry < 0) or (n and not top == levels[entry] == levels.max()) or \
            (n == 0 and top != -1):
        raise c.fail(f"entry point {entry} at level {top} is not a slot of the top level")
    start = a["upper_start"]
    if (start[levels == 0] != -1).any():
        raise c.fail("upper_start must be -1 for nodes of level 0")
    up = np.flatnonzero(levels > 0)
    first = start[up].astype(np.int64)
    last = first + levels[up]
    if up.size and (first.min() < 0 or last.max() > rows):
        raise c.fail(f"upper_start must place each node's rows inside {rows} rows")
    order = np.argsort(first, kind="stable")
    if (first[order][1:] < last[order][:-1]).any():
        raise c.fail("upper_start gives two nodes overlapping rows")
    _links(c, "links0", a["links0"], np.arange(n, dtype=np.int64), np.zeros(n, np.int64),
           levels, 2 * m)
    counts = levels[up].astype(np.int64)
    owner = np.repeat(up.astype(np.int64), counts)
    # layer of each owned row: 1, 2, ..., L for every node of level L
    lev = np.arange(owner.shape[0], dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                   counts) + 1
    row_of = np.repeat(first, counts) + lev - 1
    _links(c, "upper_links", a["upper_links"][row_of], owner, lev, levels, m)
    return {"arrays": a, "num_slots": n, "upper_rows": rows, "entry_point": entry,
            "max_level": top}


def check_rng_state(c: Container, state: Any) -> dict[str, Any]:
    """A NumPy PCG64 state as ``default_rng().bit_generator.state`` gives it, or raise."""
    ok = isinstance(state, dict) and set(state) == {"bit_generator", "state", "has_uint32",
                                                     "uinteger"}
    if ok:
        inner = state["state"]
        ok = (state["bit_generator"] == "PCG64" and isinstance(inner, dict)
              and set(inner) == {"state", "inc"}
              and all(is_int(inner[k]) and 0 <= inner[k] < 2**128 for k in inner)
              and inner["inc"] % 2 == 1 and state["has_uint32"] in (0, 1)
              and not isinstance(state["has_uint32"], bool)
              and is_int(state["uinteger"]) and 0 <= state["uinteger"] < 2**32)
    if not ok:
        raise c.fail("rng_state is not a NumPy PCG64 state")
    return state


def _check_header(c: Container) -> Container:
    """``c`` if its header holds exactly the HNSW keys and parameter names."""
    meta = c.meta
    if set(meta) != _META:
        raise c.fail(f"the header must hold exactly {sorted(_META)}, got {sorted(meta)}")
    p = meta["params"]
    if not isinstance(p, dict) or set(p) != set(PARAMS):
        raise c.fail(f"params must hold exactly {list(PARAMS)}")
    return c


def open_graph(path: object, mmap: object) -> Container:
    """The container at ``path`` with a well-formed HNSW header (arrays not yet checked).

    Refuses a folder saved by llmds 0.2 (``header.json`` + ``.npy`` files) with a
    CorruptFileError saying so. O(file size) (checksums).
    """
    where = check_path(path)
    mmap = check_bool(mmap, "mmap")
    if os.path.isdir(where) and os.path.exists(os.path.join(where, "header.json")):
        raise CorruptFileError(
            f"{os.fspath(where)!r} is an HNSW folder of llmds 0.2 (header.json + .npy "
            "files), a format this llmds no longer reads: rebuild the index and save it "
            "again (one checksummed file)")
    return _check_header(read_container(where, KIND, (VERSION,), mmap=mmap))


def state_container(state: object, where: str) -> Container:
    """A pickled state ``{"meta", "arrays"}`` as a Container the loader's checks can read."""
    if not (isinstance(state, dict) and set(state) == {"meta", "arrays"}
            and isinstance(state["meta"], dict) and isinstance(state["arrays"], dict)
            and all(isinstance(a, np.ndarray) for a in state["arrays"].values())):
        raise CorruptFileError(f"{where!r}: not a pickled HNSW state")
    return _check_header(Container(where, KIND, VERSION, state["meta"], state["arrays"]))
