"""The Word version of the report: a document a reader finishes, about 20 pages.

It follows the outline of the report of the design this library started from
(abstract, application context, chosen data structures, design rationale and
complexity, implementation, challenges and limitations, references), led by a title
page, the summary and the check of that design's claims. Each structure's section
holds the benchmark's measures with a goal, its notes and its first plot; the full
tables and every plot stay in the HTML/Markdown report and the raw measurements in
the JSON result files, which the document names.

Every number in it comes from the blocks of :func:`llmds.bench.report.report_blocks`,
that is from the result files. Tables are laid out for the page: column widths follow
their content (no word or number is broken across lines; numbers never wrap), the
font shrinks for wide tables, and header rows repeat across pages. Needs python-docx
(the ``report`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from llmds.bench.report import (
    CLAIMS,
    GOALS,
    MEMORY,
    NUMERIC_CELL,
    RESULTS,
    SUMMARY,
    run_facts,
    short_title,
)

__all__ = ["available", "write_docx"]

Block = tuple[Any, ...]

# Which benchmarks illustrate which chapter of the outline.
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
     "fusion) with a hot-query result cache, and the same pipeline sharded over Ray "
     "actors.", ["bm25", "hnsw", "retrieval", "sharded"]),
    ("2.4 Count-Min Sketch",
     "A count-min sketch with conservative update for frequency estimates in bounded "
     "memory; it decides which queries are hot enough to cache.", ["cmsketch"]),
    ("2.5 Serving Simulator",
     "A discrete-event server built from the structures above (admission control, the "
     "scheduler, KV memory) under an iteration cost model, to compare serving policies by "
     "goodput and latency.", ["sim"]),
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

_CONTEXT = (
    "An inference server spends its memory on the KV cache and its time on batching "
    "decisions; a retrieval-augmented system adds lexical and vector search before "
    "generation. Prefix sharing, scheduling under latency objectives, admission control "
    "and hot-query caching decide how many requests a machine serves within its SLOs. "
    "Each structure below is measured against the library a developer would otherwise "
    "use, on the same workload in the same process.")

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
     "memory each structure used in this run:"),
    ("5.2 Parameter Tuning",
     "Page size, max_wait_ms, HNSW's M and ef, BM25's k1 and b and the fusion weight all "
     "trade one measure for another. The goals this run missed (section 2 gives each "
     "benchmark's notes on what limits them):"),
    ("5.3 Scalability",
     "Each structure lives in one process; searches release the GIL inside numba kernels "
     "but the indexes are not safe for concurrent writers. llmds.dist shares KV pages and "
     "admission budgets between processes through Redis. The simulator's absolute times "
     "are only as good as its cost parameters; comparisons between policies are the "
     "point."),
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

_TEXT_WIDTH_IN = 6.5  # Letter with 1-inch margins
_PLOT_WIDTH_IN = 4.6
_CELL_PADDING_IN = 0.16  # Word's default left + right cell margins
# Average advance of a character in Calibri, in ems (digits are 0.507; a little slack
# covers capitals and bold headers).
_EM_PER_CHAR = 0.53
_VERDICT_SHADES = {"HOLDS": "D7F0D7", "HOLDS IN PART": "FBEECB", "DOES NOT HOLD": "F6D3D3",
                   "NOT MEASURED": "E4E4E4"}


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


def column_widths(header: list[str], body: list[list[str]],
                  text_width: float = _TEXT_WIDTH_IN) -> tuple[float, list[float]]:
    """Font size (pt) and column widths (inches) that fit a table on the page.

    A column is never narrower than its longest word (or, for numbers, which do not
    wrap, its longest cell), so nothing breaks mid-word; the space left over goes to the
    columns whose text wraps, in proportion to how much they would need to not wrap.
    The font steps down from 9 pt to 7 pt until the narrowest layout fits.
    """
    cols = list(zip(header, *body, strict=True))

    def unbroken(cell: str) -> int:  # the longest run of characters that must not wrap
        return len(cell) if NUMERIC_CELL.match(cell) else max(map(len, cell.split()), default=1)

    for size in (9.0, 8.5, 8.0, 7.5, 7.0):
        char = size * _EM_PER_CHAR / 72

        def inches(chars: float, char: float = char) -> float:
            return chars * char + _CELL_PADDING_IN

        # header cells are bold: about 10% wider
        least = [inches(max([1.1 * unbroken(col[0]), *map(unbroken, col[1:])]))
                 for col in cols]
        natural = [inches(max([1.1 * len(col[0]), *map(len, col[1:])])) for col in cols]
        if sum(least) <= text_width or size == 7.0:
            break
    # Columns of text share the spare width in proportion to their unwrapped width
    # (numbers have all they need); as much as a column needs to not wrap at all, and
    # then, if the table is narrower than the page, a share of the rest.
    text = [0.0 if all(NUMERIC_CELL.match(c) for c in col[1:]) else n
            for n, col in zip(natural, cols, strict=True)]
    if sum(natural) <= text_width:
        spare, base, weight = text_width - sum(natural), natural, text
    else:
        spare, base = max(text_width - sum(least), 0.0), least
        weight = [n if n > m else 0.0 for n, m in zip(text, least, strict=True)]
    total = sum(weight) or 1.0
    return size, [b + spare * k / total for b, k in zip(base, weight, strict=True)]


class _Writer:
    """python-docx calls for the report's parts: styles, tables, notes, plots."""

    def __init__(self, base: Path) -> None:
        from docx import Document
        from docx.shared import Inches, Pt, RGBColor

        self.base = base
        self.doc = doc = Document()
        for section in doc.sections:
            section.left_margin = section.right_margin = Inches(1.0)
            section.top_margin = section.bottom_margin = Inches(1.0)
        normal = doc.styles["Normal"]
        normal.font.name = "Calibri"
        normal.font.size = Pt(10.5)
        normal.paragraph_format.space_after = Pt(6)
        note = doc.styles.add_style("Note", 1)  # 1: paragraph style
        note.base_style = normal
        note.font.size = Pt(9)
        note.font.color.rgb = RGBColor(0x4D, 0x4D, 0x4D)
        note.paragraph_format.left_indent = Inches(0.15)
        note.paragraph_format.space_after = Pt(3)
        self._footer()

    def _footer(self) -> None:
        from docx.enum.text import WD_ALIGN_PARAGRAPH
        from docx.oxml import OxmlElement
        from docx.oxml.ns import qn

        par = self.doc.sections[0].footer.paragraphs[0]
        par.alignment = WD_ALIGN_PARAGRAPH.CENTER
        par.add_run("llmds benchmark report · page ")
        field = OxmlElement("w:fldSimple")
        field.set(qn("w:instr"), "PAGE")
        run = OxmlElement("w:r")
        text = OxmlElement("w:t")
        text.text = "1"
        run.append(text)
        field.append(run)
        par._p.append(field)

    def heading(self, text: str, level: int) -> None:
        self.doc.add_heading(text, level)

    def para(self, text: str, style: str | None = None) -> Any:
        return self.doc.add_paragraph(text, style=style)

    def note(self, text: str) -> None:
        self.doc.add_paragraph(text, style="Note")

    def verdict(self, text: str) -> None:
        """``Verdict: X. Criterion: ...`` with the verdict shaded by its outcome."""
        from docx.oxml import OxmlElement
        from docx.oxml.ns import qn

        head, _, rest = text.partition(". ")
        word = head.removeprefix("Verdict: ")
        par = self.doc.add_paragraph()
        run = par.add_run(head + ".")
        run.bold = True
        shade = OxmlElement("w:shd")
        shade.set(qn("w:val"), "clear")
        shade.set(qn("w:fill"), _VERDICT_SHADES.get(word, "FFFFFF"))
        run._r.get_or_add_rPr().append(shade)
        if rest:
            par.add_run(" " + rest)

    def plot(self, relative: str) -> None:
        from docx.enum.text import WD_ALIGN_PARAGRAPH
        from docx.shared import Inches

        if (self.base / relative).is_file():
            self.doc.add_picture(str(self.base / relative), width=Inches(_PLOT_WIDTH_IN))
            self.doc.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER

    def table(self, header: list[str], body: list[list[str]]) -> None:
        """A table sized by :func:`column_widths`: numbers right-aligned and unwrapped,
        the header row bold, shaded and repeated on each page, rows never split."""
        from docx.enum.text import WD_ALIGN_PARAGRAPH
        from docx.oxml import OxmlElement
        from docx.oxml.ns import qn
        from docx.shared import Inches, Pt, RGBColor

        def prop(parent: Any, tag: str, **attrs: str) -> None:
            element = OxmlElement(tag)
            for key, value in attrs.items():
                element.set(qn(f"w:{key}"), value)
            parent.append(element)

        # Field names wrap at their underscores, so a narrow column of numbers keeps
        # its width.
        header = [str(h).replace("_", " ") for h in header]
        body = [[str(c) for c in row] for row in body]
        size, widths = column_widths(header, body)
        t = self.doc.add_table(rows=1 + len(body), cols=len(header))
        t.style = "Table Grid"
        t.autofit = False
        borders = OxmlElement("w:tblBorders")
        for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
            prop(borders, f"w:{edge}", val="single", sz="4", space="0", color="BFBFBF")
        t._tbl.tblPr.append(borders)
        for col, width in zip(t.columns, widths, strict=True):
            col.width = Inches(width)  # the grid LibreOffice reads
        for i, (row, texts) in enumerate(zip(t.rows, [header, *body], strict=True)):
            tr_pr = row._tr.get_or_add_trPr()
            prop(tr_pr, "w:cantSplit")
            if i == 0:
                prop(tr_pr, "w:tblHeader")
            for cell, text, width in zip(row.cells, texts, widths, strict=True):
                cell.width = Inches(width)
                par = cell.paragraphs[0]
                par.paragraph_format.space_after = Pt(0)
                run = par.add_run(text)
                run.font.size = Pt(size)
                tc_pr = cell._tc.get_or_add_tcPr()
                if i == 0:
                    run.bold = True
                    prop(tc_pr, "w:shd", val="clear", color="auto", fill="E8EDF4")
                elif NUMERIC_CELL.match(text):
                    prop(tc_pr, "w:noWrap")
                    par.alignment = WD_ALIGN_PARAGRAPH.RIGHT
                elif text == "missed":
                    run.bold = True
                    run.font.color.rgb = RGBColor(0xA0, 0x10, 0x10)
        self.doc.add_paragraph().paragraph_format.space_after = Pt(2)

    def blocks(self, items: list[Block]) -> None:
        """Paragraphs, notes, bullets and tables of the shared report blocks."""
        for b in items:
            if b[0] == "p" and b[1].startswith("Verdict: "):
                self.verdict(b[1])
            elif b[0] == "p":
                self.para(b[1])
            elif b[0] == "quote":
                self.note(b[1])
            elif b[0] == "bullet":
                self.para(b[1], style="List Bullet")
            elif b[0] == "table":
                self.table(b[1], b[2])
            elif b[0] == "img":
                self.plot(b[1])


def _title_page(w: _Writer, records: list[dict[str, Any]]) -> None:
    from docx.shared import Pt

    facts = run_facts(records)
    for _ in range(4):
        w.para("")
    w.doc.add_heading("llmds: Data Structures for LLM Inference and Retrieval", 0)
    w.para("Benchmark report: throughput, latency and memory, measured against the "
           "libraries people would otherwise use", style="Subtitle")
    for _ in range(3):
        w.para("")
    for label, value in (("Date", facts["date"]),
                         ("Version", f"llmds {facts['version']} ({facts['commits']})"),
                         ("Machine", facts["machine"]),
                         ("Built from", ", ".join(r["_file"] for r in records))):
        par = w.para("")
        par.paragraph_format.space_after = Pt(4)
        par.add_run(f"{label}: ").bold = True
        par.add_run(value)
    w.doc.add_page_break()


def _claims_first(w: _Writer, records: list[dict[str, Any]]) -> None:
    from llmds.bench.report_claims import check_claims

    w.heading("Claims Checked", 1)
    w.para("The design this library started from states three figures without measuring "
           "them. Section 3 gives each verdict's criterion and the measurements behind it.")
    w.table(["claim (quoted)", "verdict", "details"],
            [[c.statement, c.verdict, f"section 3.{i}"]
             for i, c in enumerate(check_claims(records), start=1)])


def _structure_sections(w: _Writer, records: list[dict[str, Any]],
                        blocks: list[Block]) -> None:
    by_name = {r["benchmark"]: r for r in records}
    sections = _sections(blocks, RESULTS)
    for heading, text, names in _STRUCTURES:
        w.heading(heading, 2)
        w.para(text)
        for name in names:
            rec = by_name.get(name)
            if rec is None:
                w.note(f"No {name} result in this run.")
                continue
            items = sections.get(rec.get("title", name), [])
            w.heading(short_title(rec), 3)
            rest = str(rec.get("title", name))[len(short_title(rec)):].strip(" :")
            if rest:
                w.para(rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest)
            if "error" in rec:
                w.blocks(items)
                continue
            data = next((b for b in items if b[0] == "p" and b[1].startswith("Data:")), None)
            if data is not None:
                w.note(data[1])
            ratios = next((b for b in items if b[0] == "table"
                           and b[1] == ["measure", "value", "goal", "status"]), None)
            if ratios is not None:
                with_goal = [row for row in ratios[2] if row[2] != "–"]
                if not with_goal:
                    w.note("No goal was set for this benchmark; its measures:")
                w.table(ratios[1], with_goal or ratios[2])
            w.blocks([b for b in items if b[0] == "quote"])
            w.blocks([b for b in items if b[0] == "img"][:1])


def write_docx(records: list[dict[str, Any]], blocks: list[Block], path: Path) -> Path:
    """Write the Word report to ``path``; images are read relative to ``path``'s folder."""
    w = _Writer(path.parent)
    _title_page(w, records)

    w.heading("Abstract", 1)
    w.para("llmds is a Python library of the data structures that LLM inference servers "
           "and retrieval systems are built from. This report gives the results of one run "
           "of its benchmark suite and checks the figures claimed by the design the library "
           "started from.")
    w.blocks(_top(blocks, SUMMARY))
    _claims_first(w, records)

    w.heading("1. Application Context", 1)
    w.para(_CONTEXT)
    w.heading("2. Chosen Data Structures", 1)
    _structure_sections(w, records, blocks)

    w.heading("3. Design Rationale & Complexity", 1)
    w.para("The design this library started from justified itself with three figures; each "
           "is checked below against this run's measurements.")
    claims = list(_sections(blocks, CLAIMS).items())
    for heading, (title, items) in zip(
            ("3.1 Memory Efficiency", "3.2 Latency vs. Throughput", "3.3 Retrieval Accuracy"),
            claims, strict=False):
        w.heading(heading, 2)
        w.para(title.removeprefix("Claim: ")).runs[0].italic = True
        w.blocks(items)
    w.heading("3.4 Complexity", 2)
    w.table(list(_COMPLEXITY[0]), [list(r) for r in _COMPLEXITY[1:]])

    w.heading("4. Implementation Overview", 1)
    for heading, text in _IMPLEMENTATION:
        w.heading(heading, 2)
        w.para(text)

    w.heading("5. Challenges & Limitations", 1)
    for heading, text in _LIMITS:
        w.heading(heading, 2)
        w.para(text)
        if heading.startswith("5.1"):
            w.blocks(_top(blocks, MEMORY))
        elif heading.startswith("5.2"):
            goals = next((b for b in _top(blocks, GOALS) if b[0] == "table"), None)
            missed = [row for row in goals[2] if row[-1] == "missed"] if goals else []
            if goals is not None and missed:
                w.table(goals[1], missed)
            else:
                w.note("Every goal was met in this run.")

    w.heading("References", 1)
    for ref in _REFERENCES:
        w.para(ref, style="List Number")
    w.heading("Where the Full Measurements Are", 1)
    w.para("This document shows each benchmark's measures with a goal and one plot. Every "
           "measured row, parameter and plot is in the HTML and Markdown report built from "
           "the same result files (report.html, report.md), and the raw measurements, with "
           "each timed repeat, are in the result files themselves: "
           + ", ".join(r["_file"] for r in records) + ".")
    w.doc.save(str(path))
    return path
