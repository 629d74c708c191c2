"""Measurement helpers: timers, peak-RSS profiling, percentiles and summary statistics.

Everything here is what the 0.1 API names (``Timer``, ``MemoryProfiler``,
``memory_profiler``, ``compute_percentiles``, ``calculate_statistics``,
``MetricsCollector``). The benchmark suite (``llmds.bench``) is built on them.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from llmds._locked import LockedState
from llmds._validate import check_finite_array, check_number, show

__all__ = [
    "MemoryProfiler",
    "Metrics",
    "MetricsCollector",
    "Timer",
    "calculate_statistics",
    "compute_percentiles",
    "memory_profiler",
    "student_t_ppf",
]

_MB = 1024.0 * 1024.0


class _ProcStatm:
    """Current RSS from ``/proc/self/statm`` (Linux), one ``pread`` per reading. O(1).

    Why not psutil here: ``psutil.Process().memory_info()`` took 23 us per reading
    on the benchmark machine against 2.7 us for this ``pread`` of a descriptor kept
    open, and the profiler's sampler thread reads every 2 ms inside every timed
    benchmark run (its CPU time counts in ``process_time``): ~1.2% of the measured
    CPU with psutil, ~0.14% with this. The descriptor is reopened after a fork (the
    child must read its own statm). Thread safety: ``pread`` has no shared offset;
    the reopen is locked.
    """

    __slots__ = ("_fd", "_lock", "_page", "_pid")

    def __init__(self) -> None:
        self._fd = -1
        self._pid = -1
        self._lock = threading.Lock()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __call__(self) -> int:
        pid = os.getpid()
        if pid != self._pid:
            with self._lock:
                if pid != self._pid:
                    self._fd = os.open(f"/proc/{pid}/statm",
                                       os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    self._pid = pid
        return int(os.pread(self._fd, 128, 0).split(maxsplit=2)[1]) * self._page


@functools.cache
def _rss_reader() -> Any:
    """The process's RSS reader, chosen once: ``/proc/self/statm`` on Linux, else psutil.

    psutil is a dependency only where there is no ``/proc`` (pyproject.toml installs
    it for every platform but Linux); without either, ``ImportError`` names it.
    """
    if os.path.exists("/proc/self/statm"):
        return _ProcStatm()
    try:
        import psutil
    except ImportError:
        raise ImportError(
            "MemoryProfiler needs /proc/self/statm (Linux) or the psutil package: "
            "pip install psutil"
        ) from None
    process = psutil.Process(os.getpid())
    return lambda: int(process.memory_info().rss)


class Timer:
    """Context manager measuring wall-clock time with ``time.perf_counter``.

    ``elapsed`` is in seconds; while the block runs it reads the time so far.
    O(1). Thread safety: not thread-safe; use one Timer per block.

    >>> with Timer() as t:
    ...     _ = sum(range(1000))
    >>> t.elapsed >= 0.0
    True
    """

    __slots__ = ("_end", "_start")

    def __init__(self) -> None:
        self._start: float | None = None
        self._end: float | None = None

    def __enter__(self) -> Timer:
        self._end = None
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds between enter and exit (or until now, inside the block)."""
        if self._start is None:
            return 0.0
        end = self._end if self._end is not None else time.perf_counter()
        return end - self._start


class MemoryProfiler:
    """Peak resident-set-size (RSS) tracker for one process.

    ``start()`` records the baseline RSS and starts a daemon thread that samples
    RSS every ``interval_s`` seconds, so a peak that rises and falls between two
    explicit ``sample()`` calls is still seen (to the sampling resolution; the
    default 2 ms catches any allocation that is held for longer than that).
    ``stop()`` ends the sampler and takes a final sample. The peak is the maximum
    of every sample and of the baseline.

    Each sample is one RSS reading, O(1): a ``pread`` of ``/proc/self/statm`` on
    Linux (~3 us), ``psutil`` elsewhere. Memory: a few objects.

    Thread safety: ``sample`` and the getters may be called from any thread (one
    internal lock guards the peak); ``start``/``stop`` belong to one thread. It
    measures this process, so it cannot be pickled or copied (``TypeError``):
    create one in the other process.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        # Event.wait takes at most threading.TIMEOUT_MAX seconds
        self._interval_s = check_number(interval_s, "interval_s", minimum=0.0,
                                        exclusive_minimum=True, maximum=threading.TIMEOUT_MAX)
        self._read_rss = _rss_reader()
        self._initial = 0
        self._peak = 0
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return int(self._read_rss())

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("MemoryProfiler cannot be pickled or copied: it samples this "
                        "process's RSS from a background thread; create one where needed")

    def start(self) -> None:
        """Record the baseline RSS and start background sampling. O(1)."""
        self.stop()
        rss = self._rss()
        with self._lock:
            self._initial = rss
            self._peak = rss
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="llmds-rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            self.sample()

    def stop(self) -> None:
        """Stop background sampling (idempotent) after one last sample. O(1)."""
        thread = self._thread
        if thread is not None:
            self._stop_event.set()
            thread.join()
            self._thread = None
            self.sample()

    def sample(self) -> int:
        """Read the current RSS in bytes, update the peak and return the reading. O(1)."""
        rss = self._rss()
        with self._lock:
            if rss > self._peak:
                self._peak = rss
        return rss

    def get_peak_rss_bytes(self) -> int:
        """Peak RSS seen since ``start()``, in bytes. O(1)."""
        with self._lock:
            return self._peak

    def get_peak_rss_mb(self) -> float:
        """Peak RSS seen since ``start()``, in MiB. O(1)."""
        return self.get_peak_rss_bytes() / _MB

    def get_current_rss_mb(self) -> float:
        """Current RSS in MiB (also counts as a sample). O(1)."""
        return self.sample() / _MB

    def get_memory_delta_mb(self) -> float:
        """Peak RSS minus the baseline at ``start()``, in MiB. O(1)."""
        with self._lock:
            return (self._peak - self._initial) / _MB


def _clock_reading(clock: Any) -> float:
    """``clock()`` as float seconds, or a TypeError/ValueError naming ``clock()``."""
    now = clock()
    if type(now) is float and now - now == 0.0:
        return now
    return check_number(now, "clock()")


@contextmanager
def memory_profiler(interval_s: float = 0.002) -> Iterator[MemoryProfiler]:
    """Profile peak RSS over a ``with`` block; the profiler stays readable after it.

    >>> with memory_profiler() as profiler:
    ...     data = bytearray(8 * 1024 * 1024)
    ...     _ = profiler.sample()
    >>> profiler.get_peak_rss_mb() >= profiler.get_current_rss_mb() - 64
    True
    """
    profiler = MemoryProfiler(interval_s)  # checks interval_s before the block runs
    profiler.start()
    try:
        yield profiler
    finally:
        profiler.stop()


def _as_array(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    """``values`` as a non-empty 1-D float64 array of finite numbers (no bools, no str)."""
    if isinstance(values, str | bytes | Mapping | Set) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {show(values)}")
    arr = check_finite_array(values, name, shape=(None,), dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    return arr


def compute_percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """P50, P95 and P99 of ``values`` (linear interpolation, as NumPy's default).

    O(n log n). An empty sequence raises ``ValueError``.

    >>> compute_percentiles([1.0, 2.0, 3.0, 4.0, 5.0])
    {'p50': 3.0, 'p95': 4.8, 'p99': 4.96}
    """
    arr = _as_array(values)
    p50, p95, p99 = np.percentile(arr, [50.0, 95.0, 99.0])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _student_t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom.

    Bisection on the CDF (regularised incomplete beta), accurate to ~1e-12; no SciPy.

    >>> round(student_t_ppf(0.975, 4), 4)
    2.7764
    """
    if not 0.0 < check_number(q, "q") < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    check_number(df, "df", minimum=0.0, exclusive_minimum=True)
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while _student_t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _student_t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def calculate_statistics(
    values: Sequence[float] | np.ndarray, confidence_level: float = 0.95
) -> dict[str, Any]:
    """Summary statistics of repeated measurements.

    Returns ``mean``, ``std`` (sample standard deviation, ddof=1), ``min``, ``max``,
    ``p50``/``p95``/``p99``, ``ci_lower``/``ci_upper`` (Student-t confidence
    interval of the mean at ``confidence_level``), ``cv`` (coefficient of
    variation, ``100 * std / |mean|``; 0 when the mean is 0) and ``count``.

    A single value is allowed: its ``std`` is 0.0 and its confidence interval
    collapses to ``[value, value]`` (one sample carries no spread information).
    O(n log n). An empty sequence raises ``ValueError``.

    >>> s = calculate_statistics([10.0, 12.0, 11.0, 13.0])
    >>> round(s["mean"], 2), round(s["std"], 3), s["count"]
    (11.5, 1.291, 4)
    >>> round(s["ci_lower"], 3), round(s["ci_upper"], 3)
    (9.446, 13.554)
    """
    arr = _as_array(values)
    if not 0.0 < check_number(confidence_level, "confidence_level") < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    n = int(arr.size)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else 0.0
    # Half-width of the interval; a single value carries no spread information.
    half = student_t_ppf(0.5 + confidence_level / 2.0, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    stats: dict[str, Any] = {
        "mean": mean,
        "std": std,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }
    stats.update(compute_percentiles(arr))
    stats["ci_lower"] = mean - half
    stats["ci_upper"] = mean + half
    stats["cv"] = 100.0 * std / abs(mean) if mean != 0.0 else 0.0
    stats["count"] = n
    return stats


@dataclass(frozen=True, slots=True)
class Metrics:
    """Latency summary returned by ``MetricsCollector.get_metrics()`` (milliseconds).

    Thread safety: immutable.
    """

    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_mean: float
    count: int
    throughput: float
    """Recorded operations per second of wall time since the collector started."""
    elapsed_s: float


class MetricsCollector(LockedState):
    """Collects per-operation latencies (ms) and summarises them.

    Throughput is ``count / seconds since construction (or reset())``. Latencies
    are stored in a list: ``record_latency`` is O(1) amortised, ``get_metrics``
    O(n log n). Memory: 8 bytes (a float in a list: ~32) per recorded latency.

    Thread safety: one internal lock; any number of threads may record while
    another reads the metrics. ``copy.copy``, ``copy.deepcopy`` and ``pickle`` give
    an independent collector (snapshotted under the lock); ``clock`` is shared by
    the copies and must be picklable for ``pickle``.

    >>> c = MetricsCollector()
    >>> for ms in (1.0, 2.0, 3.0):
    ...     c.record_latency(ms)
    >>> m = c.get_metrics()
    >>> (m.count, m.latency_p50, m.latency_mean)
    (3, 2.0, 2.0)
    """

    def __init__(self, clock: Any = time.perf_counter) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {show(clock)}")
        self._clock = clock
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._start = _clock_reading(clock)

    # LockedState: copies and pickles skip the lock and share the clock.
    _SHARED = ("_clock",)

    def _new_locks(self) -> None:
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every recorded latency and restart the throughput clock. O(1)."""
        start = _clock_reading(self._clock)
        with self._lock:
            self._latencies = []
            self._start = start

    def record_latency(self, latency_ms: float) -> None:
        """Record one operation's latency in milliseconds. O(1) amortised."""
        if type(latency_ms) is float and 0.0 <= latency_ms < math.inf:
            value = latency_ms
        else:
            value = check_number(latency_ms, "latency_ms", minimum=0.0)
        with self._lock:
            self._latencies.append(value)

    def __len__(self) -> int:
        return len(self._latencies)

    def get_metrics(self) -> Metrics:
        """Percentiles, mean, count and throughput of what was recorded. O(n log n).

        With nothing recorded every latency field is 0.0 and the count is 0.
        """
        now = _clock_reading(self._clock)
        with self._lock:
            values = list(self._latencies)
            elapsed = now - self._start
        if not values:
            return Metrics(0.0, 0.0, 0.0, 0.0, 0, 0.0, elapsed)
        p = compute_percentiles(values)
        throughput = len(values) / elapsed if elapsed > 0 else 0.0
        return Metrics(
            latency_p50=p["p50"],
            latency_p95=p["p95"],
            latency_p99=p["p99"],
            latency_mean=float(np.mean(values)),
            count=len(values),
            throughput=throughput,
            elapsed_s=elapsed,
        )
