"""The full report: summary, claims check, memory, Word document, number tracing."""

import pytest

from llmds.bench.harness import BenchContext, result_record, write_record
from llmds.bench.report import CLAIMS, FILES, GOALS, MEMORY, SUMMARY, build_report, load_results
from llmds.bench.report_claims import FAILS, HOLDS, PARTLY, UNMEASURED, check_claims
from tests.report_trace import traceable_numbers, untraced_numbers

CTX = BenchContext(quick=True)


def _kv(saved=(0.634, 0.283)):
    rows = [{"impl": f"prefix sharing, page {p}", "stage": "memory", "page_size": p,
             "pages_with_sharing": 100 + i, "pages_without_sharing": 300 + i,
             "memory_saved_fraction": s}
            for i, (p, s) in enumerate(zip((16, 256), saved, strict=True))]
    return result_record("kv_cache", "KV cache", ctx=CTX, params={"page_sizes": [16, 256]},
                         data="synthetic, seed 0", rows=rows,
                         ratios=[{"name": "memory saved by prefix sharing, page 16",
                                  "value": saved[0], "goal": 0.3}])


def _sim(cap=0.877, p95=1070.89):
    rows = [{"impl": "llmds.sim", "load": 0.9, "max_wait_ms": 50.0, "capacity_vs_full": cap,
             "p95_e2e_ms": p95},
            {"impl": "llmds.sim", "load": 0.9, "max_wait_ms": 5.0, "capacity_vs_full": 0.61,
             "p95_e2e_ms": 80.5}]
    return result_record("sim", "Serving simulator", ctx=CTX,
                         params={"cost_model": {"overhead_ms": 8.0, "per_token_ms": 0.06}},
                         data="synthetic, seed 0", rows=rows,
                         ratios=[{"name": "goodput EDF / FCFS at load 1.2", "value": 1.42,
                                  "goal": 1.3},
                                 {"name": "memory saved by RadixCache vs off", "value": 0.41,
                                  "goal": None}])


def _hnsw(recall=0.9989, p95=0.1472, m=16):
    rows = [{"impl": impl, "ef": ef, "recall@10": recall - 0.01 * (ef == 10),
             "qps_one_per_cpu_s": 6649.8, "p95_ms": p95, "memory_mb": 62.93}
            for impl in ("llmds", "hnswlib") for ef in (10, 50)]
    return result_record("hnsw", "HNSW", ctx=CTX, params={"M": m, "efs": [10, 50]},
                         data="Fashion-MNIST sample", rows=rows,
                         ratios=[{"name": "QPS at recall >= 0.95 vs hnswlib (batch)",
                                  "value": 1.063, "goal": 1.1},
                                 {"name": "QPS vs faiss at ef=50", "value": 0.84,
                                  "goal": None}],
                         plots=[{"title": "recall vs qps", "kind": "line", "x_label": "recall",
                                 "y_label": "QPS", "series": [{"label": "llmds",
                                                              "x": [0.9889, 0.9989],
                                                              "y": [9000.0, 6649.8]}]}])


def _results(tmp_path, *records):
    folder = tmp_path / "results"
    for rec in records:
        write_record(rec, folder)
    return folder


def _claims(folder):
    return {c.key: c for c in check_claims(load_results(folder))}


def test_claim_verdicts_follow_the_measurements(tmp_path):
    c = _claims(_results(tmp_path / "a", _kv(), _sim(), _hnsw()))
    assert c["prefix_sharing"].verdict == PARTLY  # 0.634 meets 30%, 0.283 does not
    assert [e.ok for e in c["prefix_sharing"].evidence] == [True, False, True]
    assert c["max_wait"].verdict == FAILS
    assert c["hnsw"].verdict == HOLDS
    assert {e.source.split(":")[0] for e in c["hnsw"].evidence} == {"hnsw.json"}

    c = _claims(_results(tmp_path / "b", _kv((0.5, 0.31)), _sim(0.96, 95.0),
                         _hnsw(p95=7.5)))
    assert c["prefix_sharing"].verdict == HOLDS  # 0.5, 0.31 and the sim's 0.41: all >= 0.3
    assert c["max_wait"].verdict == HOLDS
    assert c["hnsw"].verdict == FAILS  # recall fine, p95 above 5 ms

    c = _claims(_results(tmp_path / "c", _kv((0.1, 0.0))))
    assert c["prefix_sharing"].verdict == FAILS
    assert c["max_wait"].verdict == UNMEASURED and c["hnsw"].verdict == UNMEASURED
    assert "llmds bench sim" in c["max_wait"].remarks[0]


def test_claims_need_the_claimed_configuration(tmp_path):
    c = _claims(_results(tmp_path, _hnsw(m=32)))
    assert c["hnsw"].verdict == UNMEASURED and "M=32" in c["hnsw"].remarks[0]
    folder = tmp_path / "err"
    folder.mkdir()
    (folder / "sim.error.json").write_text('{"benchmark": "sim", "error": "x\\nValueError: y"}')
    assert _claims(folder)["max_wait"].verdict == UNMEASURED


def test_every_number_in_the_report_comes_from_a_result_file(tmp_path):
    folder = _results(tmp_path, _kv(), _sim(), _hnsw())
    build_report(folder, tmp_path / "out", docx=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert untraced_numbers(md, folder) == []
    for section in ("Verdict: HOLDS IN PART.", "Verdict: DOES NOT HOLD.", "Verdict: HOLDS."):
        assert section in md
    # prose first: the summary, then the goals table, the claims, ..., the result files
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:3] == [f"## {SUMMARY}", f"## {GOALS}", f"## {CLAIMS}"]
    assert headings[-2:] == [f"## {MEMORY}", f"## {FILES}"]
    summary = md.split(f"## {SUMMARY}")[1].split(f"## {GOALS}")[0]
    assert summary.lstrip().startswith("This run timed 3 benchmarks")
    assert "3 measures: 2 met, 1 missed (HNSW 1 of 1)" in summary  # the counts are traced
    assert "prefix sharing's memory saving: holds in part" in summary
    headline = "| KV cache | memory saved by prefix sharing, page 16 | 0.634 | >= 0.3 | met |"
    assert headline + " 1 of 1 |" in summary
    # the checker is not vacuous: a number typed into the report is caught
    assert untraced_numbers(md + "\nthroughput rose by 17.25%\n", folder) == ["17.25"]
    assert "1,071" in traceable_numbers(folder)


def test_memory_section_lists_structure_memory_not_process_rss(tmp_path):
    folder = _results(tmp_path, _kv(), _hnsw())
    build_report(folder, tmp_path / "out", docx=False)
    md = (tmp_path / "out" / "report.md").read_text()
    memory = md.split(f"## {MEMORY}")[1].split(f"## {FILES}")[0]
    assert "| row | pages_with_sharing | pages_without_sharing | memory_saved_fraction |" in memory
    assert "| prefix sharing, page 16 | 100 | 300 | 0.634 |" in memory
    # the index's memory, measured at two search settings, is one row per library
    assert "| llmds | 62.9 |" in memory and "| hnswlib | 62.9 |" in memory
    assert "ef 10" not in memory and "peak_rss" not in memory


def test_report_shows_no_absolute_path_of_the_build_machine(tmp_path):
    rec = _hnsw()
    rec["data"] = "/home/ci/shared/datasets/ann/fashion-mnist (Fashion-MNIST sample)"
    rec["notes"] = ["vectors cached under /root/.cache/llmds/embeddings; ops/s and p50/p95 "
                    "stay; 1 / 16 stays", "results written to /tmp/run-7/results"]
    rec["rows"][0]["file"] = "/var/tmp/x/base-vectors.npy"
    folder = _results(tmp_path, rec)
    build_report(folder, tmp_path / "out", docx=False)
    md = (tmp_path / "out" / "report.md").read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    for text in (md, page):
        assert "datasets/ann/fashion-mnist (Fashion-MNIST sample)" in text
        assert "$LLMDS_CACHE/embeddings;" in text and "written to results" in text
        assert "| base-vectors.npy |" in md
        assert "ops/s and p50/p95 stay; 1 / 16 stays" in text
        for root in ("/home/", "/root/", "/tmp/", "/var/", str(tmp_path)):
            assert root not in text


def test_bar_plots_label_every_bar_and_keep_the_legend_above_the_axes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from llmds.bench.report_plots import render_plot

    drawn = []
    save = Figure.savefig

    def save_and_measure(fig, *args, **kwargs):
        save(fig, *args, **kwargs)  # lays the figure out and draws it
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        drawn.append((ax, ax.get_legend().get_window_extent(renderer),
                      ax.get_window_extent(renderer),
                      [b.get_window_extent(renderer) for c in ax.containers for b in c]))

    monkeypatch.setattr(Figure, "savefig", save_and_measure)
    spec = {"title": "hit rate", "kind": "bar", "x_label": "capacity", "y_label": "hit rate",
            "series": [{"label": "RadixCache", "x": ["unbounded", "200k"], "y": [0.777, 0.5]},
                       {"label": "SWARadixCache W=1024", "x": ["unbounded", "200k"],
                        "y": [0.771, 0.25]}]}
    assert render_plot(spec, tmp_path / "plot.png")
    ax, legend, plot_area, bars = drawn[0]
    assert [t.get_text() for t in ax.texts] == ["0.777", "0.5", "0.771", "0.25"]
    assert legend.y0 >= plot_area.y1 - 1  # above the plot area
    assert len(bars) == 4 and not any(legend.overlaps(b) for b in bars)


def test_word_report_follows_the_seed_outline(tmp_path):
    docx = pytest.importorskip("docx")
    folder = _results(tmp_path, _kv(), _sim(), _hnsw())
    paths = build_report(folder, tmp_path / "out", docx=True)
    assert [p.name for p in paths] == ["report.md", "report.html", "report.docx"]
    doc = docx.Document(str(tmp_path / "out" / "report.docx"))
    headings = [p.text for p in doc.paragraphs if p.style.name.startswith("Heading")]
    assert headings[:2] == ["Abstract", "Claims Checked"]  # the summary and claims first
    for h in ("1. Application Context", "2. Chosen Data Structures",
              "2.1 Paged KV Cache", "2.5 Serving Simulator", "3. Design Rationale & Complexity",
              "3.1 Memory Efficiency", "3.2 Latency vs. Throughput", "3.3 Retrieval Accuracy",
              "4. Implementation Overview", "5. Challenges & Limitations", "References"):
        assert h in headings
    text = "\n".join(p.text for p in doc.paragraphs)
    title_page = text.split("Abstract")[0]
    for field in ("Date: ", "Version: llmds ", "Machine: ", "Built from: kv_cache.json"):
        assert field in title_page
    cells = {c.text for t in doc.tables for row in t.rows for c in row.cells}
    assert "0.634" in cells and "1,071" in cells
    assert len(doc.inline_shapes) == 1  # the one plot
    assert "Verdict: DOES NOT HOLD." in text
    # notes are plain small text, not Word's large bold-italic "Intense Quote"
    assert {p.style.name for p in doc.paragraphs} >= {"Note"}
    assert "Intense Quote" not in {p.style.name for p in doc.paragraphs}
    # the raw rows stay in the result files: no (row, measure, value) dump
    assert "row" not in {t.rows[0].cells[0].text for t in doc.tables if len(t.columns) == 3}


def test_word_tables_fit_the_page_without_breaking_words_or_numbers(tmp_path):
    docx = pytest.importorskip("docx")
    from docx.shared import Inches

    from llmds.bench.report_docx import _EM_PER_CHAR, column_widths

    folder = _results(tmp_path, _kv(), _sim(), _hnsw())
    build_report(folder, tmp_path / "out", docx=True)
    doc = docx.Document(str(tmp_path / "out" / "report.docx"))
    for table in doc.tables:
        # 6.5 inches of text width; Word stores widths in twips (635 EMU), rounded
        assert sum(c.width for c in table.columns) <= Inches(6.5) + 635 * len(table.columns)
        for row in table.rows[1:]:
            for cell in row.cells:
                if cell.text.replace(",", "").replace(".", "").isdigit():
                    assert cell._tc.tcPr.find(
                        "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}noWrap"
                    ) is not None
    # a wide table: every column holds its longest word (or number) on one line
    header = ["benchmark", "measure", "value", "goal", "status", "source"]
    body = [["hybrid_cache", "requests/s, both hashing with SHA-256, vs vLLM v1 KVCacheManager "
             "(unbounded) " * 2, "4,649,160", ">= 0.95", "missed",
             "kv_cache.json: rows[impl='prefix sharing, page 16'].memory_saved_fraction"]]
    size, widths = column_widths(header, body)
    assert sum(widths) <= 6.5 + 1e-9 and size <= 9
    for j, width in enumerate(widths):
        longest = max(len(w) for cell in [header[j], body[0][j]] for w in cell.split())
        if j == 2:
            longest = len("4,649,160")
        assert width >= longest * size * _EM_PER_CHAR / 72


def test_docx_false_skips_and_true_requires_python_docx(tmp_path, monkeypatch):
    from llmds.bench import report_docx

    folder = _results(tmp_path, _kv())
    assert [p.name for p in build_report(folder, tmp_path / "o", docx=False)] == [
        "report.md", "report.html"]
    monkeypatch.setattr(report_docx, "available", lambda: False)
    assert len(build_report(folder, tmp_path / "o2")) == 2
    with pytest.raises(ImportError, match="python-docx"):
        build_report(folder, tmp_path / "o3", docx=True)


def test_committed_report_traces_to_its_committed_results():
    """docs/report is the latest full run's report: nobody edited a number in by hand."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "docs" / "report"
    md = (root / "report.md").read_text(encoding="utf-8")
    assert untraced_numbers(md, root / "results") == []
    assert f"## {CLAIMS}" in md
    for machine_root in ("/work/", "/root/", "/home/", "/tmp/"):
        assert machine_root not in md
    for name in ("kv_cache", "hnsw", "sim", "retrieval", "bm25"):
        assert (root / "results" / f"{name}.json").is_file()
