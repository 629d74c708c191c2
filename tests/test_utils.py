import math
import mmap
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from llmds.utils import (
    MemoryProfiler,
    MetricsCollector,
    Timer,
    calculate_statistics,
    compute_percentiles,
    memory_profiler,
    student_t_ppf,
)


def test_timer_measures_sleep():
    with Timer() as t:
        time.sleep(0.01)
    assert t.elapsed >= 0.009
    frozen = t.elapsed
    time.sleep(0.002)
    assert t.elapsed == frozen  # stops at __exit__


def test_timer_before_use_is_zero():
    assert Timer().elapsed == 0.0


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.exponential(size=1001).tolist()
    p = compute_percentiles(values)
    assert p["p50"] == pytest.approx(np.percentile(values, 50))
    assert p["p95"] == pytest.approx(np.percentile(values, 95))
    assert p["p99"] == pytest.approx(np.percentile(values, 99))


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")], [[1.0, 2.0]]])
def test_percentiles_reject_bad_input(bad):
    with pytest.raises(ValueError):
        compute_percentiles(bad)


@pytest.mark.parametrize(
    ("q", "df", "expected"),
    # reference values from statistical tables (scipy.stats.t.ppf)
    [(0.975, 1, 12.706204736), (0.975, 4, 2.776445105), (0.995, 10, 3.169272673),
     (0.95, 30, 1.697260887), (0.975, 1000, 1.962339081), (0.025, 4, -2.776445105)],
)
def test_student_t_quantiles(q, df, expected):
    assert student_t_ppf(q, df) == pytest.approx(expected, rel=1e-7)


def test_statistics_fields_and_ci():
    values = [10.5, 12.3, 11.1, 15.2, 10.8]
    s = calculate_statistics(values, confidence_level=0.95)
    arr = np.array(values)
    assert s["count"] == 5
    assert s["mean"] == pytest.approx(arr.mean())
    assert s["std"] == pytest.approx(arr.std(ddof=1))
    assert s["min"] == 10.5 and s["max"] == 15.2
    half = 2.776445105 * arr.std(ddof=1) / math.sqrt(5)
    assert s["ci_lower"] == pytest.approx(arr.mean() - half)
    assert s["ci_upper"] == pytest.approx(arr.mean() + half)
    assert s["cv"] == pytest.approx(100 * arr.std(ddof=1) / arr.mean())
    assert set(s) >= {"p50", "p95", "p99"}


def test_statistics_single_value_documented_behaviour():
    s = calculate_statistics([4.0])
    assert s["std"] == 0.0 and s["ci_lower"] == s["ci_upper"] == 4.0 and s["cv"] == 0.0


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5])
def test_statistics_bad_confidence(level):
    with pytest.raises(ValueError, match="confidence_level"):
        calculate_statistics([1.0, 2.0], confidence_level=level)


def test_statistics_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        calculate_statistics([])


def test_memory_profiler_sees_peak_between_samples():
    # Map, touch and unmap 200 MiB between two explicit samples: only the
    # background sampler can see it. An anonymous mmap, not a NumPy array: an
    # allocator that keeps freed memory resident (jemalloc, loaded by some
    # extension modules earlier in the session) can serve a 200 MiB array from
    # pages RSS already counts, and then nothing rises.
    profiler = MemoryProfiler(interval_s=0.001)
    profiler.start()
    before = profiler.sample()
    size = 200 * 1024 * 1024
    block = mmap.mmap(-1, size)
    pages = np.frombuffer(block, dtype=np.uint8)
    pages[:: mmap.PAGESIZE] = 1  # touched pages, really resident
    deadline = time.monotonic() + 10.0  # the sampler's thread may wait for the GIL
    while (profiler.get_peak_rss_bytes() < before + 150 * 1024 * 1024
           and time.monotonic() < deadline):
        time.sleep(0.005)
    del pages
    block.close()
    after = profiler.sample()
    profiler.stop()
    assert profiler.get_peak_rss_bytes() >= before + 150 * 1024 * 1024
    assert profiler.get_peak_rss_bytes() > after
    assert profiler.get_memory_delta_mb() >= 150


def test_memory_profiler_context_manager_stops_thread():
    before = threading.active_count()
    with memory_profiler() as prof:
        prof.sample()
    assert threading.active_count() == before
    assert prof.get_peak_rss_mb() > 0
    assert prof.get_current_rss_mb() > 0


def test_memory_profiler_bad_interval():
    with pytest.raises(ValueError, match="interval_s"):
        MemoryProfiler(interval_s=0)


def test_metrics_collector_with_fake_clock():
    now = [100.0]
    c = MetricsCollector(clock=lambda: now[0])
    for ms in range(1, 101):
        c.record_latency(float(ms))
    now[0] = 102.0
    m = c.get_metrics()
    assert m.count == 100
    assert m.latency_p50 == pytest.approx(50.5)
    assert m.latency_p95 == pytest.approx(np.percentile(range(1, 101), 95))
    assert m.latency_mean == pytest.approx(50.5)
    assert m.throughput == pytest.approx(50.0)


def test_metrics_collector_empty_and_bad_input():
    c = MetricsCollector()
    assert c.get_metrics().count == 0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="latency_ms"):
            c.record_latency(bad)
    assert len(c) == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_profiler_needs_no_psutil_on_linux():
    # psutil is installed only where there is no /proc (pyproject.toml): prove it.
    code = (
        "import sys; sys.modules['psutil'] = None\n"
        "from llmds.utils import memory_profiler\n"
        "with memory_profiler() as p:\n"
        "    block = bytearray(64 << 20)\n"
        "    p.sample()\n"
        "assert p.get_memory_delta_mb() >= 60, p.get_memory_delta_mb()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_rss_reader_is_shared_and_agrees_with_the_kernel():
    from llmds.utils import _rss_reader

    read = _rss_reader()
    assert read is _rss_reader()  # chosen once per process
    with open("/proc/self/status") as f:
        vm_rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
    assert abs(read() - vm_rss) < 16 << 20  # the same counter, read a moment apart
