"""Turn benchmark JSON results into a Markdown and an HTML report with plots.

Reads only ``<results>/*.json`` written by ``llmds bench``; every number in the
report is copied from those files (nothing is typed in by hand). Plots need
matplotlib (the ``bench`` extra); without it the report says so and keeps the tables.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

__all__ = ["build_report", "load_results", "report_blocks"]


_MAX_RESULT_BYTES = 64 << 20
# Fields the report reads, and the JSON types they must have when present.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "title": (str,), "error": (str,), "rows": (list,), "ratios": (list,), "plots": (list,),
    "notes": (list,), "params": (dict,), "env": (dict,),
}


def _check_record(rec: dict[str, Any], where: str) -> None:
    """``ValueError`` naming the file and field if ``rec`` lacks the shape the report reads."""
    from llmds._validate import show

    def bad(field: str, want: str, value: Any) -> ValueError:
        return ValueError(f"result file {where}: {field} must be {want}, got {show(value)}")

    if not isinstance(rec["benchmark"], str) or not rec["benchmark"]:
        raise bad("'benchmark'", "a non-empty str", rec["benchmark"])
    for key, types in _FIELD_TYPES.items():
        if key in rec and not isinstance(rec[key], types):
            raise bad(f"{key!r}", f"a JSON {'object' if types == (dict,) else types[0].__name__}",
                      rec[key])
    for key in ("rows", "ratios", "plots"):
        for i, item in enumerate(rec.get(key, [])):
            if not isinstance(item, dict):
                raise bad(f"{key}[{i}]", "a JSON object", item)
    for i, note in enumerate(rec.get("notes", [])):
        if not isinstance(note, str):
            raise bad(f"notes[{i}]", "a str", note)
    for i, ratio in enumerate(rec.get("ratios", [])):
        if not isinstance(ratio.get("name"), str):
            raise bad(f"ratios[{i}].name", "a str", ratio.get("name"))
        met = ratio.get("met")
        if met is not None and not isinstance(met, bool):
            raise bad(f"ratios[{i}].met", "true, false or null", met)
    for i, plot in enumerate(rec.get("plots", [])):
        series = plot.get("series", [])
        if not isinstance(series, list) or not all(isinstance(x, dict) for x in series):
            raise bad(f"plots[{i}].series", "a list of JSON objects", series)


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Load every ``*.json`` result record (and ``*.error.json``), in suite order.

    ``*.json`` files that are not result records (no ``"benchmark"`` key) are ignored.
    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` naming the
    file for one that is not a regular file, larger than 64 MiB, not JSON, nested
    too deeply, or a record of the wrong shape.
    """
    from llmds._files import read_text_file
    from llmds.bench import BENCHMARKS

    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {str(results_dir)!r} does not exist; "
                                "run `llmds bench` first")
    records = []
    for path in sorted(results_dir.glob("*.json")):
        text = read_text_file(path, "result file", _MAX_RESULT_BYTES)
        try:
            rec = json.loads(text)
        except RecursionError:
            raise ValueError(f"result file {str(path)!r} is nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"result file {str(path)!r} is not valid JSON: {exc}") from None
        if isinstance(rec, dict) and "benchmark" in rec:
            _check_record(rec, repr(str(path)))
            rec["_file"] = path.name
            records.append(rec)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    records.sort(key=lambda r: (order.get(r["benchmark"], len(order)), r["_file"]))
    return records


def fmt(value: Any, digits: int = 3) -> str:
    """Format a measured value for a table cell (``digits`` significant digits, thousands
    separators)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _scalar_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key in cols or key == "skipped":
                continue
            if isinstance(value, (int, float, str, bool)) or value is None:
                cols.append(key)
    return cols


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts one level deep become ``outer.inner`` columns (e.g. ``latency_ms.p95``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                if isinstance(v2, (int, float, str, bool)) or v2 is None:
                    out[f"{key}.{k2}"] = v2
        else:
            out[key] = value
    return out


def _tables(rec: dict[str, Any]) -> tuple[list[tuple[list[str], list[list[str]]]], list[str]]:
    """The measured rows as tables, and the skipped peers.

    A benchmark's rows often come in kinds (a quality sweep, then latency rows, then
    cache rows) with different fields; consecutive rows whose fields mostly agree
    (Jaccard >= 0.6) share a table, so no table is a sparse union of every kind.
    """
    rows = [_flatten(r) for r in rec.get("rows", [])]
    ran = [r for r in rows if "skipped" not in r]
    groups: list[tuple[set[str], list[dict[str, Any]]]] = []
    for row in ran:
        keys = set(_scalar_columns([row]))
        if groups:
            seen, members = groups[-1]
            if len(keys & seen) >= 0.6 * len(keys | seen):
                seen |= keys
                members.append(row)
                continue
        groups.append((keys, [row]))
    tables = []
    for _, members in groups:
        cols = _scalar_columns(members)
        tables.append((cols, [[fmt(r.get(c)) for c in cols] for r in members]))
    skipped = [f"{r.get('impl', '?')}: {r['skipped']}" for r in rows if "skipped" in r]
    return tables, skipped


def _md_table(header: list[str], body: list[list[str]]) -> str:
    if not header:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


#: A table cell that holds a number (or a goal such as ">= 0.3"): right-aligned, never wrapped.
NUMERIC_CELL = re.compile(r"^(?:[<>]=\s)?-?[\d,]*\.?\d+(?:e[+-]?\d+)?$|^–$|^nan$|^inf$")


def _html_table(header: list[str], body: list[list[str]]) -> str:
    if not header:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    def cell(c: str) -> str:
        css = (' class="num"' if NUMERIC_CELL.match(c) else
               ' class="missed"' if c == "missed" else "")
        return f"<td{css}>{html.escape(c)}</td>"

    rows = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _ratio_row(r: dict[str, Any]) -> list[str]:
    """``[measure, value, goal, status]`` of one ratio entry."""
    goal = r.get("goal")
    sense = ">=" if r.get("higher_is_better", True) else "<="
    met = {True: "met", False: "missed", None: "–"}[r.get("met")]
    value = fmt(r.get("value"))
    if goal is not None and value == fmt(goal) and r.get("value") != goal:
        value = fmt(r.get("value"), 4)  # 0.2995 missed a goal of 0.3: show why
    return [r["name"], value, f"{sense} {fmt(goal)}" if goal is not None else "–", met]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "plot"


Block = tuple[Any, ...]
"""One piece of the report: ``("h1"|"h2"|"h3"|"p"|"quote"|"bullet", text)``,
``("table", header, body)`` or ``("img", relative_path, alt_text)``."""

# Section titles; the Word document picks its material from the sections by these names.
SUMMARY = "Summary"
GOALS = "Every measure with a goal"
CLAIMS = "Claims checked: the design this library started from"
RESULTS = "Results by benchmark"
MEMORY = "Memory of the structures"
FILES = "Result files"

# An absolute path: a slash that does not follow a word, dot or bracket, then two or more
# path components ("ops/s" and "1 / 16" are not paths).
_PATH = re.compile(r"(?<![\w.~$:/)\]])/(?:[^\s/,;:()'\"\[\]]+/)+[^\s/,;:()'\"\[\]]*")


def _short_path(match: re.Match[str]) -> str:
    """A build machine's absolute path as a reader can use it: from ``datasets/`` on,
    under ``$LLMDS_CACHE``, or the name alone."""
    parts = match.group(0).rstrip("/").split("/")
    if "datasets" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("datasets"):])
    for i in range(len(parts) - 1):
        if parts[i] == ".cache" and parts[i + 1] == "llmds":
            return "/".join(["$LLMDS_CACHE", *parts[i + 2:]])
    return parts[-1]


def _without_paths(block: Block) -> Block:
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return _PATH.sub(_short_path, value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return block if block[0] == "img" else (block[0], *[clean(v) for v in block[1:]])


def short_title(rec: dict[str, Any]) -> str:
    """The structure a benchmark measures: its title up to the first ``:`` or `` (``."""
    title = str(rec.get("title") or rec["benchmark"])
    return re.split(r":| \(", title, maxsplit=1)[0].strip() or rec["benchmark"]


def run_facts(records: list[dict[str, Any]]) -> dict[str, str]:
    """What ran where: ``version``, ``commits`` ("commit abc1234" or "commits a, b"),
    ``date`` and ``machine`` ("?" where no record says)."""
    envs = [r["env"] for r in records if isinstance(r.get("env"), dict)]
    if not envs:
        return {"version": "?", "commits": "commit ?", "date": "?", "machine": "?"}
    env = envs[0]
    commits = list(dict.fromkeys(str(e.get("git_commit")) for e in envs if e.get("git_commit")))
    dates = sorted({str(e.get("timestamp", ""))[:10] for e in envs if e.get("timestamp")})
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    return {
        "version": str(versions.get("llmds", "?")),
        "commits": ("commit " if len(commits) == 1 else "commits ") + (", ".join(commits) or "?"),
        "date": " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "?",
        "machine": f"{env.get('platform')}, {env.get('cpu_count')} CPUs, "
                   f"{env.get('memory_gb')} GiB, Python {env.get('python')}",
    }


def _record_blocks(rec: dict[str, Any], plots_dir: Path) -> tuple[list[Block], bool]:
    """Blocks for one benchmark's section; the flag says matplotlib was missing."""
    from llmds.bench.report_plots import as_list, render_plot

    title = rec.get("title", rec["benchmark"])
    out: list[Block] = [("h3", title)]
    if "error" in rec:
        last = (rec["error"].strip().splitlines() or ["(no message)"])[-1]
        return [*out, ("p", f"This benchmark failed: {last}")], False
    size = rec.get("size", "quick" if rec.get("quick") else "default")
    out.append(("p", f"Data: {rec.get('data')}. Size: {size}; {rec.get('repeat')} timed "
                     f"repeats after warm-up; seed {rec.get('seed')}. File: {rec['_file']}."))
    params = rec.get("params") or {}
    if params:
        out.append(("p", "Parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in params.items())))
    ratio_rows = [_ratio_row(r) for r in rec.get("ratios", [])]
    if ratio_rows:
        out.append(("table", ["measure", "value", "goal", "status"], ratio_rows))
    tables, skipped = _tables(rec)
    out += [("table", cols, body) for cols, body in tables if cols]
    out += [("bullet", f"Skipped peer {s}") for s in skipped]
    out += [("quote", note) for note in rec.get("notes", [])]
    missing = False
    for j, spec in enumerate(rec.get("plots", [])):
        # A peer that was skipped leaves an empty series: plot what was measured.
        series = [x for x in spec.get("series", []) if as_list(x.get("y"))]
        if not series:
            continue
        spec = {**spec, "series": series}
        name = f"{rec['benchmark']}-{j}-{_slug(spec.get('title', ''))}.png"
        if render_plot(spec, plots_dir / name):
            # The title is drawn in the plot: no caption repeats it.
            out.append(("img", f"plots/{name}", spec.get("title", "")))
        else:
            missing = True
    return out, missing


def _goal_counts(rec: dict[str, Any]) -> tuple[int, int, int]:
    """(measures with a goal, met, missed) of one record."""
    goals = [r for r in rec.get("ratios", []) if r.get("goal") is not None]
    return (len(goals), sum(r.get("met") is True for r in goals),
            sum(r.get("met") is False for r in goals))


def _summary_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """What was measured and what came of it, in a few sentences and one table.

    Every number is a count over the records or a value copied from them.
    """
    from llmds.bench.report_claims import CLAIM_TOPICS, check_claims

    ran = [r for r in records if "error" not in r]
    out: list[Block] = [("h2", SUMMARY)]
    if ran:
        out.append(("p", f"This run timed {len(ran)} benchmarks, each against the libraries "
                         "people would otherwise use, on the same workload in the same "
                         "process: " + ", ".join(short_title(r) for r in ran) + ". Rates are "
                         "per CPU-second with every library on one thread; the ratios "
                         "(llmds / peer) are the figures to read."))
        real = [r for r in ran if r.get("data") and not str(r["data"]).startswith("synthetic")]
        if real:
            out.append(("p", "Real data: " + "; ".join(f"{short_title(r)} on {r['data']}"
                                                       for r in real)
                        + ". The others run seeded synthetic workloads."))
    counts = [_goal_counts(r) for r in ran]
    goals, met, missed = (sum(c[i] for c in counts) for i in range(3))
    if goals:
        text = f"The project set a goal for {goals} measures: {met} met, {missed} missed"
        misses = [f"{short_title(r)} {c[2]} of {c[0]}" for r, c in zip(ran, counts, strict=True)
                  if c[2]]
        out.append(("p", text + (" (" + ", ".join(misses) + ")" if misses else "") + ". Each "
                    "benchmark's notes below say what limits its misses."))
    verdicts = [f"{CLAIM_TOPICS[c.key]}: {c.verdict}" for c in check_claims(records)]
    out.append(("p", "The design this library started from states figures it never measured; "
                     "checked against this run, " + "; ".join(verdicts) + "."))
    body = []
    for rec, (n_goals, n_met, _) in zip(ran, counts, strict=True):
        ratios = rec.get("ratios", [])
        head = next((r for r in ratios if r.get("goal") is not None), ratios[0] if ratios
                    else None)
        if head is not None:
            body.append([short_title(rec), *_ratio_row(head),
                         f"{n_met} of {n_goals}" if n_goals else "no goal"])
    if body:
        out.append(("p", "The headline of each benchmark (its first measure with a goal):"))
        out.append(("table", ["structure", "headline measure", "value", "goal", "status",
                              "goals met"], body))
    failed = [rec["benchmark"] for rec in records if "error" in rec]
    if failed:
        out.append(("p", "Failed benchmarks: " + ", ".join(failed) + "."))
    skipped = list(dict.fromkeys(f"{s} ({rec['benchmark']})" for rec in ran
                                 for s in _tables(rec)[1]))  # one line per distinct skip
    if skipped:
        out.append(("p", "Peers reported as skipped: " + "; ".join(skipped) + "."))
    return out


def _goal_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """Every measure that has a goal, across the suite, with its status."""
    body = [[rec["benchmark"], *row] for rec in records for r in rec.get("ratios", [])
            if r.get("goal") is not None for row in [_ratio_row(r)]]
    if not body:
        return []
    return [("h2", GOALS),
            ("p", "Status compares the value with the goal the project set; the benchmark "
                  "sections below say what limits each miss."),
            ("table", ["benchmark", "measure", "value", "goal", "status"], body)]


def _claim_blocks(records: list[dict[str, Any]]) -> list[Block]:
    from llmds.bench.report_claims import check_claims

    out: list[Block] = [("h2", CLAIMS),
                        ("p", "The design this library started from states the figures below "
                              "without measuring them. Each is checked against the results "
                              "in this run; the source column names the file and field.")]
    for claim in check_claims(records):
        out.append(("h3", f"Claim: {claim.statement}"))
        out.append(("p", f"Verdict: {claim.verdict.upper()}. Criterion: {claim.criterion}"))
        if claim.evidence:
            body = [[e.label, fmt(e.value, 4),
                     {True: "yes", False: "no", None: "context"}[e.ok], e.source]
                    for e in claim.evidence]
            out.append(("table", ["measured", "value", "meets the claim", "source"], body))
        out += [("quote", r) for r in claim.remarks]
    return out


_MEMORY_KEYS = re.compile(r"^(memory_mb|index_bytes|bytes_per_posting|file_bytes_per_posting|"
                          r"memory_saved_fraction|pages_with_sharing|pages_without_sharing|"
                          r".*per_request.*|.*memory_saved.*)$")
_ROW_LABELS = ("impl", "experiment", "config", "collection", "page_size", "load", "ef")


def _row_label(flat: dict[str, Any]) -> str:
    """The name of a measured row: its ``impl`` and the other label fields it lacks."""
    impl = fmt(flat.get("impl")) if flat.get("impl") is not None else ""
    parts = [impl] if impl else []
    for key in _ROW_LABELS[1:]:
        value = flat.get(key)
        if value is not None and fmt(value) not in impl:
            parts.append(f"{key} {fmt(value)}")
    return ", ".join(parts)


def _memory_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """Memory measures of the structures themselves (not the process RSS): one table per
    benchmark, a row per measured configuration and a column per measure.

    Rows of one implementation with the same memory figures (an index measured at
    several search settings) are shown once, under the implementation's name.
    """
    out: list[Block] = []
    for rec in records:
        rows: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
        for row in rec.get("rows", []):
            flat = _flatten(row)
            found = {k: v for k, v in flat.items() if _MEMORY_KEYS.match(k)
                     and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if not found:
                continue
            same = (flat.get("impl"), tuple(sorted((k, fmt(v)) for k, v in found.items())))
            if same in rows:  # a repeat of the same figures: name the implementation only
                rows[same] = (fmt(flat.get("impl")), found)
            else:
                rows[same] = (_row_label(flat), found)
        if not rows:
            continue
        measures = list(dict.fromkeys(k for _, found in rows.values() for k in found))
        body = [[label, *(fmt(found.get(k)) for k in measures)] for label, found in rows.values()]
        out += [("p", f"{short_title(rec)} ({rec['_file']}):"),
                ("table", ["row", *measures], body)]
    return [("h2", MEMORY), *out] if out else []


def report_blocks(records: list[dict[str, Any]], results_dir: Path,
                  plots_dir: Path) -> list[Block]:
    """The whole report as renderer-neutral blocks (Markdown, HTML and Word share them).

    Order: the run, the summary, every goal, the claims check, one section per
    benchmark, memory, the result files. Absolute paths of the machine that ran the
    benchmarks are shortened (see ``_short_path``); plots are drawn into ``plots_dir``.
    """
    facts = run_facts(records)
    out: list[Block] = [("h1", "llmds benchmark report")]
    out.append(("p", f"llmds {facts['version']} ({facts['commits']}), run "
                     f"{facts['date']} on {facts['machine']}. Every number below is copied "
                     "from the result files listed at the end; ratios compare llmds with "
                     "the peer library timed on the same workload in the same run."))
    out += _summary_blocks(records)
    out += _goal_blocks(records)
    out += _claim_blocks(records)
    out.append(("h2", RESULTS))
    missing = False
    for rec in records:
        blocks, miss = _record_blocks(rec, plots_dir)
        out += blocks
        missing |= miss
    if missing:
        out.append(("p", "Plots were skipped: matplotlib is not installed "
                         "(pip install llmds[bench])."))
    out += _memory_blocks(records)
    out.append(("h2", FILES))
    out.append(("p", f"In the folder {results_dir.resolve().name or results_dir}:"))
    out += [("bullet", rec["_file"]) for rec in records]
    return [_without_paths(b) for b in out]


def _to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "quote":
            lines += [f"> {b[1]}", ""]
        elif kind == "bullet":
            lines += [f"- {b[1]}"]
        elif kind == "table":
            lines += [_md_table(b[1], b[2]), ""]
        elif kind == "img":
            lines += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(lines) + "\n"


def _to_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    in_list = False
    for b in blocks:
        kind = b[0]
        if in_list and kind != "bullet":
            parts.append("</ul>")
            in_list = False
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(b[1])}</{kind}>")
        elif kind == "p":
            text = html.escape(b[1])
            for verdict, css in (("HOLDS IN PART", "partly"), ("DOES NOT HOLD", "fails"),
                                 ("NOT MEASURED", "unmeasured"), ("HOLDS", "holds")):
                tag = f"Verdict: {verdict}."
                if text.startswith(tag):
                    text = f'<span class="verdict {css}">{tag}</span>' + text[len(tag):]
                    break
            parts.append(f"<p>{text}</p>")
        elif kind == "quote":
            parts.append(f"<blockquote>{html.escape(b[1])}</blockquote>")
        elif kind == "bullet":
            if not in_list:
                parts.append("<ul>")
                in_list = True
            parts.append(f"<li>{html.escape(b[1])}</li>")
        elif kind == "table":
            parts.append(_html_table(b[1], b[2]))
        elif kind == "img":
            # The plot draws its own title; the alt text repeats it for screen readers.
            parts.append(f'<figure><img src="{html.escape(b[1])}" alt="{html.escape(b[2])}">'
                         "</figure>")
    if in_list:
        parts.append("</ul>")
    return _HTML_HEAD + "\n".join(parts) + "\n</body></html>\n"


def build_report(results_dir: Path, out_dir: Path, *, docx: bool | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``.

    Also ``report.docx`` (the Word report, see :mod:`llmds.bench.report_docx`) when
    python-docx is installed (the ``report`` extra); ``docx=True`` requires it,
    ``docx=False`` skips it. Returns the written report files.
    """
    records = load_results(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    blocks = report_blocks(records, results_dir, plots_dir)
    md_path = out_dir / "report.md"
    md_path.write_text(_to_markdown(blocks), encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(_to_html(blocks), encoding="utf-8")
    paths = [md_path, html_path]
    if docx is not False:
        from llmds.bench import report_docx

        if report_docx.available():
            paths.append(report_docx.write_docx(records, blocks, out_dir / "report.docx"))
        elif docx:
            raise ImportError("the Word report needs python-docx: pip install llmds[report]")
    return paths


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>llmds benchmark report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f3f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.missed { color: #a01010; font-weight: bold; }
.verdict { font-weight: bold; padding: 0 0.3em; border-radius: 3px; }
.holds { background: #d7f0d7; } .partly { background: #fbeecb; } .fails { background: #f6d3d3; }
.unmeasured { background: #e4e4e4; }
h3 { margin-top: 1.6em; }
blockquote { color: #444; border-left: 3px solid #9ab; margin: 0.5em 0; padding-left: 0.8em; }
figure { margin: 1em 0; } img { max-width: 100%; }
</style></head><body>
"""
