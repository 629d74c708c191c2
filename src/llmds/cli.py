"""The ``llmds`` command: run the benchmark suite, write the report, run the simulator.

    llmds bench [NAMES...] [--quick | --full] [--out DIR] [--data DIR] [--repeat N] [--seed S]
    llmds report [--results DIR] [--out DIR]
    llmds simulate [SCENARIO | --config FILE] [--requests N] [--seed S] [--list]
                   [--gpu GPU] [--model MODEL] [--data DIR]
    llmds --version

``python -m llmds ...`` is the same command.

Exit status:

* ``0`` done;
* ``1`` the run failed: a benchmark failed (its traceback is in
  ``<out>/<name>.error.json``), memory ran out, a file could not be written, or llmds
  itself failed (a bug: the message says so; ``LLMDS_DEBUG=1`` shows the traceback);
* ``2`` usage error: an unknown command, option, benchmark or scenario; an option
  value of the wrong type or out of range; a path option that is missing or of the
  wrong kind (``--data``/``--results`` not a folder, ``--out`` a file or not
  writable); a config or result file that cannot be read, is too large or is
  malformed; ``report`` on a folder that holds no results; a simulated workload that
  cannot run on the configured server (a prompt longer than the KV pool, or than
  ``max_num_batched_tokens`` without chunked prefill);
* ``130`` interrupted (Ctrl-C).

Every error is one line on stderr that names the option or file, e.g.
``llmds simulate: --seed must be >= 0, got -1``; no user error prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from llmds import __version__

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "UsageError", "main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_MAX_REPEAT = 1000
_MAX_SEED = 2**32 - 1  # seeds reach peer libraries that take 32-bit seeds


class UsageError(Exception):
    """A mistake on the command line (or in a file it names): one line, exit status 2.

    ``where`` is the command it belongs to (``"llmds bench"``); by default the one run.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


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


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[-1]


def summary_table(records: list[dict[str, Any]], width: int | None = None) -> str:
    """Plain-text table: one line per headline ratio of each benchmark.

    The measure column is as wide as the longest measure, up to what ``width`` (default:
    the terminal's, at least 80 columns) leaves; a longer measure, failure or skip reason
    wraps onto indented lines, so no label is cut.
    """
    import textwrap

    if width is None:
        width = max(80, shutil.get_terminal_size((100, 20)).columns)
    names = [str(r.get("name")) for rec in records if "error" not in rec
             for r in rec.get("ratios") or []]
    # benchmark(14) + measure + value(9) + goal(7) + met(3) and the gaps between them
    mw = max(20, min(max(map(len, names), default=20), width - 38))
    indent = " " * 15

    def wrap(text: str, text_width: int) -> list[str]:
        return textwrap.wrap(text, text_width, break_on_hyphens=False) or [""]

    def block(name: str, text: str) -> list[str]:
        first, *rest = wrap(text, width - 15)
        return [f"{name:<14} {first}", *(indent + line for line in rest)]

    lines = [f"{'benchmark':<14} {'measure':<{mw}} {'value':>9} {'goal':>7}  met"]
    lines.append("-" * len(lines[0]))
    for rec in records:
        name = rec.get("benchmark", "?")
        if "error" in rec:
            lines += block(name, f"FAILED: {_last_line(rec['error'])}")
            continue
        ratios = rec.get("ratios") or []
        if not ratios:
            lines.append(f"{name:<14} (no peer ratio)")
        for r in ratios:
            met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
            first, *rest = wrap(str(r.get("name")), mw)
            lines.append(f"{name:<14} {first:<{mw}} {_fmt(r.get('value')):>9} "
                         f"{_fmt(r.get('goal')):>7}  {met}")
            lines += [indent + line for line in rest]
        for row in rec.get("rows", []):
            if "skipped" in row:
                lines += block(name, f"skipped peer {row.get('impl')}: {row['skipped']}")
    return "\n".join(lines)


# ----------------------------------------------------------------- option checks
def _int_option(minimum: int, maximum: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type`` for an int in ``[minimum, maximum]`` with a one-line message."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise argparse.ArgumentTypeError(f"must be an int, got {shown!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if value > maximum:
            reason = f" ({why})" if why else ""
            raise argparse.ArgumentTypeError(f"must be <= {maximum}{reason}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _input_folder(text: str, option: str, hint: str = "") -> Path:
    """An existing folder named by ``option``, or a UsageError saying what it is instead."""
    if not text:
        raise UsageError(f"{option} must not be empty")
    path = Path(text).expanduser()
    if not path.exists():
        raise UsageError(f"{option} folder {text!r} does not exist{hint}")
    if not path.is_dir():
        raise UsageError(f"{option} must be a folder, got {text!r} (not a folder)")
    return path


def _output_folder(text: str, option: str) -> Path:
    """``option``'s folder, created if missing; a UsageError if it cannot be written."""
    if not text:
        raise UsageError(f"{option} must not be empty")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} must be a folder, got {text!r} (a file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option}: cannot create folder {text!r}: "
                         f"{exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} folder {text!r} is not writable")
    return path


# -------------------------------------------------------------------- commands
def cmd_bench(args: argparse.Namespace) -> int:
    from llmds.bench import BENCHMARKS, BenchContext, load
    from llmds.bench.datasets import find_data_dir
    from llmds.bench.harness import write_record

    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UsageError(f"unknown benchmark(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(BENCHMARKS)}")
    try:
        data_dir = find_data_dir(args.data)
    except FileNotFoundError as exc:  # "--data points to '...', which is not a folder"
        raise UsageError(str(exc)) from None
    out_dir = _output_folder(args.out, "--out")
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
        except Exception:  # recorded with its traceback; the suite goes on
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
    return EXIT_FAILED if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from llmds.bench import report_docx
    from llmds.bench.report import build_report, load_results

    hint = "; run `llmds bench` first"
    results = _input_folder(args.results, "--results", hint)
    try:
        records = load_results(results)
    except ValueError as exc:  # a result file that is not JSON or not a result record
        raise UsageError(str(exc)) from None
    if not records:
        raise UsageError(f"--results folder {args.results!r} holds no benchmark results "
                         f"(*.json records){hint}")
    out_dir = _output_folder(args.out, "--out")
    for path in build_report(results, out_dir):
        print(path)
    if not report_docx.available():
        print("llmds report: Word report skipped (needs python-docx: pip install "
              "'llmds[report]')", file=sys.stderr)
    return 0


def _gpu_option(known: Any, kind: str) -> Callable[[str], str]:
    """argparse type for --gpu/--model: one of ``known`` (names them otherwise)."""
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {text!r}; known: {', '.join(known)}")
        return text
    return parse


def cmd_simulate(args: argparse.Namespace) -> int:
    from llmds.sim.config import load_config, move_to_gpu
    from llmds.sim.engine import Simulator, simulate
    from llmds.sim.metrics import format_table
    from llmds.sim.scenarios import SCENARIOS, scenario

    if args.list:
        for name, text in SCENARIOS.items():
            print(f"{name:<20} {text}")
        return 0
    if args.config is not None and args.scenario is not None:
        raise UsageError("give a SCENARIO or --config FILE, not both")
    if args.scenario is None and args.config is None:
        raise UsageError("give a SCENARIO (see --list) or --config FILE")
    # Everything before the run is a check of what the user asked for: its ValueErrors
    # (bad config keys, sizes over the caps, requests that cannot fit the server) are
    # usage errors. Errors during the run are not.
    on_gpu = args.gpu is not None or args.model is not None
    data = None
    if args.data is not None:
        data = _input_folder(args.data, "--data")
    try:
        keep_pages = False
        if args.config is not None:
            spec = load_config(args.config, data)
            requests, config = spec.build(args.requests, args.seed)
            keep_pages = spec.kv_pages_given
            label = Path(args.config).name
        else:
            if args.scenario not in SCENARIOS:
                raise UsageError(f"unknown scenario {args.scenario!r}; known: "
                                 f"{', '.join(SCENARIOS)} (see --list)")
            requests, config = scenario(
                args.scenario, 2000 if args.requests is None else args.requests,
                0 if args.seed is None else args.seed,
            )
            label = args.scenario
        if on_gpu:
            config = move_to_gpu(config, args.gpu or "a100", args.model or "llama-2-7b",
                                 profiles_dir=data, keep_kv_pages=keep_pages)
            label += f" on {args.gpu or 'a100'}/{args.model or 'llama-2-7b'}"
        Simulator(config).validate(requests)
    except FileNotFoundError as exc:  # the GPU profiles (--gpu, or cost.gpu in a config)
        raise UsageError(f"--gpu: {exc}" if on_gpu else str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    bar = ProgressBar(1)
    bar.begin(0, label)
    result = simulate(requests, config, progress=bar.update)
    bar.update(1, 1, "done")
    bar.finish()
    print(format_table(result.metrics))
    return 0


# --------------------------------------------------------------------- parsing
_COMMANDS = ("bench", "report", "simulate")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors raised as :class:`UsageError` (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        match = re.fullmatch(r"argument (\S+?): (.*)", message, flags=re.S)
        if match is not None:
            option, rest = match.groups()
            if option == "command":
                rest = rest.replace("invalid choice: ", "unknown command ")
                message = rest.split(" (choose from")[0] + f"; choose from {', '.join(_COMMANDS)}"
            else:
                sep = " " if rest.startswith("must") else ": "
                rest = rest.replace("with argument ", "with ")
                message = f"{option.split('/')[-1]}{sep}{rest}"
        raise UsageError(f"{message} (see '{self.prog} --help')", where=self.prog)


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or "The llmds command."
    parser = _Parser(prog="llmds", description=doc.split("\n\n")[0],
                     epilog="Exit status: 0 done, 1 run failed, 2 usage error, 130 "
                            "interrupted. LLMDS_DEBUG=1 shows the traceback of an "
                            "internal error.")
    parser.add_argument("--version", action="version", version=f"llmds {__version__}")
    # Not required=True: argparse would then report a missing command before an
    # unknown option (``llmds --bogus``); main() reports a missing command itself.
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    seed = _int_option(0, _MAX_SEED, "a 32-bit seed")
    bench = sub.add_parser("bench", help="run benchmarks against the peer libraries")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small sizes (seconds, for smoke tests)")
    size.add_argument("--full", action="store_true",
                      help="complete datasets (slow; default sizes finish in minutes)")
    bench.add_argument("--out", default="results",
                       help="folder for JSON results, created if missing (default: results)")
    bench.add_argument("--data", default=None,
                       help="datasets folder (default: $LLMDS_DATA, then ../shared/datasets)")
    bench.add_argument("--repeat", type=_int_option(1, _MAX_REPEAT), default=5,
                       help=f"timed repeats per measurement, 1..{_MAX_REPEAT} (default 5)")
    bench.add_argument("--seed", type=seed, default=0,
                       help=f"workload seed, 0..{_MAX_SEED} (default 0)")
    bench.set_defaults(func=cmd_bench)
    report = sub.add_parser("report", help="write the Markdown/HTML report from JSON results")
    report.add_argument("--results", default="results",
                        help="folder of JSON results written by `llmds bench` (default: "
                             "results); a folder without results is an error (exit 2)")
    report.add_argument("--out", default="report", help="output folder (default: report)")
    report.set_defaults(func=cmd_report)
    from llmds.sim.arrivals import MAX_REQUESTS

    sim = sub.add_parser("simulate",
                         help="run a serving-simulator scenario or config file")
    sim.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    sim.add_argument("--config", default=None,
                     help="JSON (or .toml) config file; schema in llmds.sim.config")
    sim.add_argument("--requests", type=_int_option(1, MAX_REQUESTS, "the simulator's cap"),
                     default=None,
                     help=f"number of requests, 1..{MAX_REQUESTS:,} (default: 2000, or the "
                          "config's)")
    sim.add_argument("--seed", type=seed, default=None,
                     help=f"workload seed, 0..{_MAX_SEED} (default: 0, or the config's)")
    sim.add_argument("--list", action="store_true", help="list the scenarios")
    from llmds.sim.profiles.hardware import GPUS, MODELS

    sim.add_argument("--gpu", type=_gpu_option(GPUS, "GPU"), default=None,
                     help=f"time iterations with Vidur's GPU profiles of this GPU ("
                          f"{', '.join(GPUS)}; default a100 when --model is given) and size "
                          "the KV pool as vLLM would")
    sim.add_argument("--model", type=_gpu_option(MODELS, "model"), default=None,
                     help=f"the model on that GPU ({', '.join(MODELS)}; default llama-2-7b "
                          "when --gpu is given)")
    sim.add_argument("--data", default=None,
                     help="datasets folder holding serving/vidur (default: $LLMDS_DATA, then "
                          "../shared/datasets)")
    sim.set_defaults(func=cmd_simulate)
    return parser


def _error(where: str, message: str) -> None:
    """Print one line ``where: message`` on stderr (after a progress bar's open line)."""
    text = " ".join(message.split())  # one line, whatever the exception held
    try:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        print(f"{where}: {text}", file=sys.stderr)
    except (OSError, ValueError):  # stderr itself is gone
        pass


def _os_message(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    name = f" {exc.filename!r}" if exc.filename is not None else ""
    return f"{what}:{name}" if name else what


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmds`` console script (and ``python -m llmds``)."""
    where = "llmds"
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: {', '.join(_COMMANDS)} (see 'llmds "
                             "--help')")
        where = f"llmds {args.command}"
        return int(args.func(args))
    except UsageError as exc:
        _error(exc.where or where, str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else EXIT_USAGE
    except KeyboardInterrupt:
        _error(where, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): stop quietly, as cat does.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILED
    except MemoryError:
        _error(where, "out of memory; try smaller sizes (--quick, fewer --requests, a "
                      "smaller config)")
        return EXIT_FAILED
    except OSError as exc:
        _error(where, _os_message(exc))
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("LLMDS_DEBUG"):
            raise
        detail = _last_line(str(exc)) if str(exc) else ""
        _error(where, f"internal error: {type(exc).__name__}"
                      f"{': ' + detail[:200] if detail else ''} (a bug in llmds; run with "
                      "LLMDS_DEBUG=1 for the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
