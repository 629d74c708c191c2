"""Structure-aware fuzzing of llmds container files (``llmds._persist``), for tests.

A hostile file recomputes its checksums, so the CRCs catch nothing: these helpers
do the same. A fuzz test reads a saved file with :func:`read_raw`, changes its
arrays or header values (:func:`mutate_array`, :func:`mutate_json`, or by hand),
writes it back with every CRC, size and offset recomputed (:func:`write_raw`), and
runs its loader on many such files with :func:`run_isolated`, which survives a
crash (signal) or a hang of the loader and says which file caused it.

API (everything else here is private)::

    raw = read_raw(path)                  # Raw(fmt, header, arrays), arrays writable
    raw.arrays["df"][3] = -1              # any change, including dtype/shape
    raw.header["meta"]["k1"] = float("nan")
    write_raw(path2, raw)                 # valid container, hostile content
    what, arr = mutate_array(arr, rng)    # one random change, with a description
    what, value = mutate_json(value, rng) # one random change of a JSON value
    outcomes = run_isolated("tests.test_x:load_and_search", paths, clean=("CorruptFileError",))
    Counter(o.kind for o in outcomes)     # "clean" | "valid" | "error" | "crash" | "hang"

``target`` is ``"module:function"``; the function takes a path (str), loads it and
uses the result (search, ``_check()``), and either returns (a valid file) or
raises. An exception whose class (or a base class) is named in ``clean`` is a
clean rejection; any other is an ``"error"`` (with its repr in ``detail``).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"LLMDSIX\x00"
_ALIGN = 64
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Raw:
    """A container file taken apart: format number, the JSON header, the arrays."""

    fmt: int
    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def clone(self) -> Raw:
        return Raw(self.fmt, copy.deepcopy(self.header),
                   {k: v.copy() for k, v in self.arrays.items()})


def read_raw(path: str | os.PathLike[str]) -> Raw:
    """Parse a container file without validating anything but its framing."""
    data = Path(path).read_bytes()
    if data[:8] != MAGIC:
        raise ValueError(f"{path}: not an llmds container")
    fmt, hlen = struct.unpack("<II", data[8:16])
    header = json.loads(data[16 : 16 + hlen])
    start = -(-(16 + hlen + 4) // _ALIGN) * _ALIGN
    arrays = {}
    for e in header["arrays"]:
        off = start + e["offset"]
        arr = np.frombuffer(data[off : off + e["nbytes"]], dtype=e["dtype"]).copy()
        arrays[e["name"]] = arr.reshape(e["shape"])
    return Raw(fmt, header, arrays)


def write_raw(path: str | os.PathLike[str], raw: Raw) -> None:
    """Write ``raw`` as a container whose checksums, sizes and offsets are all correct.

    The header's ``arrays`` list is rebuilt from ``raw.arrays`` (in their order);
    an entry's extra keys, if any, are kept. The header may hold NaN/Infinity
    (Python's JSON writes them): whether the reader accepts them is under test.
    """
    old = {e["name"]: e for e in raw.header.get("arrays", []) if isinstance(e, dict)}
    entries = []
    offset = 0
    blobs = []
    for name, arr in raw.arrays.items():
        a = np.ascontiguousarray(arr)
        entry = dict(old.get(name, {}))
        entry.update(name=name, dtype=a.dtype.name, shape=list(a.shape), offset=offset,
                     nbytes=int(a.nbytes), crc32=zlib.crc32(a.tobytes()) & 0xFFFFFFFF)
        entries.append(entry)
        blobs.append((offset, a.tobytes()))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    header = dict(raw.header, arrays=entries)
    text = json.dumps(header, sort_keys=True).encode()
    head = MAGIC + struct.pack("<II", raw.fmt, len(text)) + text
    head += struct.pack("<I", zlib.crc32(text) & 0xFFFFFFFF)
    start = -(-len(head) // _ALIGN) * _ALIGN
    out = bytearray(start + offset)
    out[: len(head)] = head
    for off, blob in blobs:
        out[start + off : start + off + len(blob)] = blob
    Path(path).write_bytes(bytes(out))


# ----------------------------------------------------------------------------- mutations
def _special_ints(arr: np.ndarray, old: int) -> list[int]:
    info = np.iinfo(arr.dtype)
    return [0, 1, -1, old + 1, old - 1, old * 2, old + 128, info.max, info.min, info.max // 2,
            int(arr.size), int(arr.size) + 1, 2**31 - 1, 2**32, 127, 128, 255]


def mutate_array(arr: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One random change to a copy of ``arr``: an element, a run of bytes, the shape,
    the dtype, or a swap. Returns ``(description, new array)``."""
    a = arr.copy()
    flat = a.reshape(-1)
    choice = int(rng.integers(0, 10))
    if flat.size and choice <= 4 and a.dtype.kind in "iu":
        i = int(rng.integers(0, flat.size))
        info = np.iinfo(a.dtype)
        value = int(rng.choice(_special_ints(a, int(flat[i])))) if choice <= 2 else int(
            rng.integers(info.min, info.max, endpoint=True, dtype=np.int64)
            if info.max <= 2**63 - 1 else rng.integers(0, 2**63 - 1))
        value = min(max(value, int(info.min)), int(info.max))
        flat[i] = value
        return f"[{i}] = {value}", a
    if flat.size and choice == 5:
        raw = a.view(np.uint8).reshape(-1)
        i = int(rng.integers(0, raw.size))
        n = int(rng.integers(1, min(8, raw.size - i) + 1))
        raw[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8)
        return f"bytes [{i}:{i + n}] random", a
    if flat.size > 1 and choice == 6:
        i, j = (int(x) for x in rng.choice(flat.size, 2, replace=False))
        flat[i], flat[j] = flat[j].copy(), flat[i].copy()
        return f"swap [{i}] [{j}]", a
    if choice == 7 and a.ndim == 1:
        if flat.size and rng.random() < 0.5:
            return "drop last", a[:-1].copy()
        extra = np.array([rng.choice(_special_ints(a, 0)) if a.dtype.kind in "iu" else 0],
                         dtype=np.int64)
        info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
        if info is not None:
            extra = np.clip(extra, info.min, info.max)
        return "append one", np.concatenate([a, extra.astype(a.dtype)])
    if choice == 8 and a.nbytes and a.nbytes % 4 == 0:
        dtypes = ["uint8", "int32", "uint32", "int64", "float64", "float32", "int16"]
        d = np.dtype(str(rng.choice(dtypes)))
        if a.nbytes % d.itemsize == 0:
            return f"reinterpret as {d}", a.reshape(-1).view(np.uint8).view(d).copy()
    if flat.size and a.dtype.kind in "iu":
        i = int(rng.integers(0, flat.size))
        flat[i] = 0 if flat[i] else 1
        return f"[{i}] toggled", a
    return "unchanged", a


_JSON_ODD: list[Any] = [None, True, False, 0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 1.5,
                        -0.0, float("nan"), float("inf"), -float("inf"), 1e308, "", "x",
                        "english", [], {}, [1], {"a": 1}]


def mutate_json(value: Any, rng: np.random.Generator, depth: int = 0) -> tuple[str, Any]:
    """One random change of a JSON value (recursing into objects and lists)."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.85:
        keys = sorted(value)
        key = keys[int(rng.integers(0, len(keys)))]
        roll = rng.random()
        out = dict(value)
        if roll < 0.1:
            del out[key]
            return f"drop {key!r}", out
        if roll < 0.15:
            out["unexpected"] = 1
            return "add key 'unexpected'", out
        what, out[key] = mutate_json(value[key], rng, depth + 1)
        return f"{key}: {what}", out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.7:
        i = int(rng.integers(0, len(value)))
        out_list = list(value)
        what, out_list[i] = mutate_json(value[i], rng, depth + 1)
        return f"[{i}]: {what}", out_list
    if isinstance(value, bool):
        return "negated", not value
    if isinstance(value, int) and rng.random() < 0.5:
        new = int(rng.choice([value + 1, value - 1, 0, -value, value * 2, value + 2**32]))
        return f"{value} -> {new}", new
    if isinstance(value, float) and rng.random() < 0.5:
        new = float(rng.choice([value * 2, -value, value + 1, 0.0, value * 1e6]))
        return f"{value} -> {new}", new
    odd = _JSON_ODD[int(rng.integers(0, len(_JSON_ODD)))]
    return f"-> {odd!r}", copy.deepcopy(odd)


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    """What loading one file did: kind is clean / valid / error / crash / hang."""

    path: str
    kind: str
    detail: str = ""


def _worker(target: str, clean: list[str], list_file: str, first: int) -> None:
    """Subprocess side: for paths ``first...`` of ``list_file`` print ``S i`` then
    ``R i kind detail``."""
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    paths = Path(list_file).read_text().splitlines()
    for i in range(first, len(paths)):
        path = paths[i]
        print(f"S {i}", flush=True)
        try:
            fn(path)
            kind, detail = "valid", ""
        except Exception as exc:  # classify every failure; nothing escapes the worker
            names = {k.__name__ for k in type(exc).__mro__}
            if names & set(clean):
                kind, detail = "clean", f"{type(exc).__name__}: {exc}"
            else:
                kind = "error"
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                detail += " | " + traceback.format_exc().replace("\n", " / ")[-600:]
        print(f"R {i} {kind} {json.dumps(detail[:1500])}", flush=True)


def run_isolated(
    target: str, paths: list[str] | list[Path], *, clean: tuple[str, ...] = ("CorruptFileError",),
    per_file_timeout: float = 20.0, env: dict[str, str] | None = None,
) -> list[Outcome]:
    """Run ``target`` on every path in a worker subprocess; one :class:`Outcome` per path.

    Files run in batches in one worker (so the JIT warms once); when the worker dies
    (a signal: "crash") or a file takes longer than ``per_file_timeout`` seconds
    ("hang", the worker is killed), that file is recorded and a fresh worker goes on
    with the next. The first file of each worker also gets the worker's start-up time.
    """
    todo = [str(p) for p in paths]
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        list_file = Path(tmp) / "paths.txt"
        list_file.write_text("".join(p + "\n" for p in todo))
        while len(results) < len(todo):
            _run_worker(target, clean, list_file, todo, results, per_file_timeout, env,
                        Path(tmp) / "stderr.txt")
    return results


def _run_worker(target: str, clean: tuple[str, ...], list_file: Path, todo: list[str],
                results: list[Outcome], per_file_timeout: float,
                env: dict[str, str] | None, err_file: Path) -> None:
    """One worker from ``todo[len(results)]`` on, until it finishes, dies or hangs."""
    batch = todo[len(results):]
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz_files", target, ",".join(clean),
             str(list_file), str(len(results))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env)
    assert proc.stdout is not None
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        fd = proc.stdout.fileno()
        pending = b""  # raw reads (a buffered readline would hide lines from select)
        started = None
        deadline = time.monotonic() + per_file_timeout + 30.0  # start-up: imports, JIT
        done_here = 0
        while done_here < len(batch):
            line: str | None = None
            while b"\n" not in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    break
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    line = ""
                    break
                pending += chunk
            if b"\n" in pending:
                raw_line, pending = pending.split(b"\n", 1)
                line = raw_line.decode()
            if line is None:  # no progress in time: the current file hangs
                proc.kill()
                results.append(Outcome(batch[done_here], "hang",
                                       f"no result within {per_file_timeout:.0f} s"))
                return
            if line == "":  # the worker died
                code = proc.wait()
                if started is None:
                    raise RuntimeError(f"fuzz worker failed to start ({code}): "
                                       f"{err_file.read_text()[-2000:]}")
                results.append(Outcome(batch[done_here], "crash",
                                       f"worker exited with {code}"))
                return
            tag, _, rest = line.partition(" ")
            if tag == "S":
                started = int(rest)
                deadline = time.monotonic() + per_file_timeout
            elif tag == "R":
                _, kind, detail = rest.split(" ", 2)
                results.append(Outcome(batch[done_here], kind, json.loads(detail)))
                done_here += 1
        sel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts per kind, plus ``files``."""
    counts = {"files": len(outcomes), "clean": 0, "valid": 0, "error": 0, "crash": 0,
              "hang": 0}
    for o in outcomes:
        counts[o.kind] += 1
    return counts


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]))
