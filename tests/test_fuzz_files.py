"""Structure-aware fuzzing of saved HNSW graphs and RetrievalPipeline bundles.

Small indexes (each metric, with deletions, and an empty one) and a small pipeline
are saved; then arrays (links, levels, upper_start, labels, deleted, free, vectors:
random ints, NaN/inf, shape and dtype changes) and header values (entry point,
levels, counts, dims, parameters, RNG state, key names, types) are mutated and every
checksum recomputed (container CRCs, the manifest's SHA-256), so only the loaders'
structural checks stand between the file and the kernels. Each file is loaded,
searched, extended and ``_check``-ed in a worker subprocess with a timeout.

Pass: a clean ``CorruptFileError`` or a valid index (searches, inserts and
``_check()`` all fine). Fail: a signal, a hang, another exception, or a failed check.

Extending (e.g. InvertedIndex in its own test file): write files, then call
:func:`run_files` with ``(check, path, note)`` entries where ``check`` is
``"module:function"`` of a function ``f(path) -> None`` that loads and uses the file
(raising ``CorruptFileError`` for a refused file); it runs in the worker.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmds.errors import CorruptFileError
from llmds.hnsw import HNSW
from llmds.retrieval_pipeline import RetrievalPipeline
from tests.hnsw_files import part_path, read_raw, refresh_manifest, write_raw

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 300.0  # the worker's first kernels may compile (cold numba cache)
FILE_TIMEOUT = 20.0  # one load + searches + inserts of a tiny index takes milliseconds

_WORKER = r"""
import importlib, sys, traceback
from llmds.errors import CorruptFileError
sys.path.insert(0, sys.argv[1])
entries = [line.rstrip("\n").split("\t") for line in open(sys.argv[2], encoding="utf-8")]
warm = sys.argv[3].split(",") if sys.argv[3] else []
for spec in warm:  # compile/load the kernels before the clock starts
    module, name = spec.split(":")
    getattr(importlib.import_module(module), name)(None)
print("READY", flush=True)
for i in range(int(sys.argv[4]), len(entries)):
    spec, path = entries[i][0], entries[i][1]
    print("S", i, flush=True)
    module, name = spec.split(":")
    try:
        getattr(importlib.import_module(module), name)(path)
        result = "valid"
    except CorruptFileError:
        result = "clean"
    except AssertionError as exc:
        result = "check-failed " + repr(exc)[:300].replace("\n", " ")
    except BaseException as exc:
        result = "error " + "".join(traceback.format_exception_only(exc))[:300].replace(
            "\n", " ")
    print("R", i, result, flush=True)
print("DONE", flush=True)
"""


def run_files(entries: list[tuple[str, str, str]], tmp: Path,
              warm: Iterable[str] = ()) -> tuple[Counter[str], list[str]]:
    """Load every ``(check, path, note)`` entry in worker subprocesses.

    Returns the outcome counts (``clean``, ``valid``, ``crash``, ``hang``,
    ``check-failed``, ``error``) and a description of every failure. A worker that
    dies or stalls is replaced and resumes after the file it was on.
    """
    listing = tmp / "entries.tsv"
    listing.write_text("".join(f"{c}\t{p}\n" for c, p, _ in entries), encoding="utf-8")
    counts: Counter[str] = Counter()
    failures: list[str] = []
    start = 0
    while start < len(entries):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(ROOT), str(listing), ",".join(warm),
             str(start)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=ROOT, env={**os.environ, "PYTHONFAULTHANDLER": ""})
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream: Any = proc.stdout, out: queue.Queue[str | None] = lines) -> None:
            for line in stream:
                out.put(line.rstrip("\n"))
            out.put(None)

        threading.Thread(target=pump, daemon=True).start()
        current, timeout = None, READY_TIMEOUT
        try:
            while True:
                try:
                    line = lines.get(timeout=timeout)
                except queue.Empty:
                    what = "hang" if current is not None else "hang (worker never ready)"
                    counts["hang"] += 1
                    failures.append(f"{what}: {_describe(entries, current)}")
                    break
                if line is None or line == "DONE":
                    if line is None and current is not None:
                        proc.wait(timeout=30)
                        counts["crash"] += 1
                        failures.append(f"crash (exit {proc.returncode}): "
                                        f"{_describe(entries, current)}")
                    elif line is None:
                        counts["crash"] += 1
                        failures.append("worker died before reading any file")
                        current = len(entries) - 1
                    break
                kind, _, rest = line.partition(" ")
                if kind == "READY":
                    timeout = FILE_TIMEOUT
                elif kind == "S":
                    current = int(rest)
                elif kind == "R":
                    i, _, result = rest.partition(" ")
                    outcome = result.split(" ", 1)[0]
                    counts[outcome] += 1
                    if outcome not in ("clean", "valid"):
                        failures.append(f"{result}: {_describe(entries, int(i))}")
                    current = None
        finally:
            if proc.poll() is None:
                proc.kill()  # only this worker, by its own handle
            proc.wait(timeout=30)
        if current is None:
            break  # the worker finished (DONE) or died between files
        start = current + 1
    return counts, failures


def _describe(entries: list[tuple[str, str, str]], i: int | None) -> str:
    return "?" if i is None else f"{entries[i][1]} ({entries[i][2]})"


# ------------------------------------------------------------------------ worker checks
def _unused_ids(taken: Callable[[int], bool], count: int) -> list[int]:
    out, i = [], 10**15
    while len(out) < count:
        if not taken(i):
            out.append(i)
        i += 1
    return out


def check_hnsw(path: str | None) -> None:
    """Load, search (plain, batch, filtered), insert, delete, save and reload; ``_check``."""
    if path is None:  # warm-up
        index = HNSW(4, M=4, seed=0)
        index.add_items(np.eye(4), [0, 1, 2, 3])
        index.search(np.ones(4, np.float32), 2)
        return
    index = HNSW.load(path, mmap=path.endswith("1.llmds"))
    index._check()
    rng = np.random.default_rng(0)
    dim = index.dim
    queries = rng.standard_normal((4, dim)).astype(np.float32)
    for q in queries:
        found = index.search(q, 5)
        assert all(i in index for i, _ in found) and len(found) == min(5, len(index))
    ids, _ = index.search_batch(queries, 3, ef=20)
    assert all(i == -1 or i in index for i in ids.ravel().tolist())
    index.search(queries[0], 3, filter=np.arange(0, 100, 2))
    index.search(queries[0], 3, filter=np.ones(50, dtype=bool))
    index.add_items(rng.standard_normal((5, dim)), _unused_ids(index.__contains__, 5))
    if len(index):
        index.mark_deleted(next(iter(index._id_to_slot)))
    index.search(queries[1], 5)
    index._check()
    out = Path(path).with_suffix(".again")
    index.save(out)
    HNSW.load(out, mmap=True)._check()


def check_pipeline(path: str | None) -> None:
    """Load, search every way, add and delete a document, save and reload; ``_check``."""
    if path is None:
        p = RetrievalPipeline(embedding_dim=4, brute_force_max=0)
        p.add_documents([1, 2], ["red", "green"], np.eye(4)[:2])
        p.search("red", np.ones(4))
        return
    p = RetrievalPipeline.load(path, embedder=None)  # a saved identity needs no model here
    p._check()
    rng = np.random.default_rng(0)
    dim = p.embedding_dim
    for w in (0.0, 0.5, 1.0):
        for fusion in ("weighted", "rrf"):
            p.search("red apple kiwi", rng.standard_normal(dim), top_k=5, fusion_weight=w,
                     fusion=fusion)
    p.search("kiwi")
    fields = p.stats()["metadata_fields"]
    if fields:
        p.search("red", top_k=3, filter={"$or": [{fields[0]: {"$gte": 3}},
                                                   {fields[-1]: {"$in": ["red", 1]}}]})
        p.search_batch(["red", "kiwi"], top_k=3, filter={"$not": {fields[0]: "red"}})
    new_id: Any = (f"new{len(p)}" if p.id_kind == "str"
                   else _unused_ids(p.__contains__, 1)[0])
    p.add_document(new_id, "red kiwi", rng.standard_normal(dim), {"c": "red"})
    live = [d for d in p._docs.state()["ids"] if p.has_embedding(d)]
    p.get_document(live[0] if live else new_id)
    if live:
        p.delete_document(live[0])
    p._check()
    out = Path(path).parent / (Path(path).name + "-again")
    p.save(out)
    RetrievalPipeline.load(out, embedder=None)._check()


# --------------------------------------------------------------------------- mutations
_INTS = (-(2**31), -2, -1, 0, 1, 2, 3, 7, 63, 64, 65, 2**31 - 1)
_FLOATS = (math.nan, math.inf, -math.inf, 0.0, 1e30, 3.4e38, -1e-45, 1.0)
_JSON = (None, True, False, -1, 0, 1, 2, 10**12, 2**70, -(2**70), 1.5, math.nan, math.inf,
         "x", "", [], {}, [1, 2], {"a": 1})


def _int_value(rng: np.random.Generator, n: int, m: int, arr: np.ndarray) -> int:
    pool = [*_INTS, n - 1, n, n + 1, m, m + 1, 2 * m, 2 * m + 1]
    if arr.size:
        pool.append(int(arr.flat[rng.integers(arr.size)]))  # an existing value elsewhere
    if n > 0:
        pool += [int(rng.integers(n))] * 4  # in-range slots: the subtle cases
    value = int(pool[rng.integers(len(pool))])
    info = np.iinfo(arr.dtype)
    return min(max(value, int(info.min)), int(info.max))


def _mutate_array(rng: np.random.Generator, a: dict[str, np.ndarray], n: int, m: int) -> str:
    name = str(rng.choice(sorted(a)))
    arr = a[name]
    op = int(rng.integers(10))
    if op <= 5 and arr.size:  # poke values
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(arr.size))
            if arr.dtype.kind == "f":
                arr.flat[pos] = _FLOATS[rng.integers(len(_FLOATS))]
            else:
                arr.flat[pos] = _int_value(rng, n, m, arr)
        return f"poke {name}"
    if op == 6 and arr.ndim == 2 and arr.shape[0] > 1:  # copy one row over another
        i, j = rng.integers(arr.shape[0], size=2)
        arr[i] = arr[j]
        return f"copy row of {name}"
    if op == 7:  # one row more or fewer
        a[name] = arr[:-1].copy() if arr.shape[0] and rng.random() < 0.5 else np.concatenate(
            [arr, arr[:1] if arr.shape[0] else np.zeros((1, *arr.shape[1:]), arr.dtype)])
        return f"resize {name}"
    if op == 8:  # another dtype, or another number of dimensions
        if rng.random() < 0.5:
            with np.errstate(invalid="ignore"):  # NaN to int is the point here
                a[name] = arr.astype(np.float64 if arr.dtype.kind != "f" else np.int32)
        else:
            a[name] = arr.reshape(-1) if arr.ndim == 2 else arr.reshape(-1, 1)
        return f"retype {name}"
    if rng.random() < 0.5:
        del a[name]
        return f"drop {name}"
    a["extra"] = np.zeros(3, np.int32)
    return "extra array"


def _mutate_meta(rng: np.random.Generator, meta: dict[str, Any], n: int) -> str:
    op = int(rng.integers(8))
    if op <= 2:  # plausible ints for the graph facts
        key = str(rng.choice(["entry_point", "max_level", "num_slots", "upper_rows"]))
        meta[key] = int(rng.choice([-2, -1, 0, 1, 2, 3, 64, 65, n - 1, n, n + 1]))
        return f"meta {key}={meta[key]}"
    if op <= 4:  # parameters: hostile or benign
        params = meta.get("params")
        if not isinstance(params, dict) or not params:
            return "params gone"
        key = str(rng.choice(sorted(params)))
        benign = {"dim": [1, 5, 1000], "M": [2, 3, 5], "ef_construction": [1, 7],
                  "ef_search": [1, 7, 10**6], "ml": [0.1, 2.0], "seed": [None, 0, 5],
                  "metric": ["l2", "ip", "cosine"]}.get(key, [])
        pool = [*_JSON, *benign, *benign]
        params[key] = copy.deepcopy(pool[rng.integers(len(pool))])
        return f"param {key}={params[key]!r}"
    if op == 5:  # the RNG state
        state = meta.get("rng_state")
        if isinstance(state, dict) and isinstance(state.get("state"), dict):
            target = state["state"] if rng.random() < 0.6 else state
            key = str(rng.choice(sorted(target)))
            target[key] = copy.deepcopy(_JSON[rng.integers(len(_JSON))])
            return f"rng {key}"
        return "rng gone"
    if op == 6:  # any value of any type
        key = str(rng.choice(sorted(meta)))
        meta[key] = copy.deepcopy(_JSON[rng.integers(len(_JSON))])
        return f"meta {key} type"
    key = str(rng.choice(sorted(meta)))  # a flipped or missing key
    value = meta.pop(key)
    if rng.random() < 0.5:
        meta[key[:-1] + chr(ord(key[-1]) ^ 1)] = value
    return f"key {key}"


def mutate_hnsw(path: Path, rng: np.random.Generator) -> str:
    """Mutate a saved HNSW file in place, checksums recomputed; return what changed."""
    doc, arrays = read_raw(path)
    n = int(doc["meta"]["num_slots"])
    m = int(doc["meta"]["params"]["M"])
    notes = []
    for _ in range(int(rng.integers(1, 3))):
        if rng.random() < 0.6:
            notes.append(_mutate_array(rng, arrays, n, m))
        else:
            notes.append(_mutate_meta(rng, doc["meta"], n))
    write_raw(path, doc, arrays)
    return "; ".join(notes)


def mutate_pipeline(folder: Path, rng: np.random.Generator) -> str:
    """Mutate a saved pipeline bundle in place (manifest, ids or dense part), sums fixed."""
    what = int(rng.integers(6))
    note = ""
    if what == 0:  # a pipeline parameter: hostile or benign
        benign = {"fusion": ["rrf"], "lexical_depth": [1, 3], "dense_depth": [1, 2],
                  "hot_threshold": [1, 9], "cache_budget": [0, 5], "brute_force_max": [0, 99],
                  "decay_every": [None, 2], "rrf_k": [0, 3], "seed": [None, 1]}

        def change(meta: dict[str, Any]) -> None:
            nonlocal note
            key = str(rng.choice(sorted(meta["params"])))
            pool = [*_JSON, *benign.get(key, []) * 3]
            meta["params"][key] = copy.deepcopy(pool[rng.integers(len(pool))])
            note = f"param {key}={meta['params'][key]!r}"
        refresh_manifest(folder, change)
    elif what == 1:  # counts or structure of the manifest
        def change(meta: dict[str, Any]) -> None:
            nonlocal note
            note = _mutate_meta(rng, meta, int(meta.get("num_vectors", 0)))
        refresh_manifest(folder, change)
    elif what == 2:  # the docs part's vector rows, ids and keys
        docs_path = part_path(folder, "docs")
        doc, arrays = read_raw(docs_path)
        small = {k: arrays.pop(k) for k in [k for k in arrays if k in (
            "vector_slots", "keys", "ids", "id_offsets")]}
        note = "docs: " + _mutate_array(rng, small, arrays["text_offsets"].shape[0] - 1, 4)
        arrays.update(small)
        write_raw(docs_path, doc, arrays)
        refresh_manifest(folder)
    elif what == 3:  # the graph
        note = "dense: " + mutate_hnsw(part_path(folder, "dense"), rng)
        refresh_manifest(folder)
    elif what == 4:  # the documents: keys, ids, texts, metadata, vector slots
        docs_path = part_path(folder, "docs")
        doc, arrays = read_raw(docs_path)
        note = "docs: " + _mutate_array(rng, arrays, arrays["keys"].shape[0], 4)
        write_raw(docs_path, doc, arrays)
        refresh_manifest(folder)
    else:  # the documents' header, or the metadata bytes as text
        docs_path = part_path(folder, "docs")
        doc, arrays = read_raw(docs_path)
        if rng.random() < 0.5:
            key = str(rng.choice(["id_kind", "next_key"]))
            doc["meta"][key] = copy.deepcopy(_JSON[rng.integers(len(_JSON))])
            note = f"docs meta {key}={doc['meta'][key]!r}"
        else:
            text = arrays["meta_bytes"].tobytes()
            junk = [b"{", b"}", b"[", b'"$x"', b"1e999", b"NaN", rb"\ud800", b"\xff", b":"]
            pos = int(rng.integers(len(text) + 1))
            text = text[:pos] + junk[rng.integers(len(junk))] + text[pos:]
            arrays["meta_bytes"] = np.frombuffer(text, dtype=np.uint8).copy()
            arrays["meta_offsets"][-1] = len(text)
            note = "docs metadata bytes"
        write_raw(docs_path, doc, arrays)
        refresh_manifest(folder)
    return note


# ------------------------------------------------------------------------------ test
def _base_hnsw(metric: str, n: int, seed: int) -> HNSW:
    rng = np.random.default_rng(seed)
    index = HNSW(4, M=4, ef_construction=16, seed=seed, metric=metric)
    if n:
        index.add_items(rng.standard_normal((n, 4)), np.arange(n) * 3)
        for i in rng.choice(n, 4, replace=False):
            index.mark_deleted(int(i) * 3)
    return index


def _base_pipeline(str_ids: bool = False) -> RetrievalPipeline:
    rng = np.random.default_rng(1)
    words = ["red", "green", "apple", "kiwi", "car"]
    p = RetrievalPipeline(embedding_dim=4, seed=1, brute_force_max=5)
    n = 30
    texts = [f"{words[i % 5]} {words[(i * 2 + 1) % 5]}" for i in range(n)]
    embs = [v if i % 6 else None for i, v in enumerate(rng.standard_normal((n, 4)))]
    metas = [{"c": words[i % 3], "n": i, "x": [i]} if i % 4 else None for i in range(n)]
    ids: list = [f"d{i}" for i in range(n)] if str_ids else [i - 10 for i in range(n)]
    p.add_documents(ids, texts, embs, metas)
    p.delete_document(ids[7])
    p.delete_document(ids[14])
    return p


@pytest.mark.slow
def test_fuzz_hnsw_and_pipeline_files(tmp_path):
    rng = np.random.default_rng(20240531)
    entries: list[tuple[str, str, str]] = []
    bases = [("l2", 60), ("ip", 60), ("cosine", 60), ("l2", 0), ("l2", 300)]
    per_base = {60: 450, 0: 60, 300: 150}
    for b, (metric, n) in enumerate(bases):
        base = tmp_path / f"base{b}.llmds"
        _base_hnsw(metric, n, seed=b).save(base)
        data = base.read_bytes()
        for j in range(per_base[n]):
            path = tmp_path / f"h{b}-{j}.llmds"
            path.write_bytes(data)
            entries.append(("tests.test_fuzz_files:check_hnsw", str(path),
                            f"{metric} n={n}: {mutate_hnsw(path, rng)}"))
    pipes = [_base_pipeline(), _base_pipeline(str_ids=True)]
    for j in range(500):
        folder = tmp_path / f"p{j}"
        pipe = pipes[j % 2]
        pipe.save(folder)
        entries.append(("tests.test_fuzz_files:check_pipeline", str(folder),
                        mutate_pipeline(folder, rng)))
    # the unmutated files must load as valid indexes
    entries.append(("tests.test_fuzz_files:check_hnsw", str(tmp_path / "base0.llmds"), "base"))
    for b, pipe in enumerate(pipes):
        pipe.save(tmp_path / f"pbase{b}")
        entries.append(("tests.test_fuzz_files:check_pipeline", str(tmp_path / f"pbase{b}"),
                        "base"))
    counts, failures = run_files(entries, tmp_path, warm=(
        "tests.test_fuzz_files:check_hnsw", "tests.test_fuzz_files:check_pipeline"))
    summary = {"files": len(entries), **{k: counts[k] for k in (
        "clean", "valid", "crash", "hang", "check-failed", "error")}}
    print("fuzz:", json.dumps(summary))
    assert not failures, "\n".join(failures[:20])
    assert counts["clean"] + counts["valid"] == len(entries)
    assert counts["valid"] >= 20 and counts["clean"] >= len(entries) // 3


@pytest.mark.slow
def test_run_files_reports_crashes_and_hangs(tmp_path):
    """The harness itself: a segfault, a hang and a wrong check are caught, not hidden."""
    entries = [("tests.test_fuzz_files:_probe", str(tmp_path / name), name)
               for name in ("ok", "corrupt", "crash", "hang", "ok", "assert")]
    global FILE_TIMEOUT
    saved, FILE_TIMEOUT = FILE_TIMEOUT, 3.0
    try:
        counts, failures = run_files(entries, tmp_path)
    finally:
        FILE_TIMEOUT = saved
    assert counts == Counter({"valid": 2, "clean": 1, "crash": 1, "hang": 1,
                              "check-failed": 1}), failures
    assert len(failures) == 3


def _probe(path: str | None) -> None:
    name = Path(path or "").name
    if name == "corrupt":
        raise CorruptFileError("bad")
    if name == "crash":
        import ctypes
        ctypes.string_at(0)  # SIGSEGV
    if name == "hang":
        import time
        time.sleep(60)
    assert name != "assert", "invariant"
