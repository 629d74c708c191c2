"""The Word version of the report, in the outline of the seed's ``report_generator.py``.

The seed wrote its figures as prose without measuring them; this writes the same
sections (abstract, application context, chosen data structures, design rationale and
complexity, implementation, challenges and limitations, references) around the measured
tables, the claims check and the plots of :func:`llmds.bench.report.report_blocks`.
Every number in it comes from those blocks, that is from the result files. Needs
python-docx (the ``report`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["available", "write_docx"]

Block = tuple[Any, ...]

# Which benchmark sections illustrate which chapter of the seed's outline.
_STRUCTURES = [
    ("2.1 Paged KV Cache",
     "Paged KV memory with prefix sharing and copy-on-write (KVCache over a PagedAllocator), "
     "a radix-tree prefix cache (RadixCache) and its sliding-window and Mamba variants. Pages "
     "are reference-counted; a page whose content hash is known is reused by any sequence "
     "with the same prefix.", ["kv_cache", "prefix_cache", "hybrid_cache"]),
    ("2.2 Indexed Binary Heap",
     "An indexed binary heap with O(log n) push, pop, decrease/increase-key and delete by "
     "key, under the scheduler (micro-batching and priorities), next to the admission "
     "controller and the token-aware LRU that share the serving path.",
     ["indexed_heap", "scheduler", "admissions", "token_lru"]),
    ("2.3 Hybrid Retrieval System",
     "BM25 over an inverted index with delta + varint compressed postings, an HNSW graph for "
     "dense vectors, and a pipeline that fuses both (weighted min-max or reciprocal-rank "
     "fusion) with a hot-query result cache.", ["bm25", "hnsw", "retrieval"]),
    ("2.4 Count-Min Sketch",
     "A count-min sketch with conservative update for frequency estimates in bounded "
     "memory; it decides which queries are hot enough to cache.", ["cmsketch"]),
]

_COMPLEXITY = [
    ("Operation", "Time", "Space"),
    ("KVCache attach / get / detach", "O(pages)", "O(pages in use)"),
    ("RadixCache match_prefix / insert", "O(prefix length)", "O(cached tokens)"),
    ("IndexedHeap push / pop / update", "O(log n)", "O(n)"),
    ("HNSW search", "O(log n) expected hops, O(ef * M) distances", "O(n * M)"),
    ("BM25 search", "O(sum of query terms' postings)", "O(postings), compressed"),
    ("Count-Min estimate / add", "O(depth)", "O(width * depth)"),
    ("TokenLRU get / put", "O(1) amortised", "O(entries)"),
]

_IMPLEMENTATION = [
    ("4.1 KV Cache Implementation",
     "KVCache keeps the page pool in NumPy arrays and chains page hashes so that a page's "
     "identity covers its whole prefix; copy-on-write copies a shared page only when a "
     "sequence writes to it. RadixCache stores token runs on edges, splits nodes on partial "
     "matches and evicts least-recently-used unlocked leaves."),
    ("4.2 Scheduler Implementation",
     "The Scheduler keeps waiting requests in an IndexedHeap keyed by priority (deadline "
     "for SLO requests), releases a batch when it is full or its oldest request has waited "
     "max_wait_ms, and the serving simulator (llmds.sim) drives it with admission control "
     "and KV memory under a cost model to measure goodput and latency."),
    ("4.3 Retrieval Pipeline",
     "RetrievalPipeline indexes each document in the InvertedIndex and, when it has an "
     "embedding, in HNSW; a query is answered by both, the candidate lists are fused and "
     "the top k taken through the IndexedHeap. Hot queries, counted by the Count-Min "
     "sketch, have their results kept in a TokenLRU until the index changes."),
]

_LIMITS = [
    ("5.1 Memory Fragmentation",
     "Paging bounds internal fragmentation to less than one page per sequence, but sharing "
     "happens only in whole pages: a shared prefix shorter than a page saves nothing. The "
     "memory table below is measured."),
    ("5.2 Parameter Tuning",
     "Page size, max_wait_ms, HNSW's M and ef, BM25's k1 and b and the fusion weight all "
     "trade one measure for another. The goals this run missed are listed below; the "
     "benchmark notes say what limits each."),
    ("5.3 Scalability",
     "Every structure is single-process; searches release the GIL inside numba kernels but "
     "the indexes are not safe for concurrent writers. The simulator's absolute times are "
     "only as good as its cost parameters; comparisons between policies are the point."),
]

_REFERENCES = [
    "Malkov, Y. A., & Yashunin, D. A. (2018). Efficient and robust approximate nearest "
    "neighbor search using Hierarchical Navigable Small World graphs. IEEE TPAMI.",
    "Robertson, S., & Zaragoza, H. (2009). The probabilistic relevance framework: BM25 and "
    "beyond. Foundations and Trends in Information Retrieval.",
    "Cormode, G., & Muthukrishnan, S. (2005). An improved data stream summary: the count-min "
    "sketch and its applications. Journal of Algorithms.",
    "Kwon, W., et al. (2023). Efficient memory management for large language model serving "
    "with PagedAttention. SOSP.",
    "Zheng, L., et al. (2024). SGLang: Efficient execution of structured language model "
    "programs (RadixAttention). NeurIPS.",
    "Cormack, G. V., Clarke, C. L. A., & Buettcher, S. (2009). Reciprocal rank fusion "
    "outperforms Condorcet and individual rank learning methods. SIGIR.",
    "Thakur, N., et al. (2021). BEIR: A heterogeneous benchmark for zero-shot evaluation of "
    "information retrieval models. NeurIPS Datasets and Benchmarks.",
]


def available() -> bool:
    """True when python-docx is importable."""
    return importlib.util.find_spec("docx") is not None


def _sections(blocks: list[Block], start: str) -> dict[str, list[Block]]:
    """Blocks after the ``h2`` titled ``start``, grouped by their ``h3`` title."""
    out: dict[str, list[Block]] = {}
    current: list[Block] | None = None
    inside = False
    for b in blocks:
        if b[0] in ("h1", "h2"):
            inside = b[0] == "h2" and b[1] == start
            current = None
        elif inside and b[0] == "h3":
            current = out.setdefault(b[1], [])
        elif inside and current is not None:
            current.append(b)
    return out


def _top(blocks: list[Block], title: str) -> list[Block]:
    """The blocks of the ``h2`` section ``title`` (without its heading)."""
    out: list[Block] = []
    inside = False
    for b in blocks:
        if b[0] in ("h1", "h2"):
            inside = b[0] == "h2" and b[1] == title
        elif inside:
            out.append(b)
    return out


_MAX_COLUMNS = 12  # wider tables do not fit a page: written as (row, measure, value)
_LABEL_COLUMNS = ("impl", "config", "stage", "experiment", "capacity", "page_size", "ef",
                  "max_wait_ms", "load", "policy", "collection", "mode")


def _long_format(header: list[str], body: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """A wide table as ``row | measure | value`` lines (empty cells left out)."""
    label_idx = [j for j, h in enumerate(header) if h in _LABEL_COLUMNS] or [0]
    out = []
    for row in body:
        label = ", ".join(row[j] if header[j] == "impl" else f"{header[j]}={row[j]}"
                          for j in label_idx if row[j] != "–")
        out += [[label, h, cell] for j, (h, cell) in enumerate(zip(header, row, strict=True))
                if j not in label_idx and cell != "–"]
    return ["row", "measure", "value"], out


def write_docx(records: list[dict[str, Any]], blocks: list[Block], path: Path) -> Path:
    """Write the Word report to ``path``; images are read relative to ``path``'s folder."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Inches, Pt

    doc = Document()
    base = path.parent

    def table(header: list[str], body: list[list[str]]) -> None:
        if len(header) > _MAX_COLUMNS:
            header, body = _long_format(header, body)
        t = doc.add_table(rows=1, cols=len(header))
        t.style = "Light Grid Accent 1"
        for cell, text in zip(t.rows[0].cells, header, strict=True):
            cell.text = str(text)
        for row in body:
            cells = t.add_row().cells
            for cell, text in zip(cells, row, strict=True):
                cell.text = str(text)
        size = Pt(7) if len(header) > 6 else Pt(8.5)
        # Column widths follow the text they hold (Word's autofit leaves equal columns).
        longest = [max(min(max([len(str(h))] + [len(str(r[j])) for r in body]), 40), 12)
                   for j, h in enumerate(header)]
        widths = [Inches(6.5 * n / sum(longest)) for n in longest]
        t.autofit = False
        for col, width in zip(t.columns, widths, strict=True):
            col.width = width  # the grid LibreOffice reads
        for row in t.rows:
            for cell, width in zip(row.cells, widths, strict=True):
                cell.width = width
        for row in t.rows:
            for cell in row.cells:
                for par in cell.paragraphs:
                    for run in par.runs:
                        run.font.size = size
        doc.add_paragraph()

    def render(items: list[Block], level_shift: int = 0) -> None:
        for b in items:
            kind = b[0]
            if kind in ("h1", "h2", "h3"):
                doc.add_heading(b[1], min(int(kind[1]) + level_shift, 4))
            elif kind == "p":
                doc.add_paragraph(b[1])
            elif kind == "quote":
                doc.add_paragraph(b[1], style="Intense Quote")
            elif kind == "bullet":
                doc.add_paragraph(b[1], style="List Bullet")
            elif kind == "table":
                table(b[1], b[2])
            elif kind == "img" and (base / b[1]).is_file():
                doc.add_picture(str(base / b[1]), width=Inches(6.0))
                cap = doc.add_paragraph(b[2])
                cap.alignment = WD_ALIGN_PARAGRAPH.CENTER

    by_title = {r.get("title", r["benchmark"]): r["benchmark"] for r in records}
    bench_sections = {by_title.get(t, t): v for t, v in
                      _sections(blocks, "Results by benchmark").items()}
    claim_sections = list(_sections(blocks, "The original report's claims, checked").items())
    env: dict[str, Any] = next((r["env"] for r in records if "env" in r), {})

    # Title page
    doc.add_heading("llmds: Data Structures for LLM Inference and Retrieval", 0)
    sub = doc.add_heading("Throughput, latency and memory, measured against peer libraries", 1)
    sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for b in blocks[1:3]:
        if b[0] == "p":
            doc.add_paragraph(b[1])
    if env:
        doc.add_paragraph(f"Generated {env.get('timestamp')}.")
    doc.add_page_break()

    doc.add_heading("Abstract", 1)
    doc.add_paragraph(
        "llmds is a Python library of the data structures that LLM inference servers and "
        "retrieval systems are built from. This report measures each of them against the "
        "library people would otherwise use, on the same data in the same run, and checks "
        "the figures claimed by the report the project started from.")
    render(_top(blocks, "Summary: every measure with a goal"))
    doc.add_page_break()

    doc.add_heading("1. Application Context", 1)
    doc.add_paragraph(
        "An inference server spends its memory on the KV cache and its time on batching "
        "decisions; a retrieval-augmented system adds lexical and vector search before "
        "generation. Prefix sharing, scheduling under latency objectives, admission control "
        "and hot-query caching decide how many requests a machine serves within its SLOs.")

    doc.add_heading("2. Chosen Data Structures", 1)
    for heading, text, names in _STRUCTURES:
        doc.add_heading(heading, 2)
        doc.add_paragraph(text)
        for name in names:
            items = bench_sections.get(name)
            if items is None:
                doc.add_paragraph(f"No {name} result in this run.")
                continue
            title = next((r.get("title", name) for r in records if r["benchmark"] == name), name)
            doc.add_heading(title, 3)
            # The measures with a goal here; all tables and plots in the appendix.
            first = next((b for b in items if b[0] == "table"), None)
            goals = [row for row in first[2] if row[2] != "–"] if first is not None else []
            if first is not None and first[1][:3] == ["measure", "value", "goal"] and goals:
                table(first[1], goals)
            else:
                doc.add_paragraph("No goal was set for this benchmark; its measurements are "
                                  "in the appendix.")

    doc.add_heading("3. Design Rationale & Complexity", 1)
    doc.add_paragraph("The original report justified its design with three figures; each is "
                      "checked below against this run's measurements.")
    for heading, (title, items) in zip(
            ("3.1 Memory Efficiency", "3.2 Latency vs. Throughput", "3.3 Retrieval Accuracy"),
            claim_sections, strict=False):
        doc.add_heading(heading, 2)
        doc.add_paragraph(title)
        render(items)
    doc.add_paragraph("Complexity analysis:")
    table(list(_COMPLEXITY[0]), [list(r) for r in _COMPLEXITY[1:]])

    doc.add_heading("4. Implementation Overview", 1)
    for heading, text in _IMPLEMENTATION:
        doc.add_heading(heading, 2)
        doc.add_paragraph(text)

    doc.add_heading("5. Challenges & Limitations", 1)
    for heading, text in _LIMITS:
        doc.add_heading(heading, 2)
        doc.add_paragraph(text)
        if heading.startswith("5.1"):
            render(_top(blocks, "Memory"))
        elif heading.startswith("5.2"):
            summary = _top(blocks, "Summary: every measure with a goal")
            tab = next((b for b in summary if b[0] == "table"), None)
            if tab is not None:
                missed = [row for row in tab[2] if row[-1] == "missed"]
                if missed:
                    table(tab[1], missed)
                else:
                    doc.add_paragraph("Every goal was met in this run.")

    doc.add_page_break()
    doc.add_heading("Appendix: Measured Results", 1)
    for name, items in bench_sections.items():
        title = next((r.get("title", name) for r in records if r["benchmark"] == name), name)
        doc.add_heading(title, 2)
        render(items)

    doc.add_page_break()
    doc.add_heading("References", 1)
    for ref in _REFERENCES:
        doc.add_paragraph(ref, style="List Number")
    doc.save(str(path))
    return path
