"""The ``llmds`` command never shows a traceback for a user error (issue 12, section 4).

Every bad invocation found (bad commands and options, out-of-range values, missing or
wrong-kind paths, unreadable, oversized, deeply nested or malformed config and result
files, workloads the server cannot run, sizes over the caps) must exit with status 2
after exactly one stderr line that names the option or file; run failures exit 1 with
one line (an internal error also says how to see its traceback); Ctrl-C exits 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import llmds
from llmds import cli
from llmds.bench.harness import BenchContext, result_record, write_record
from llmds.cli import main

USAGE, FAILED = 2, 1


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
                   fragment: str) -> str:
    """Run ``llmds argv``; check the exit status and the single stderr line."""
    got = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err
    assert len(lines) == 1, captured.err
    assert got == code, (got, captured.err)
    assert lines[0].startswith("llmds"), lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


def _record(name: str = "indexed_heap") -> dict[str, Any]:
    return result_record(name, "IndexedHeap vs pqdict", ctx=BenchContext(quick=True),
                         params={"ops": 10}, data="synthetic", rows=[{"impl": "llmds"}],
                         ratios=[{"name": "ops/s", "value": 3.0, "goal": 3.0}])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every hostile file and folder the cases below point the CLI at."""
    root = tmp_path_factory.mktemp("cli")
    f: dict[str, Path] = {"root": root}

    def write(name: str, data: str | bytes) -> Path:
        path = root / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        f[name.replace(".", "_")] = path
        return path

    def config(name: str, cfg: Any) -> None:
        write(name, json.dumps(cfg))

    def results(name: str, files_: dict[str, str | bytes]) -> None:
        folder = root / name
        folder.mkdir()
        for file_name, text in files_.items():
            if isinstance(text, bytes):
                (folder / file_name).write_bytes(text)
            else:
                (folder / file_name).write_text(text)
        f[name] = folder

    write("a_file", "not a folder")
    (root / "empty").mkdir()
    f["empty"] = root / "empty"
    config("long.json", {"requests": 5, "server": {"chunked_prefill": False},
                         "workload": {"prompt": {"kind": "constant", "mean": 5000}}})
    config("kv1.json", {"requests": 5, "server": {"kv_pages": 1}})
    config("kvbig.json", {"requests": 5, "server": {"kv_pages": 10**9}})
    config("kvslots.json", {"requests": 5, "server": {"kv_pages": 2**22, "kv_page_size": 256}})
    config("requests.json", {"requests": 10**12})
    config("seed.json", {"seed": -1})
    config("unknown.json", {"server": {"kv_pagez": 4}})
    config("array.json", [])
    config("sys_prompt.json", {"workload": {"source": "chat_trace",
                                            "trace": {"system_prompt_tokens": 10**12}}})
    config("follow.json", {"requests": 100_000, "workload": {
        "source": "chat_trace", "trace": {"follow_up_prob": 1.0}}})
    config("cv.json", {"workload": {"process": "gamma", "cv": 1e-300}})
    config("mean.json", {"workload": {"prompt": {"kind": "constant", "mean": 1e300}}})
    config("cost.json", {"cost": {"overhead_ms": 1e300}})
    config("rate.json", {"workload": {"rate": float("inf")}})
    config("gpu.json", {"cost": {"gpu": "v100"}})
    config("gpu_model.json", {"cost": {"gpu": "a100", "model": "gpt-2"}})
    config("gpu_mix.json", {"cost": {"gpu": "a100", "overhead_ms": 3.0}})
    # cost.gpu with the profiles in a folder that has none: LLMDS_DATA cannot help here
    config("gpu_pages.json", {"server": {"kv_pages": 10**6}, "cost": {"gpu": "a100"}})
    (root / "bad_vidur" / "data" / "profiling").mkdir(parents=True)
    f["bad_vidur"] = root / "bad_vidur"
    write("deep.json", "[" * 100_000 + "]" * 100_000)
    write("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000)
    write("bad.json", "{not json")
    write("bad.toml", "requests = [")
    write("digits.json", '{"requests": ' + "9" * 5000 + "}")
    write("big.json", " " * (2 << 20) + "{}")
    write("latin.json", b'{"seed": 1}\xff')
    os.mkfifo(root / "fifo.json")
    f["fifo_json"] = root / "fifo.json"
    results("res_junk", {"junk.txt": "x", "other.json": json.dumps([1, 2])})
    results("res_badjson", {"indexed_heap.json": "{truncated"})
    results("res_deep", {"indexed_heap.json": "[" * 100_000 + "]" * 100_000})
    results("res_latin", {"indexed_heap.json": b'{"benchmark": "x"}\xff'})
    bad_records = {
        "res_name": {"benchmark": 5},
        "res_rows": {"benchmark": "x", "rows": "x"},
        "res_row": {"benchmark": "x", "rows": [5]},
        "res_ratio_name": {"benchmark": "x", "ratios": [{"name": 1}]},
        "res_ratio_met": {"benchmark": "x", "ratios": [{"name": "r", "met": "yes"}]},
        "res_notes": {"benchmark": "x", "notes": [1]},
        "res_plots": {"benchmark": "x", "plots": [{"series": 5}]},
        "res_error": {"benchmark": "x", "error": 5},
    }
    for name, rec in bad_records.items():
        results(name, {"x.json": json.dumps(rec)})
    results("res_fifo_dir", {})
    os.mkfifo(f["res_fifo_dir"] / "x.json")
    results("res_dir_json", {})
    (f["res_dir_json"] / "x.json").mkdir()
    write_record(_record(), root / "res_ok")
    f["res_ok"] = root / "res_ok"
    return f


# (id, argv with {name} placeholders for the files above, exit status, fragment)
CASES: list[tuple[str, list[str], int, str]] = [
    # the command itself
    ("no command", [], USAGE, "a command is required"),
    ("unknown command", ["foo"], USAGE, "unknown command 'foo'"),
    ("unknown option", ["--bogus"], USAGE, "--bogus"),
    ("unknown bench option", ["bench", "--bogus"], USAGE, "--bogus"),
    ("unknown report option", ["report", "--quick"], USAGE, "--quick"),
    ("unknown simulate option", ["simulate", "chat", "--out", "x"], USAGE, "--out"),
    ("report extra argument", ["report", "extra"], USAGE, "extra"),
    # bench options
    ("repeat not int", ["bench", "--repeat", "x"], USAGE, "--repeat must be an int"),
    ("repeat float", ["bench", "--repeat", "1.5"], USAGE, "--repeat must be an int"),
    ("repeat empty", ["bench", "--repeat", ""], USAGE, "--repeat must be an int"),
    ("repeat zero", ["bench", "--repeat", "0"], USAGE, "--repeat must be >= 1, got 0"),
    ("repeat huge", ["bench", "--repeat", "1001"], USAGE, "--repeat must be <= 1000"),
    ("repeat missing", ["bench", "--repeat"], USAGE, "--repeat: expected one argument"),
    ("bench seed negative", ["bench", "--seed", "-1"], USAGE, "--seed must be >= 0, got -1"),
    ("bench seed 2**32", ["bench", "--seed", str(2**32)], USAGE, "--seed must be <= 4294967295"),
    ("bench seed text", ["bench", "--seed", "abc"], USAGE, "--seed must be an int"),
    ("bench seed 5000 digits", ["bench", "--seed", "9" * 5000], USAGE, "--seed must be an int"),
    ("quick and full", ["bench", "--quick", "--full"], USAGE, "--full: not allowed with --quick"),
    ("unknown benchmark", ["bench", "nosuch"], USAGE, "unknown benchmark(s) 'nosuch'"),
    ("one unknown benchmark", ["bench", "indexed_heap", "nosuch"], USAGE, "'nosuch'"),
    ("data missing", ["bench", "--data", "{root}/none", "--out", "{root}/o1"], USAGE,
     "--data points to"),
    ("data is a file", ["bench", "--data", "{a_file}", "--out", "{root}/o2"], USAGE,
     "--data points to"),
    ("out is a file", ["bench", "indexed_heap", "--out", "{a_file}"], USAGE,
     "--out must be a folder"),
    ("out under a file", ["bench", "indexed_heap", "--out", "{a_file}/sub"], USAGE,
     "--out: cannot create folder"),
    ("out empty", ["bench", "indexed_heap", "--out", ""], USAGE, "--out must not be empty"),
    ("out missing value", ["bench", "--out"], USAGE, "--out: expected one argument"),
    # report
    ("results missing", ["report", "--results", "{root}/none"], USAGE, "--results folder"),
    ("results is a file", ["report", "--results", "{a_file}"], USAGE,
     "--results must be a folder"),
    ("results empty value", ["report", "--results", ""], USAGE, "--results must not be empty"),
    ("results empty folder", ["report", "--results", "{empty}", "--out", "{root}/r1"], USAGE,
     "holds no benchmark results"),
    ("results only junk", ["report", "--results", "{res_junk}", "--out", "{root}/r2"], USAGE,
     "holds no benchmark results"),
    ("results bad JSON", ["report", "--results", "{res_badjson}"], USAGE, "is not valid JSON"),
    ("results deep JSON", ["report", "--results", "{res_deep}"], USAGE, "nested too deeply"),
    ("results not UTF-8", ["report", "--results", "{res_latin}"], USAGE, "not UTF-8"),
    ("results FIFO", ["report", "--results", "{res_fifo_dir}"], USAGE, "not a regular file"),
    ("results folder named .json", ["report", "--results", "{res_dir_json}"], USAGE,
     "not a regular file"),
    ("record benchmark type", ["report", "--results", "{res_name}"], USAGE, "'benchmark'"),
    ("record rows type", ["report", "--results", "{res_rows}"], USAGE, "'rows'"),
    ("record row type", ["report", "--results", "{res_row}"], USAGE, "rows[0]"),
    ("record ratio name", ["report", "--results", "{res_ratio_name}"], USAGE,
     "ratios[0].name"),
    ("record ratio met", ["report", "--results", "{res_ratio_met}"], USAGE, "ratios[0].met"),
    ("record notes", ["report", "--results", "{res_notes}"], USAGE, "notes[0]"),
    ("record plots", ["report", "--results", "{res_plots}"], USAGE, "plots[0].series"),
    ("record error type", ["report", "--results", "{res_error}"], USAGE, "'error'"),
    ("report out is a file", ["report", "--results", "{res_ok}", "--out", "{a_file}"], USAGE,
     "--out must be a folder"),
    # simulate options
    ("simulate nothing", ["simulate"], USAGE, "give a SCENARIO"),
    ("unknown scenario", ["simulate", "nosuch"], USAGE, "unknown scenario 'nosuch'"),
    ("scenario and config", ["simulate", "chat", "--config", "{kv1_json}"], USAGE, "not both"),
    ("requests zero", ["simulate", "chat", "--requests", "0"], USAGE, "--requests must be >= 1"),
    ("requests negative", ["simulate", "chat", "--requests", "-5"], USAGE,
     "--requests must be >= 1"),
    ("requests text", ["simulate", "chat", "--requests", "x"], USAGE, "--requests must be an int"),
    ("requests 10**12", ["simulate", "chat", "--requests", str(10**12)], USAGE,
     "--requests must be <= 1000000"),
    ("requests over the chat cap", ["simulate", "chat", "--requests", "900000"], USAGE,
     "a chat trace of 900000 requests"),
    ("simulate seed negative", ["simulate", "chat", "--seed", "-1"], USAGE,
     "llmds simulate: --seed must be >= 0, got -1"),
    ("simulate seed huge", ["simulate", "chat", "--seed", str(2**64)], USAGE,
     "--seed must be <= 4294967295"),
    ("config value missing", ["simulate", "--config"], USAGE, "--config: expected one argument"),
    ("config missing", ["simulate", "--config", "{root}/none.json"], USAGE, "does not exist"),
    ("config is a folder", ["simulate", "--config", "{root}"], USAGE, "not a regular file"),
    ("config is a FIFO", ["simulate", "--config", "{fifo_json}"], USAGE, "not a regular file"),
    ("config bad JSON", ["simulate", "--config", "{bad_json}"], USAGE, "is not valid JSON"),
    ("config 5000-digit int", ["simulate", "--config", "{digits_json}"], USAGE,
     "is not valid JSON"),
    ("config deep JSON", ["simulate", "--config", "{deep_json}"], USAGE, "nested too deeply"),
    ("config too big", ["simulate", "--config", "{big_json}"], USAGE, "more than 1,048,576"),
    ("config not UTF-8", ["simulate", "--config", "{latin_json}"], USAGE, "not UTF-8"),
    ("config not an object", ["simulate", "--config", "{array_json}"], USAGE,
     "a config must be a table/object"),
    ("config unknown key", ["simulate", "--config", "{unknown_json}"], USAGE,
     "unknown key 'server.kv_pagez'"),
    ("prompt over the token budget", ["simulate", "--config", "{long_json}"], USAGE,
     "max_num_batched_tokens"),
    ("kv_pages 1", ["simulate", "--config", "{kv1_json}"], USAGE, "kv_pages=1"),
    ("kv_pages 10**9", ["simulate", "--config", "{kvbig_json}"], USAGE,
     "kv_pages must be <= 4194304"),
    ("kv slots over the cap", ["simulate", "--config", "{kvslots_json}"], USAGE,
     "kv_pages * kv_page_size"),
    ("config requests 10**12", ["simulate", "--config", "{requests_json}"], USAGE,
     "config key 'requests' must be <= 1000000"),
    ("config seed negative", ["simulate", "--config", "{seed_json}"], USAGE,
     "config key 'seed' must be in [0, 9223372036854775807], got -1"),
    ("config system prompt 10**12", ["simulate", "--config", "{sys_prompt_json}"], USAGE,
     "workload.trace.system_prompt_tokens"),
    ("config endless conversation", ["simulate", "--config", "{follow_json}"], USAGE,
     "a chat trace of 100000 requests"),
    ("config cv underflows", ["simulate", "--config", "{cv_json}"], USAGE, "workload.cv"),
    ("config mean 1e300", ["simulate", "--config", "{mean_json}"], USAGE, "mean must be <="),
    ("config cost 1e300", ["simulate", "--config", "{cost_json}"], USAGE, "overhead_ms"),
    ("config rate inf", ["simulate", "--config", "{rate_json}"], USAGE, "workload.rate"),
    ("config requests flag over the cap", ["simulate", "--config", "{kv1_json}",
                                           "--requests", str(10**7)], USAGE, "--requests"),
    # GPU profiles: --gpu/--model/--data and the config's cost.gpu/cost.model
    ("simulate unknown gpu", ["simulate", "chat", "--gpu", "v100"], USAGE,
     "--gpu: unknown GPU 'v100'; known: a100, h100"),
    ("simulate unknown model", ["simulate", "chat", "--model", "gpt-2"], USAGE,
     "--model: unknown model 'gpt-2'; known: llama-2-7b, llama-3-8b"),
    ("simulate data missing", ["simulate", "chat", "--gpu", "a100", "--data", "{root}/none"],
     USAGE, "--data folder"),
    ("simulate data a file", ["simulate", "chat", "--gpu", "a100", "--data", "{a_file}"],
     USAGE, "--data must be a folder"),
    ("simulate data without profiles", ["simulate", "chat", "--gpu", "a100", "--data",
                                        "{empty}"], USAGE, "--gpu: profiles_dir points to"),
    ("simulate profile file missing", ["simulate", "chat", "--gpu", "a100", "--data",
                                       "{bad_vidur}"], USAGE, "mlp.csv"),
    ("config unknown gpu", ["simulate", "--config", "{gpu_json}"], USAGE,
     "config key 'cost.gpu' must be one of 'a100', 'h100', got 'v100'"),
    ("config unknown model", ["simulate", "--config", "{gpu_model_json}"], USAGE,
     "config key 'cost.model' must be one of"),
    ("config gpu and guessed cost", ["simulate", "--config", "{gpu_mix_json}"], USAGE,
     "not both"),
    ("config gpu kv over memory", ["simulate", "--config", "{gpu_pages_json}", "--data",
                                   "{empty}"], USAGE, "config key 'cost.gpu': profiles_dir"),
]
if sys.version_info >= (3, 11):
    CASES += [
        ("config deep TOML", ["simulate", "--config", "{deep_toml}"], USAGE, "nested too deeply"),
        ("config bad TOML", ["simulate", "--config", "{bad_toml}"], USAGE, "is not valid TOML"),
    ]


def _fill(argv: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(**files) if "{" in a else a for a in argv]


@pytest.mark.parametrize(("argv", "code", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_line(capsys, files, argv, code, fragment):
    one_line_error(capsys, _fill(argv, files), code, fragment)


def test_bad_data_env_variable(capsys, files, monkeypatch):
    monkeypatch.setenv("LLMDS_DATA", str(files["root"] / "none"))
    one_line_error(capsys, ["bench", "indexed_heap", "--out", str(files["root"] / "o3")], USAGE,
                   "LLMDS_DATA points to")


def test_report_on_results_works_and_output_lists_files(capsys, files, tmp_path):
    assert main(["report", "--results", str(files["res_ok"]), "--out", str(tmp_path)]) == 0
    assert "report.md" in capsys.readouterr().out


# ----------------------------------------------------- run failures and signals
def _with_failing_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def boom(args: Any) -> int:
        raise exc

    monkeypatch.setattr(cli, "cmd_simulate", boom)


@pytest.mark.parametrize(("exc", "code", "fragment"), [
    (KeyboardInterrupt(), 130, "llmds simulate: interrupted"),
    (MemoryError(), FAILED, "out of memory"),
    (OSError(28, "No space left on device", "/x/out.json"), FAILED,
     "No space left on device: '/x/out.json'"),
    (PermissionError(13, "Permission denied", "/x"), FAILED, "Permission denied"),
    (RuntimeError("boom\nsecond line"), FAILED, "internal error: RuntimeError: second line"),
    (KeyError("k"), FAILED, "LLMDS_DEBUG=1"),
    (ValueError(""), FAILED, "internal error: ValueError (a bug in llmds"),
], ids=["interrupt", "memory", "disk full", "permission", "bug", "bug hint", "bug no text"])
def test_run_failures_are_one_line(capsys, monkeypatch, exc, code, fragment):
    _with_failing_command(monkeypatch, exc)
    one_line_error(capsys, ["simulate", "chat"], code, fragment)


def test_debug_env_shows_the_traceback_of_an_internal_error(monkeypatch):
    _with_failing_command(monkeypatch, RuntimeError("boom"))
    monkeypatch.setenv("LLMDS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["simulate", "chat"])


def test_broken_pipe_is_quiet(capsys, monkeypatch):
    _with_failing_command(monkeypatch, BrokenPipeError())
    assert main(["simulate", "chat"]) == FAILED
    assert capsys.readouterr().err == ""


def test_a_failing_benchmark_exits_1_with_one_summary_line(capsys, monkeypatch, tmp_path):
    from types import SimpleNamespace

    import llmds.bench as bench

    def run(ctx: Any) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(bench, "load", lambda name: SimpleNamespace(run=run))
    assert main(["bench", "indexed_heap", "--quick", "--out", str(tmp_path)]) == FAILED
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "FAILED: RuntimeError: kaboom" in captured.out
    assert "1 benchmark(s) failed" in captured.err
    assert "Traceback" in (tmp_path / "indexed_heap.error.json").read_text()


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"llmds {llmds.__version__}"
    assert main(["--help"]) == 0
    assert "Exit status" in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    assert "--requests" in capsys.readouterr().out


# ---------------------------------------------------------------- subprocesses
def _llmds(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmds", *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_python_dash_m_and_version():
    done = _llmds("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"llmds {llmds.__version__}"
    done = _llmds("simulate", "chat", "--seed", "-1")
    assert done.returncode == USAGE and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("llmds simulate: --seed must be >= 0, got -1 "
                                   "(see 'llmds simulate --help')")


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line():
    proc = subprocess.Popen([sys.executable, "-m", "llmds", "simulate", "mixed-slo",
                             "--requests", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        line = proc.stderr.readline()  # the progress bar's first line: the run started
        assert "mixed-slo" in line, line
        assert time.monotonic() < deadline
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "llmds simulate: interrupted"


def count_invocations() -> int:
    """Invocations this file runs (the figure in issue 12's closing note): the table,
    LLMDS_DATA, 7 injected failures, LLMDS_DEBUG, a broken pipe, a failing benchmark,
    3 help/version, 2 through ``python -m llmds`` and Ctrl-C."""
    return len(CASES) + 1 + 7 + 1 + 1 + 1 + 3 + 2 + 1


def test_invocation_count_is_reported():
    assert count_invocations() >= 90
