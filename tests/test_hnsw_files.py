"""HNSW files: round trips, atomic saves over mapped files, and hand-made hostile files
(valid checksums, broken structure) that must raise CorruptFileError naming the fault."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmds.errors import CorruptFileError
from llmds.hnsw import HNSW
from tests.hnsw_files import read_raw, write_raw


def build(metric: str = "l2", n: int = 80, dim: int = 4, seed: int = 3) -> HNSW:
    """A small graph with upper layers (M=4) and two deleted slots."""
    rng = np.random.default_rng(seed)
    index = HNSW(dim, M=4, ef_construction=16, seed=seed, metric=metric)
    index.add_items(rng.standard_normal((n, dim)).astype(np.float32), np.arange(n))
    index.mark_deleted(5)
    index.mark_deleted(17)
    return index


def results(index: HNSW, q: np.ndarray) -> tuple:
    ids, d = index.search_batch(q, 5)
    return ids.tolist(), d.tolist()


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip_each_metric(tmp_path, metric, mmap):
    index = build(metric)
    path = tmp_path / "g.llmds"
    size = index.save(path)
    assert size == path.stat().st_size and path.is_file()
    loaded = HNSW.load(path, mmap=mmap)
    loaded._check()
    q = np.random.default_rng(9).standard_normal((6, 4)).astype(np.float32)
    assert results(loaded, q) == results(index, q)
    assert loaded.stats() == index.stats() | {"capacity": loaded.capacity,
                                              "memory_bytes": loaded.stats()["memory_bytes"]}
    # the RNG state travels: both continue with the same levels and links
    more = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    index.add_items(more, np.arange(200, 240))
    loaded.add_items(more, np.arange(200, 240))
    loaded._check()
    assert np.array_equal(index._links0[: index._num_slots], loaded._links0[: loaded._num_slots])
    assert results(loaded, q) == results(index, q)


def test_empty_index_round_trip(tmp_path):
    HNSW(3, seed=1).save(tmp_path / "e")
    loaded = HNSW.load(tmp_path / "e")
    loaded._check()
    assert len(loaded) == 0 and loaded.search(np.zeros(3, np.float32), 2) == []
    loaded.add(np.ones(3), 4)
    assert loaded.search(np.zeros(3), 1) == [(4, 3.0)]


@pytest.mark.parametrize("mmap", [False, True])
def test_saving_over_a_loaded_file_is_safe(tmp_path, mmap):
    """Today's folder format truncated vectors.npy under a mapped index; the container is
    replaced by rename, so a mapped index keeps reading the old file's pages."""
    path = tmp_path / "g.llmds"
    index = build()
    index.save(path)
    mapped = HNSW.load(path, mmap=mmap)
    q = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    before = results(mapped, q)
    index.add_items(np.random.default_rng(4).standard_normal((300, 4)).astype(np.float32),
                    np.arange(1000, 1300))
    index.save(path)  # over the mapped file
    assert results(mapped, q) == before
    mapped._check()
    reloaded = HNSW.load(path, mmap=mmap)
    assert results(reloaded, q) == results(index, q) and len(reloaded) == len(index)
    # the mapped index itself can change and save over its own file
    mapped.add(np.ones(4), 7777)  # reuses a deleted slot: writes into the mapping
    mapped.add_items(np.zeros((50, 4)), np.arange(5000, 5050))  # grows: copies
    mapped.save(path)
    again = HNSW.load(path)
    again._check()
    assert results(again, q) == results(mapped, q) and 7777 in again
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_old_folder_format_and_odd_paths(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "header.json").write_text(json.dumps({"format": "llmds.hnsw", "version": 1}))
    with pytest.raises(CorruptFileError, match=r"llmds 0\.2"):
        HNSW.load(old)
    with pytest.raises(CorruptFileError, match="folder"):
        HNSW.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        HNSW.load(tmp_path / "missing")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CorruptFileError, match="not a regular file"):
        HNSW.load(fifo)  # must not block
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        HNSW.load(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mmap must be a bool"):
        HNSW.load(tmp_path / "x", mmap="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path must be"):
        build().save(3)  # type: ignore[arg-type]
    with pytest.raises(IsADirectoryError):
        build().save(old)
    raw = tmp_path / "junk"
    raw.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    with pytest.raises(CorruptFileError, match="bad magic"):
        HNSW.load(raw)


# --------------------------------------------------------------------- hostile files
def _node(arrays: dict, min_level: int = 0, min_links: int = 1) -> int:
    """A live slot with at least ``min_level`` levels and ``min_links`` layer-0 links."""
    ok = (arrays["levels"] >= min_level) & (arrays["links0"][:, 0] >= min_links) & (
        arrays["deleted"] == 0)
    return int(np.flatnonzero(ok)[0])


def _upper_row(a: dict) -> int:
    s = _node(a, min_level=1)
    return int(a["upper_start"][s])


def _set(arrays: dict, name: str, index, value) -> None:  # type: ignore[no-untyped-def]
    arrays[name][index] = value


def _two_upper_nodes(a: dict) -> tuple[int, int]:
    up = np.flatnonzero(a["levels"] > 0)
    return int(up[0]), int(up[1])


def _link_to_level0(a: dict) -> None:
    r = _upper_row(a)
    low = int(np.flatnonzero(a["levels"] == 0)[0])
    a["upper_links"][r, 0] = max(a["upper_links"][r, 0], 1)
    a["upper_links"][r, 1] = low


def _duplicate_link(a: dict) -> None:
    s = _node(a, min_links=2)
    a["links0"][s, 2] = a["links0"][s, 1]


def _overlap(a: dict) -> None:
    s, t = _two_upper_nodes(a)
    a["upper_start"][t] = a["upper_start"][s]


def _level_above_rows(a: dict) -> None:
    a["levels"][_node(a, min_level=1)] += 5


def _entry_low(doc: dict, a: dict) -> None:
    doc["meta"]["entry_point"] = int(np.flatnonzero(a["levels"] == 0)[0])


def _dup_label(a: dict) -> None:
    live = np.flatnonzero(a["deleted"] == 0)
    a["labels"][live[1]] = a["labels"][live[0]]


def _meta(**changes):  # type: ignore[no-untyped-def]
    def fn(doc: dict, a: dict) -> None:
        doc["meta"].update(changes)
    return fn


def _param(**changes):  # type: ignore[no-untyped-def]
    def fn(doc: dict, a: dict) -> None:
        doc["meta"]["params"].update(changes)
    return fn


def _rng(change):  # type: ignore[no-untyped-def]
    def fn(doc: dict, a: dict) -> None:
        change(doc["meta"]["rng_state"])
    return fn


def _arr(change):  # type: ignore[no-untyped-def]
    def fn(doc: dict, a: dict) -> None:
        change(a)
    return fn


HOSTILE = {
    # graph structure (what used to segfault, hang or load into a broken state)
    "top_level_above_entry": (_meta(max_level=3), "entry point"),
    "entry_out_of_range": (_meta(entry_point=10**6), "entry_point must be"),
    "entry_not_top_level": (_entry_low, "entry point"),
    "empty_graph_entry": (_meta(entry_point=-1), "entry point"),
    "nan_vector": (_arr(lambda a: _set(a, "vectors", (3, 1), np.nan)), "NaN or inf"),
    "inf_vector": (_arr(lambda a: _set(a, "vectors", (3, 0), -np.inf)), "NaN or inf"),
    "self_link": (_arr(lambda a: _set(a, "links0", (_node(a), 1), _node(a))), "self-link"),
    "count_over_capacity": (_arr(lambda a: _set(a, "links0", (0, 0), 9)), "link counts"),
    "negative_count": (_arr(lambda a: _set(a, "links0", (0, 0), -1)), "link counts"),
    "link_out_of_range": (_arr(lambda a: _set(a, "links0", (_node(a), 1), 80)), "links must"),
    "negative_link": (_arr(lambda a: _set(a, "links0", (_node(a), 1), -7)), "links must"),
    "duplicate_link": (_arr(_duplicate_link), "repeats a link"),
    "upper_link_to_level0_node": (_arr(_link_to_level0), "lacks the layer"),
    "upper_count_over_capacity": (_arr(lambda a: _set(a, "upper_links", (_upper_row(a), 0), 5)),
                                  "link counts"),
    "negative_level": (_arr(lambda a: _set(a, "levels", 0, -1)), "levels must"),
    "huge_level": (_arr(lambda a: _set(a, "levels", 0, 10**6)), "levels must"),
    "level_beyond_rows": (_arr(_level_above_rows), "upper_start|entry point"),
    "overlapping_rows": (_arr(_overlap), "overlapping"),
    "rows_outside": (_arr(lambda a: _set(a, "upper_start", _node(a, 1), 10**6)), "inside"),
    "level0_with_rows": (_arr(lambda a: _set(
        a, "upper_start", int(np.flatnonzero(a["levels"] == 0)[0]), 0)), "-1 for nodes"),
    "deleted_not_bool": (_arr(lambda a: _set(a, "deleted", 0, 2)), "deleted must"),
    "label_padding": (_arr(lambda a: _set(a, "labels", 0, -1)), "labels must be >= 0"),
    "duplicate_live_label": (_arr(_dup_label), "repeat a live id"),
    "free_missing_slot": (_arr(lambda a: a.update(free=a["free"][:1])), "free must"),
    "free_live_slot": (_arr(lambda a: _set(a, "free", 0, 0)), "free must"),
    # counts and shapes
    "num_slots": (_meta(num_slots=81), "shape"),
    "upper_rows": (_meta(upper_rows=0), "shape"),
    "negative_num_slots": (_meta(num_slots=-1), "num_slots must"),
    "vectors_shape": (_arr(lambda a: a.update(vectors=a["vectors"][:, :3].copy())), "shape"),
    "links_dtype": (_arr(lambda a: a.update(links0=a["links0"].astype(np.int64))), "int64"),
    "missing_array": (_arr(lambda a: a.pop("labels")), "missing"),
    # parameters and header
    "dim_1e12": (_param(dim=10**12), "dim must be"),
    "dim_str": (_param(dim="4"), "dim must be an int"),
    "M_1": (_param(M=1), "M must be"),
    "ml_nan": (_param(ml=math.nan), "ml must be"),
    "ml_negative": (_param(ml=-1.0), "ml must be"),
    "ef_search_0": (_param(ef_search=0), "ef_search must be"),
    "metric": (_param(metric="hamming"), "metric must be"),
    "seed_negative": (_param(seed=-1), "seed must be"),
    "params_list": (_meta(params=[]), "params must hold"),
    "flipped_param_key": (lambda d, a: d["meta"]["params"].update(Dim=d["meta"]["params"].pop(
        "dim")), "params must hold"),
    "flipped_meta_key": (lambda d, a: d["meta"].update(entry_poinu=d["meta"].pop(
        "entry_point")), "header must hold"),
    "meta_bool_count": (_meta(num_slots=True), "num_slots must"),
    "kind": (lambda d, a: d.update(kind="llmds.Other"), "holds 'llmds.Other'"),
    "version": (lambda d, a: d.update(version=2), "version 2"),
    # the RNG state (was a NumPy internal error)
    "rng_empty": (_meta(rng_state={}), "rng_state"),
    "rng_string_state": (_rng(lambda r: r["state"].update(state="x")), "rng_state"),
    "rng_even_inc": (_rng(lambda r: r["state"].update(inc=2)), "rng_state"),
    "rng_huge": (_rng(lambda r: r["state"].update(state=2**200)), "rng_state"),
    "rng_other_generator": (_rng(lambda r: r.update(bit_generator="MT19937")), "rng_state"),
    "rng_has_uint32": (_rng(lambda r: r.update(has_uint32=2)), "rng_state"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_raises_corrupt_file_error(tmp_path, name):
    mutate, match = HOSTILE[name]
    path = tmp_path / "g.llmds"
    build().save(path)
    doc, arrays = read_raw(path)
    mutate(doc, arrays)
    write_raw(path, doc, arrays)
    with pytest.raises(CorruptFileError, match=match):
        HNSW.load(path)


def test_cosine_vectors_must_be_unit_length(tmp_path):
    path = tmp_path / "c.llmds"
    build("cosine").save(path)
    doc, arrays = read_raw(path)
    arrays["vectors"][4] *= 3.0
    write_raw(path, doc, arrays)
    with pytest.raises(CorruptFileError, match="unit length"):
        HNSW.load(path)


def test_a_valid_edit_loads_and_passes_check(tmp_path):
    """A file that differs from any saved one but keeps every invariant is accepted."""
    path = tmp_path / "g.llmds"
    build().save(path)
    doc, arrays = read_raw(path)
    s = _node(arrays, min_links=1)
    links = set(arrays["links0"][s, 1 : 1 + arrays["links0"][s, 0]].tolist())
    other = next(t for t in range(80) if t != s and t not in links)
    arrays["links0"][s, 1] = other
    arrays["vectors"][0] = 1e30  # finite: accepted (distances may overflow to inf)
    doc["meta"]["params"]["ef_search"] = 7
    write_raw(path, doc, arrays)
    loaded = HNSW.load(path)
    loaded._check()
    assert loaded.ef_search == 7 and len(loaded.search(np.zeros(4, np.float32), 5)) == 5


def test_nan_vectors_cannot_hang_the_kernels():
    """NaN distances used to make the greedy descent loop forever (fastmath assumed no
    NaN). The graph is poisoned behind the API's back; search must still return."""
    code = textwrap.dedent("""
        import numpy as np
        from llmds.hnsw import HNSW
        rng = np.random.default_rng(0)
        for metric in ("l2", "ip"):
            index = HNSW(8, M=4, seed=0, metric=metric)
            index.add_items(rng.standard_normal((300, 8)).astype(np.float32), np.arange(300))
            index._vectors[:150] = np.nan
            index._vectors[150:] = 3e38
            index.search(rng.standard_normal(8).astype(np.float32), 5)
            index.search_batch(rng.standard_normal((3, 8)).astype(np.float32), 5)
            index.add_items(rng.standard_normal((20, 8)).astype(np.float32), np.arange(500, 520))
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]
