"""The container format and bundles (llmds._persist): round trips and hostile files."""

import json
import os
import struct
import threading
import zlib

import numpy as np
import pytest

from llmds._persist import (
    MAGIC,
    atomic_file,
    read_bundle,
    read_container,
    write_bundle,
    write_container,
)
from llmds.errors import CorruptFileError

KIND = "llmds.Test"


def sample(tmp_path, **arrays):
    arrays = arrays or {"a": np.arange(10, dtype=np.int64),
                        "b": np.ones((3, 4), dtype=np.float32),
                        "empty": np.zeros(0, dtype=np.uint8)}
    path = tmp_path / "x.llmds"
    size = write_container(path, KIND, 3, {"n": 10, "name": "x"}, arrays)
    assert size == path.stat().st_size
    return path, arrays


@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(tmp_path, mmap):
    path, arrays = sample(tmp_path)
    c = read_container(path, KIND, {3}, mmap=mmap)
    assert c.kind == KIND and c.version == 3 and c.meta == {"n": 10, "name": "x"}
    for name, arr in arrays.items():
        assert c.arrays[name].dtype == arr.dtype and np.array_equal(c.arrays[name], arr)
    assert c.array("a", "int64", 1) is c.arrays["a"]
    with pytest.raises(CorruptFileError, match="'b' is float32 with 2"):
        c.array("b", "float64", 2)
    with pytest.raises(CorruptFileError, match="'zz' is missing"):
        c.array("zz", "int64", 1)


def test_kind_and_version_are_checked(tmp_path):
    path, _ = sample(tmp_path)
    with pytest.raises(CorruptFileError, match=r"holds 'llmds\.Test', not 'llmds\.Other'"):
        read_container(path, "llmds.Other", {3})
    with pytest.raises(CorruptFileError, match="version 3 is not one this llmds reads"):
        read_container(path, KIND, {1, 2})


def test_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CorruptFileError, match="not a regular file"):
        read_container(fifo, KIND, {3})  # must not block
    with pytest.raises(CorruptFileError, match="is a folder"):
        read_container(tmp_path, KIND, {3})
    with pytest.raises(FileNotFoundError):
        read_container(tmp_path / "missing", KIND, {3})
    with pytest.raises(CorruptFileError, match="not a regular file"):
        read_container("/dev/zero", KIND, {3})


def rewrite_header(path, mutate):
    """Re-encode the header after ``mutate(doc)`` with a valid CRC (a hostile file)."""
    data = path.read_bytes()
    (hlen,) = struct.unpack("<I", data[12:16])
    doc = json.loads(data[16 : 16 + hlen])
    mutate(doc)
    header = json.dumps(doc).encode()
    head = MAGIC + struct.pack("<II", 2, len(header)) + header
    head += struct.pack("<I", zlib.crc32(header))
    old_start = -(-(16 + hlen + 4) // 64) * 64
    new_start = -(-len(head) // 64) * 64
    path.write_bytes(head + b"\0" * (new_start - len(head)) + data[old_start:])


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["arrays"][0].update(shape=[2**62, 2**62]), "does not match its size"),
    (lambda d: d["arrays"][0].update(shape=[-1]), "bad shape"),
    (lambda d: d["arrays"][0].update(offset=2**40), "lies outside"),
    (lambda d: d["arrays"][0].update(offset=3), "lies outside"),
    (lambda d: d["arrays"][0].update(dtype="object"), "bad name or dtype"),
    (lambda d: d["arrays"][0].update(dtype="<U8"), "bad name or dtype"),
    (lambda d: d["arrays"][0].update(nbytes="80"), "bad offset"),
    (lambda d: d["arrays"].append(dict(d["arrays"][0])), "duplicate array names"),
    (lambda d: d.update(meta=[]), "meta or arrays missing"),
    (lambda d: d.update(arrays=None), "meta or arrays missing"),
    (lambda d: d["meta"].update(deep=json.loads("[" * 40 + "]" * 40)), "too deep"),
    (lambda d: d["arrays"][0].update(crc32=1), "checksum mismatch"),
])
def test_hostile_headers_with_valid_crc(tmp_path, mutate, match):
    path, _ = sample(tmp_path)
    rewrite_header(path, mutate)
    with pytest.raises(CorruptFileError, match=match):
        read_container(path, KIND, {3})


def test_header_of_the_wrong_json_shape(tmp_path):
    path, _ = sample(tmp_path)
    for header in (b"[]", b"1e999999", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"):
        head = MAGIC + struct.pack("<II", 2, len(header)) + header
        path.write_bytes(head + struct.pack("<I", zlib.crc32(header)))
        with pytest.raises(CorruptFileError, match="malformed header"):
            read_container(path, KIND, {3})


def test_truncated_and_flipped_bytes(tmp_path):
    path, _ = sample(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "bad"
    for cut in (0, 7, 15, 16, 30, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError):
            read_container(bad, KIND, {3})
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(data), 60, replace=False).tolist():
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            c = read_container(bad, KIND, {3})
        except CorruptFileError:
            continue
        # only padding bytes may change without notice
        assert c.meta == {"n": 10, "name": "x"}
        assert np.array_equal(c.arrays["a"], np.arange(10))


def test_huge_header_length_is_refused_without_reading(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(MAGIC + struct.pack("<II", 2, 2**32 - 1) + b"{}")
    with pytest.raises(CorruptFileError, match="impossible"):
        read_container(path, KIND, {3})


def test_atomic_save_over_a_mapped_file(tmp_path):
    path, _ = sample(tmp_path)
    mapped = read_container(path, KIND, {3}, mmap=True)
    write_container(path, KIND, 3, {"n": 2}, {"a": np.full(2, 7, dtype=np.int64)})
    assert mapped.arrays["a"].tolist() == list(range(10))  # the old inode lives on
    assert read_container(path, KIND, {3}).arrays["a"].tolist() == [7, 7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.llmds"]  # no temp files left


def test_failed_write_leaves_the_old_file(tmp_path):
    path, _ = sample(tmp_path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="unsupported dtype"):
        write_container(path, KIND, 3, {}, {"o": np.array([object()])})
    with pytest.raises(ValueError):
        write_container(path, KIND, 3, {"x": float("nan")}, {})
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.llmds"]
    with pytest.raises(IsADirectoryError):
        write_container(tmp_path, KIND, 3, {}, {})


def part_writer(value):
    return lambda p: write_container(p, "llmds.Part", 1, {"v": value}, {})


def test_bundle_round_trip_and_replacement(tmp_path):
    folder = tmp_path / "b"
    write_bundle(folder, "llmds.B", 1, {"n": 1}, {"x": part_writer(1), "y": part_writer(2)})
    manifest, paths = read_bundle(folder, "llmds.B", {1}, {"x", "y"})
    assert manifest.meta["n"] == 1
    assert read_container(paths["y"], "llmds.Part", {1}).meta == {"v": 2}
    write_bundle(folder, "llmds.B", 1, {"n": 2}, {"x": part_writer(3), "y": part_writer(4)})
    manifest, paths = read_bundle(folder, "llmds.B", {1}, {"x", "y"})
    assert manifest.meta["n"] == 2
    assert read_container(paths["x"], "llmds.Part", {1}).meta == {"v": 3}
    assert len(list(folder.iterdir())) == 3  # the manifest and the two new parts


def test_bundle_errors(tmp_path):
    folder = tmp_path / "b"
    with pytest.raises(FileNotFoundError, match=r"no saved llmds\.B"):
        read_bundle(folder, "llmds.B", {1}, {"x"})
    write_bundle(folder, "llmds.B", 1, {}, {"x": part_writer(1)})
    with pytest.raises(CorruptFileError, match="must name the parts"):
        read_bundle(folder, "llmds.B", {1}, {"x", "y"})
    (part,) = [p for p in folder.iterdir() if p.name.startswith("x-")]
    part.write_bytes(part.read_bytes() + b"!")
    with pytest.raises(CorruptFileError, match="does not match its checksum"):
        read_bundle(folder, "llmds.B", {1}, {"x"})
    part.unlink()
    with pytest.raises(CorruptFileError, match="is missing"):
        read_bundle(folder, "llmds.B", {1}, {"x"})
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(NotADirectoryError):
        write_bundle(file, "llmds.B", 1, {}, {})
    with pytest.raises(CorruptFileError, match="not a folder"):
        read_bundle(file, "llmds.B", {1}, {"x"})


def test_bundle_manifest_cannot_point_outside(tmp_path):
    folder = tmp_path / "b"
    write_bundle(folder, "llmds.B", 1, {}, {"x": part_writer(1)})
    for bad in ("../../etc/passwd", ".hidden.llmds", "x", "/abs.llmds"):
        write_container(folder / "MANIFEST", "llmds.B", 1,
                        {"parts": {"x": {"file": bad, "sha256": "0" * 64}}}, {})
        with pytest.raises(CorruptFileError, match="bad file entry"):
            read_bundle(folder, "llmds.B", {1}, {"x"})


def test_readers_see_old_or_new_bundle_never_a_mix(tmp_path):
    folder = tmp_path / "b"
    write_bundle(folder, "llmds.B", 1, {"n": 0}, {"x": part_writer(0), "y": part_writer(0)})
    errors = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                manifest, paths = read_bundle(folder, "llmds.B", {1}, {"x", "y"})
                vx = read_container(paths["x"], "llmds.Part", {1}).meta["v"]
                vy = read_container(paths["y"], "llmds.Part", {1}).meta["v"]
                if not vx == vy == manifest.meta["n"]:
                    errors.append((vx, vy, manifest.meta["n"]))
            except (FileNotFoundError, CorruptFileError):
                pass  # a part of an older save removed under the reader: a clean error

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(1, 30):
        write_bundle(folder, "llmds.B", 1, {"n": n}, {"x": part_writer(n), "y": part_writer(n)})
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
