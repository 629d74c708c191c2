"""Timing harness shared by every benchmark. Measures only; ``report.py`` writes prose.

A benchmark module (``llmds/bench/bench_<name>.py``) defines ``NAME``, ``TITLE`` and
``run(ctx: BenchContext) -> dict``. It builds a seeded workload, times llmds and each
peer library on the same workload in the same process with :func:`measure`, and
returns a result record built with :func:`result_record`. The CLI writes the record
to ``<out>/<NAME>.json``; the report generator reads those files.

Timing rules: one untimed warm-up (JIT compile, caches),
then ``repeat`` >= 5 timed runs; each run records wall time (``perf_counter``) and
CPU time of the process (``process_time``). Rates use CPU time because the
machines are shared and noisy; every peer is pinned to one thread, so CPU
seconds compare like with like. Peak RSS and RSS delta come from
:class:`llmds.utils.MemoryProfiler` around the timed runs.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from llmds.utils import MemoryProfiler, compute_percentiles

__all__ = [
    "BenchContext",
    "Measurement",
    "environment",
    "latency_percentiles_ms",
    "measure",
    "measure_interleaved",
    "peer",
    "peer_version",
    "ratio",
    "result_record",
    "skipped",
]

SCHEMA_VERSION = 1


@dataclass
class BenchContext:
    """What a benchmark run gets from the CLI.

    ``quick`` selects the small size used by tests and ``--quick``; ``full`` the
    complete datasets (``--full``; minutes to tens of minutes), the default being a
    size at which the whole suite finishes in a few minutes; ``data_dir``
    is the datasets folder or ``None`` (the benchmark then runs its seeded
    synthetic workload and says so); ``progress(done, total, label)`` drives the
    CLI's progress bar.
    """

    quick: bool = False
    full: bool = False
    repeat: int = 5
    seed: int = 0
    data_dir: Path | None = None
    out_dir: Path | None = None
    progress: Callable[[int, int, str], None] = field(default=lambda done, total, label: None)

    def dataset(self, *parts: str) -> Path | None:
        """Path of ``data_dir/parts...`` if it exists, else ``None``."""
        if self.data_dir is None:
            return None
        path = self.data_dir.joinpath(*parts)
        return path if path.exists() else None

    @property
    def cache_dir(self) -> Path:
        """Where benchmarks keep derived data (ground truth, embeddings); outside the repo."""
        root = os.environ.get("LLMDS_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "llmds"
        )
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Measurement:
    """Timings of ``repeat`` runs of one operation mix, plus memory."""

    ops: int
    wall_s: list[float]
    cpu_s: list[float]
    peak_rss_mb: float
    memory_delta_mb: float

    @property
    def median_cpu_s(self) -> float:
        return float(np.median(self.cpu_s))

    @property
    def median_wall_s(self) -> float:
        return float(np.median(self.wall_s))

    @property
    def ops_per_cpu_s(self) -> float:
        """Operations per CPU-second, from the median run."""
        t = self.median_cpu_s
        return self.ops / t if t > 0 else float("inf")

    @property
    def ops_per_s(self) -> float:
        """Operations per wall-clock second, from the median run."""
        t = self.median_wall_s
        return self.ops / t if t > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "ops_per_s": self.ops_per_s,
            "ops_per_cpu_s": self.ops_per_cpu_s,
            "wall_s": {
                "min": min(self.wall_s),
                "median": self.median_wall_s,
                "max": max(self.wall_s),
                "runs": self.wall_s,
            },
            "cpu_s": {
                "min": min(self.cpu_s),
                "median": self.median_cpu_s,
                "max": max(self.cpu_s),
                "runs": self.cpu_s,
            },
            "peak_rss_mb": self.peak_rss_mb,
            "memory_delta_mb": self.memory_delta_mb,
        }


def _timed_run(fn: Callable[[Any], object], setup: Callable[[], Any] | None) -> tuple[float, float]:
    """One timed run of ``fn`` on a fresh ``setup()`` state: ``(wall_s, cpu_s)``.

    The state is built untimed; GC is collected before and disabled during the run.
    """
    state = setup() if setup else None
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        w0 = time.perf_counter()
        fn(state)
        w1 = time.perf_counter()
        c1 = time.process_time()
    finally:
        gc.enable()
    return w1 - w0, c1 - c0


def measure(
    fn: Callable[[Any], object],
    *,
    ops: int,
    setup: Callable[[], Any] | None = None,
    repeat: int = 5,
    warmup: int = 1,
) -> Measurement:
    """Time ``fn(state)`` ``repeat`` times after ``warmup`` untimed runs.

    ``setup()`` (untimed) builds a fresh state before every run, so destructive
    workloads (a heap drained by pops) start equal each time; without it ``fn``
    gets ``None``. ``ops`` is the number of operations one run performs, used for
    rates. GC is collected before and disabled during each timed run.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn(setup() if setup else None)
    wall: list[float] = []
    cpu: list[float] = []
    profiler = MemoryProfiler()
    gc.collect()
    profiler.start()
    try:
        for _ in range(repeat):
            w, c = _timed_run(fn, setup)
            wall.append(w)
            cpu.append(c)
    finally:
        profiler.stop()
    return Measurement(
        ops=ops,
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=profiler.get_peak_rss_mb(),
        memory_delta_mb=profiler.get_memory_delta_mb(),
    )


def measure_interleaved(
    cases: dict[str, tuple[Callable[[Any], object], Callable[[], Any] | None]],
    *,
    ops: int,
    repeat: int = 5,
    warmup: int = 1,
) -> dict[str, Measurement]:
    """Time several implementations of one workload in alternating turns.

    ``cases`` maps a name to ``(fn, setup)`` as in :func:`measure`. After every
    case's warm-up, each of the ``repeat`` rounds times every case once, in turn,
    so a noisy stretch of the machine (another process, frequency scaling) falls on
    all of them alike instead of on whichever ran at that moment. Peak RSS per case
    is sampled over that case's own runs.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for fn, setup in cases.values():
        for _ in range(warmup):
            fn(setup() if setup else None)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    peak: dict[str, float] = dict.fromkeys(cases, 0.0)
    delta: dict[str, float] = dict.fromkeys(cases, 0.0)
    for _ in range(repeat):
        for name, (fn, setup) in cases.items():
            profiler = MemoryProfiler()
            profiler.start()
            try:
                w, c = _timed_run(fn, setup)
            finally:
                profiler.stop()
            wall[name].append(w)
            cpu[name].append(c)
            peak[name] = max(peak[name], profiler.get_peak_rss_mb())
            delta[name] = max(delta[name], profiler.get_memory_delta_mb())
    return {
        name: Measurement(ops=ops, wall_s=wall[name], cpu_s=cpu[name], peak_rss_mb=peak[name],
                          memory_delta_mb=delta[name])
        for name in cases
    }


def latency_percentiles_ms(fn: Callable[[Any], object], args: Iterable[Any]) -> dict[str, float]:
    """Call ``fn(arg)`` once per ``arg``, timing each call; p50/p95/p99/mean in ms."""
    times: list[float] = []
    clock = time.perf_counter_ns
    for arg in args:
        t0 = clock()
        fn(arg)
        times.append((clock() - t0) / 1e6)
    out = compute_percentiles(times)
    out["mean"] = float(np.mean(times))
    out["count"] = len(times)
    return out


_PEER_SKIPS: dict[str, str] = {}


def peer(module: str, extra: str = "bench") -> ModuleType | None:
    """Import a peer library, or return ``None`` and remember why (a skip, never a drop)."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken binary wheel
        why = f"{type(exc).__name__}: {exc}"
        _PEER_SKIPS[module] = f"not importable ({why}); pip install llmds[{extra}]"
        return None


def skipped(module: str) -> str:
    """Why ``peer(module)`` returned ``None``."""
    return _PEER_SKIPS.get(module, "not installed")


def peer_version(dist: str) -> str | None:
    """Installed version of a distribution, or ``None``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def ratio(ours: float, theirs: float | None) -> float | None:
    """``ours / theirs`` when both are positive numbers, else ``None``."""
    if theirs is None or not theirs > 0 or not np.isfinite(theirs):
        return None
    return float(ours) / float(theirs)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


_PEER_DISTS = [
    "pqdict", "heapdict", "cachetools", "datasketches", "limits", "pyrate-limiter", "hnswlib",
    "faiss-cpu", "usearch", "bm25s", "tantivy", "rank-bm25", "PyStemmer", "sglang", "vllm",
    "torch", "matplotlib",
]


def environment() -> dict[str, Any]:
    """What a reader needs to compare two result files."""
    import psutil

    versions = {d: peer_version(d) for d in ("llmds", "numpy", "numba", *_PEER_DISTS)}
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": {k: v for k, v in versions.items() if v is not None},
        "git_commit": _git_commit(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
    }


def result_record(
    name: str,
    title: str,
    *,
    ctx: BenchContext,
    params: dict[str, Any],
    data: str,
    rows: list[dict[str, Any]],
    ratios: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    plots: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON record every benchmark returns.

    - ``rows``: one dict per implementation/configuration; ``{"impl": "pqdict",
      "skipped": "<why>"}`` for a peer that could not run.
    - ``ratios``: ``{"name", "value", "goal", "higher_is_better", "met"}``; ``met``
      is filled in here from ``value`` and ``goal``.
    - ``plots``: ``{"title", "x_label", "y_label", "kind": "line"|"bar",
      "log_x"?, "log_y"?, "series": [{"label", "x": [...], "y": [...], "marker"?: bool}]}``.
    - ``data``: where the workload came from ("synthetic, seed 0" or a dataset path).
    """
    done = []
    for r in ratios or []:
        r = dict(r)
        r.setdefault("higher_is_better", True)
        value, goal = r.get("value"), r.get("goal")
        if value is None or goal is None:
            r["met"] = None
        elif r["higher_is_better"]:
            r["met"] = bool(value >= goal)
        else:
            r["met"] = bool(value <= goal)
        done.append(r)
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": name,
        "title": title,
        "quick": ctx.quick,
        "size": "quick" if ctx.quick else ("full" if ctx.full else "default"),
        "repeat": ctx.repeat,
        "seed": ctx.seed,
        "params": params,
        "data": data,
        "rows": rows,
        "ratios": done,
        "notes": notes or [],
        "plots": plots or [],
        "extra": extra or {},
        "env": environment(),
    }


def write_record(record: dict[str, Any], out_dir: Path) -> Path:
    """Write ``record`` to ``out_dir/<benchmark>.json`` (pretty, UTF-8)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{record['benchmark']}.json"
    path.write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
