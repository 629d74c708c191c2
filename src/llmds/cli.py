"""The ``llmds`` command: run the benchmark suite and write the report.

    llmds bench [NAMES...] [--quick | --full] [--out DIR] [--data DIR] [--repeat N] [--seed S]
    llmds report [--results DIR] [--out DIR]
    llmds simulate [SCENARIO | --config FILE] [--requests N] [--seed S] [--list]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]


class ProgressBar:
    """One-line text progress bar on a stream (no dependency; redraws with ``\\r``)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.index = 0
        self.name = ""
        self.start = time.perf_counter()
        self.tty = self.stream.isatty()
        self._last_label = ""

    def begin(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.update(0, 1, "starting")

    def update(self, done: int, total: int, label: str) -> None:
        frac = (self.index + (done / total if total > 0 else 0.0)) / self.total
        width = 28
        filled = round(frac * width)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.perf_counter() - self.start
        text = f"[{bar}] {100 * frac:5.1f}% {elapsed:6.1f}s {self.name}: {label}"
        if self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + text[: cols - 1].ljust(cols - 1))
        elif label != self._last_label:  # logs and CI: one line per stage
            self.stream.write(text + "\n")
        self._last_label = label
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def summary_table(records: list[dict[str, Any]]) -> str:
    """Plain-text table: one line per headline ratio of each benchmark."""
    lines = [f"{'benchmark':<14} {'measure':<52} {'value':>9} {'goal':>7}  met"]
    lines.append("-" * len(lines[0]))
    for rec in records:
        name = rec.get("benchmark", "?")
        if "error" in rec:
            lines.append(f"{name:<14} FAILED: {rec['error'].strip().splitlines()[-1][:70]}")
            continue
        ratios = rec.get("ratios") or []
        if not ratios:
            lines.append(f"{name:<14} (no peer ratio)")
        for r in ratios:
            met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
            lines.append(
                f"{name:<14} {r['name'][:52]:<52} {_fmt(r.get('value')):>9} "
                f"{_fmt(r.get('goal')):>7}  {met}"
            )
        for row in rec.get("rows", []):
            if "skipped" in row:
                lines.append(f"{name:<14} skipped peer {row.get('impl')}: {row['skipped'][:60]}")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from llmds.bench import BENCHMARKS, BenchContext, load
    from llmds.bench.datasets import find_data_dir
    from llmds.bench.harness import write_record

    names = args.names or [n for n in BENCHMARKS]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"llmds bench: unknown benchmark(s) {', '.join(unknown)}; "
              f"known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    data_dir = find_data_dir(args.data)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = "quick" if args.quick else "full" if args.full else "default"
    data = data_dir or "none (seeded synthetic workloads)"
    print(f"llmds bench: {len(names)} benchmark(s), {size} size, data: {data}, "
          f"results -> {out_dir}", file=sys.stderr)
    bar = ProgressBar(len(names))
    records: list[dict[str, Any]] = []
    failed = 0
    for i, name in enumerate(names):
        bar.begin(i, name)
        ctx = BenchContext(quick=args.quick, full=args.full, repeat=args.repeat, seed=args.seed,
                           data_dir=data_dir, out_dir=out_dir, progress=bar.update)
        t0 = time.perf_counter()
        try:
            record = load(name).run(ctx)
        except Exception:
            failed += 1
            record = {"benchmark": name, "error": traceback.format_exc()}
        record["elapsed_s"] = time.perf_counter() - t0
        if "error" in record:
            (out_dir / f"{name}.error.json").write_text(json.dumps(record, indent=2))
            stale = out_dir / f"{name}.json"
            if stale.exists():
                stale.unlink()
        else:
            write_record(record, out_dir)
        records.append(record)
        bar.update(1, 1, f"done in {record['elapsed_s']:.1f}s")
    bar.finish()
    print(summary_table(records))
    if failed:
        print(f"llmds bench: {failed} benchmark(s) failed; tracebacks in {out_dir}/*.error.json",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from llmds.bench import report_docx
    from llmds.bench.report import build_report

    paths = build_report(Path(args.results), Path(args.out))
    for path in paths:
        print(path)
    if not report_docx.available():
        print("llmds report: Word report skipped (needs python-docx: pip install "
              "'llmds[report]')", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from llmds.sim.config import load_config
    from llmds.sim.engine import simulate
    from llmds.sim.metrics import format_table
    from llmds.sim.scenarios import SCENARIOS, scenario

    if args.config is not None and args.scenario is not None:
        print("llmds simulate: give a SCENARIO or --config FILE, not both", file=sys.stderr)
        return 2
    if args.list or (args.scenario is None and args.config is None):
        for name, text in SCENARIOS.items():
            print(f"{name:<20} {text}")
        return 0 if args.list else 2
    if args.requests is not None and args.requests < 1:
        print("llmds simulate: --requests must be >= 1", file=sys.stderr)
        return 2
    if args.config is not None:
        try:
            spec = load_config(args.config)
            requests, config = spec.build(args.requests, args.seed)
        except ValueError as exc:
            print(f"llmds simulate: {exc}", file=sys.stderr)
            return 2
        label = Path(args.config).name
    else:
        if args.scenario not in SCENARIOS:
            print(f"llmds simulate: unknown scenario {args.scenario!r}; known: "
                  f"{', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
        requests, config = scenario(
            args.scenario, 2000 if args.requests is None else args.requests,
            0 if args.seed is None else args.seed,
        )
        label = args.scenario
    bar = ProgressBar(1)
    bar.begin(0, label)
    result = simulate(requests, config, progress=bar.update)
    bar.update(1, 1, "done")
    bar.finish()
    print(format_table(result.metrics))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmds", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run benchmarks against the peer libraries")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes (seconds, for smoke tests)")
    bench.add_argument("--full", action="store_true",
                       help="complete datasets (slow; default sizes finish in minutes)")
    bench.add_argument("--out", default="results",
                       help="folder for JSON results (default: results)")
    bench.add_argument("--data", default=None,
                       help="datasets folder (default: $LLMDS_DATA, then ../shared/datasets)")
    bench.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement (>= 5)")
    bench.add_argument("--seed", type=int, default=0, help="workload seed")
    bench.set_defaults(func=cmd_bench)
    report = sub.add_parser("report", help="write the Markdown/HTML report from JSON results")
    report.add_argument("--results", default="results", help="folder of JSON results")
    report.add_argument("--out", default="report", help="output folder")
    report.set_defaults(func=cmd_report)
    sim = sub.add_parser("simulate",
                         help="run a serving-simulator scenario or config file")
    sim.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    sim.add_argument("--config", default=None,
                     help="JSON (or .toml) config file; schema in llmds.sim.config")
    sim.add_argument("--requests", type=int, default=None,
                     help="number of requests (default: 2000, or the config's)")
    sim.add_argument("--seed", type=int, default=None,
                     help="workload seed (default: 0, or the config's)")
    sim.add_argument("--list", action="store_true", help="list the scenarios")
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmds`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "repeat", 5) < 1:
        print("llmds bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
