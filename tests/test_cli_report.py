import html.parser
import json

import pytest

from llmds.bench.harness import BenchContext, result_record, write_record
from llmds.bench.report import build_report, fmt, load_results
from llmds.cli import main, summary_table


def _record(name="indexed_heap"):
    return result_record(
        name, "IndexedHeap vs pqdict", ctx=BenchContext(quick=True),
        params={"ops": 1000}, data="synthetic, seed 0",
        rows=[{"impl": "llmds", "ops_per_cpu_s": 123456.0, "latency_ms": {"p50": 0.001}},
              {"impl": "pqdict", "ops_per_cpu_s": 41152.0},
              {"impl": "heapdict", "skipped": "not importable"}],
        ratios=[{"name": "ops/CPU-s llmds / pqdict", "value": 3.0, "goal": 3.0}],
        notes=["a measured note"],
        plots=[{"title": "ops/s", "kind": "bar", "x_label": "", "y_label": "ops/s",
                "series": [{"label": "llmds", "x": [0], "y": [123456.0]},
                           {"label": "pqdict", "x": [0], "y": [41152.0]}]},
               {"title": "grouped", "kind": "bar", "x_label": "set", "y_label": "nDCG@10",
                "series": [{"label": "llmds", "x": ["a", "b"], "y": [0.5, 0.6]},
                           {"label": "peer", "x": ["a", "b"], "y": [0.4, 0.7]}]},
               {"title": "only skipped peers", "kind": "bar",
                "series": [{"label": "sglang", "x": [], "y": []}]},
               {"title": "one skipped peer", "kind": "bar",
                "series": [{"label": "llmds", "x": [0], "y": [2.0]},
                           {"label": "sglang", "x": [], "y": []}]},
               {"title": "recall vs qps", "kind": "line", "log_y": True, "x_label": "recall",
                "y_label": "QPS", "series": [{"label": "llmds", "x": [0.9, 0.99],
                                              "y": [1000.0, 500.0]}]}],
    )


class _Checker(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.imgs, self.cells = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)


def test_report_from_results_folder(tmp_path):
    results = tmp_path / "results"
    write_record(_record(), results)
    (results / "junk.txt").write_text("ignored")
    paths = build_report(results, tmp_path / "report", docx=False)
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert [p.name for p in paths] == ["report.md", "report.html"]
    # every number comes from the result file
    for number in ("123,456", "41,152", "3", "0.001"):
        assert number in md
    assert "Skipped peer heapdict" in md and "a measured note" in md
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == ["html"] or checker.stack == []
    assert "123,456" in checker.cells
    assert len(checker.imgs) == 4  # the plot with nothing measured is left out
    for src in checker.imgs:
        assert (tmp_path / "report" / src).stat().st_size > 1000


def test_report_shows_failed_benchmark(tmp_path):
    results = tmp_path / "r"
    results.mkdir()
    (results / "hnsw.error.json").write_text(json.dumps(
        {"benchmark": "hnsw", "error": "Traceback...\nValueError: boom"}))
    build_report(results, tmp_path / "out")
    assert "This benchmark failed" in (tmp_path / "out" / "report.md").read_text()


def test_report_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="llmds bench"):
        load_results(tmp_path / "none")


def test_fmt():
    assert fmt(None) == "–" and fmt(True) == "yes" and fmt(1234567) == "1,234,567"
    assert fmt(0.000123456) == "0.000123" and fmt(12345.6) == "12,346"
    assert fmt(float("nan")) == "nan"


def test_summary_table_lists_ratios_skips_and_failures():
    text = summary_table([_record(), {"benchmark": "hnsw", "error": "x\nValueError: boom"}])
    assert "ops/CPU-s llmds / pqdict" in text and "yes" in text
    assert "skipped peer heapdict" in text and "FAILED: ValueError: boom" in text


def test_summary_table_wraps_long_measures_instead_of_cutting_them():
    long = "requests/s, both hashing with SHA-256, vs vLLM v1 KVCacheManager (unbounded, 50k)"
    rec = {"benchmark": "kv_cache", "ratios": [{"name": long, "value": 2.65, "goal": 3.0,
                                                "met": False}],
           "rows": [{"impl": "vllm", "skipped": "not importable: " + "no module named x " * 8}]}
    narrow = summary_table([rec], width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert " ".join(narrow.split()).count(long) == 0  # wrapped...
    words = narrow.split()
    for word in long.split():  # ...but every word is there, in order
        assert word in words
        words = words[words.index(word) + 1:]
    assert "2.65" in narrow.splitlines()[2] and narrow.splitlines()[3].startswith(" " * 15)
    assert narrow.split().count("named") == 8  # the skip reason is not cut either
    wide = summary_table([rec], width=200)
    assert long in wide and len(wide.splitlines()) == 4


def test_cli_rejects_unknown_benchmark(capsys):
    assert main(["bench", "no-such-bench", "--out", "/tmp/llmds-none"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_cli_rejects_bad_repeat(capsys):
    assert main(["bench", "--repeat", "0"]) == 2


def test_cli_report_command(tmp_path, capsys):
    write_record(_record(), tmp_path / "res")
    assert main(["report", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "o")]) == 0
    assert "report.html" in capsys.readouterr().out


def test_cli_simulate_list_and_errors(capsys):
    assert main(["simulate", "--list"]) == 0
    assert "micro-batch" in capsys.readouterr().out
    assert main(["simulate", "no-such-scenario"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
    assert main(["simulate", "chat", "--requests", "0"]) == 2


def test_cli_simulate_prints_metrics_and_reports_progress(capsys):
    assert main(["simulate", "chat", "--requests", "300", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "completed                            300" in captured.out
    assert "ttft" in captured.out and "simulating" in captured.err
