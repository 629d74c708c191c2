"""Vectors for the ANN benchmark and tests: Fashion-MNIST from idx files, or a synthetic stand-in.

Fashion-MNIST (ann-benchmarks' ``fashion-mnist-784-euclidean``): the 60,000 training
images are the base set, the 10,000 test images the queries; raw 0..255 pixels as
float32, squared-L2 distance. The data is read from the datasets folder
(``ctx.dataset("ann", "fashion-mnist")``), never copied. Exact ground truth is computed
with NumPy in float64 blocks and cached under ``cache_dir`` (outside the repository),
keyed by a hash of the vectors.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["AnnData", "clustered_gaussians", "exact_knn", "ground_truth", "load_ann",
           "load_fashion_mnist", "read_idx"]

_TRAIN = "train-images-idx3-ubyte.gz"
_TEST = "t10k-images-idx3-ubyte.gz"


@dataclass(frozen=True)
class AnnData:
    """Base vectors, queries, exact neighbours (``gt``, nearest first) and where they came from."""

    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    gt: npt.NDArray[np.int64]
    source: str


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """Read an (optionally gzipped) idx file of unsigned bytes into an array of its shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} bytes of data, "
                         f"found {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(tuple(dims))


def load_fashion_mnist(folder: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(base 60000x784, queries 10000x784) float32 pixels from ``folder``'s idx.gz files."""
    folder = Path(folder)
    for name in (_TRAIN, _TEST):
        if not (folder / name).exists():
            raise FileNotFoundError(f"Fashion-MNIST file {name} not found in {folder}")
    base = read_idx(folder / _TRAIN)
    queries = read_idx(folder / _TEST)
    return (base.reshape(base.shape[0], -1).astype(np.float32),
            queries.reshape(queries.shape[0], -1).astype(np.float32))


def clustered_gaussians(n_base: int, n_query: int, dim: int = 784, clusters: int = 100,
                        seed: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Seeded synthetic stand-in: points around ``clusters`` Gaussian centres (base, queries)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, size=(clusters, dim)).astype(np.float32)

    def draw(n: int) -> npt.NDArray[np.float32]:
        which = rng.integers(0, clusters, size=n)
        return (centres[which] + rng.normal(0.0, 4.0, size=(n, dim))).astype(np.float32)

    return draw(n_base), draw(n_query)


def exact_knn(base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int,
              block: int = 512) -> npt.NDArray[np.int64]:
    """Exact squared-L2 k nearest neighbours (ties by index), in float64 blocks of queries."""
    b64 = base.astype(np.float64)
    bn = (b64 * b64).sum(1)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        q = queries[start : start + block].astype(np.float64)
        d = bn[None, :] - 2.0 * (q @ b64.T) + (q * q).sum(1)[:, None]
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, pd), axis=1)
        out[start : start + block] = np.take_along_axis(part, order, axis=1)
    return out


def ground_truth(base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int,
                 cache_dir: Path | None) -> npt.NDArray[np.int64]:
    """``exact_knn``, cached as ``cache_dir/ann_gt_<hash>.npy`` when ``cache_dir`` is given."""
    if cache_dir is None:
        return exact_knn(base, queries, k)
    h = hashlib.sha256()
    for arr in (base, queries):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    path = Path(cache_dir) / f"ann_gt_{h.hexdigest()[:20]}_k{k}.npy"
    if path.exists():
        try:
            gt = np.load(path, allow_pickle=False)
            if gt.shape == (queries.shape[0], k):
                return gt
        except (OSError, ValueError):
            pass
    gt = exact_knn(base, queries, k)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, gt, allow_pickle=False)
    tmp.replace(path)
    return gt


def load_ann(folder: Path | None, n_base: int, n_query: int, k: int = 10,
             cache_dir: Path | None = None, seed: int = 0) -> AnnData:
    """First ``n_base`` / ``n_query`` Fashion-MNIST vectors (or synthetic ones) + ground truth."""
    if folder is not None and (Path(folder) / _TRAIN).exists():
        base, queries = load_fashion_mnist(Path(folder))
        base, queries = base[:n_base], queries[:n_query]
        source = f"{folder} (Fashion-MNIST, {base.shape[0]} base, {queries.shape[0]} queries)"
    else:
        base, queries = clustered_gaussians(n_base, n_query, seed=seed)
        source = (f"synthetic clustered Gaussians, seed {seed} ({n_base} base, {n_query} "
                  "queries, 784 dims): Fashion-MNIST not found")
    base = np.ascontiguousarray(base)
    queries = np.ascontiguousarray(queries)
    return AnnData(base, queries, ground_truth(base, queries, k, cache_dir), source)
