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


_NUMERIC_CELL = re.compile(r"^(?:[<>]=\s)?-?[\d,]*\.?\d+(?:e[+-]?\d+)?$|^–$|^nan$|^inf$")


def _html_table(header: list[str], body: list[list[str]]) -> str:
    if not header:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    def cell(c: str) -> str:
        css = (' class="num"' if _NUMERIC_CELL.match(c) else
               ' class="missed"' if c == "missed" else "")
        return f"<td{css}>{html.escape(c)}</td>"

    rows = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _ratio_rows(rec: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in rec.get("ratios", []):
        goal = r.get("goal")
        sense = ">=" if r.get("higher_is_better", True) else "<="
        met = {True: "met", False: "missed", None: "–"}[r.get("met")]
        value = fmt(r.get("value"))
        if goal is not None and value == fmt(goal) and r.get("value") != goal:
            value = fmt(r.get("value"), 4)  # 0.2995 missed a goal of 0.3: show why
        out.append([r["name"], value, f"{sense} {fmt(goal)}" if goal is not None else "–", met])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "plot"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _render_plot(spec: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    kind = spec.get("kind", "line")
    series = spec.get("series", [])
    if kind == "bar" and any(len(_as_list(s.get("x"))) > 1 for s in series):
        # Grouped bars: one group per x category, one bar per series within it.
        cats: list[str] = []
        for s in series:
            cats += [str(c) for c in _as_list(s.get("x")) if str(c) not in cats]
        width = 0.8 / max(len(series), 1)
        for i, s in enumerate(series):
            ys = dict(zip([str(c) for c in _as_list(s.get("x"))], _as_list(s["y"]), strict=False))
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(cats))]
            ax.bar(xs, [ys.get(c, 0.0) for c in cats], width=width, label=str(s["label"]))
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=20)
        ax.legend(fontsize=8)
    elif kind == "bar":
        labels = [str(s["label"]) for s in series]
        values = [_as_list(s["y"])[0] for s in series]
        ax.bar(labels, values, color="#4477aa")
        ax.tick_params(axis="x", rotation=20)
    else:
        for s in series:
            ax.plot(s["x"], s["y"], marker="o" if s.get("marker", True) else None,
                    label=str(s["label"]), linewidth=1.5 if s.get("marker", True) else 1.0)
        if len(series) > 1:
            ax.legend(fontsize=8)
    if spec.get("log_x"):
        ax.set_xscale("log")
    if spec.get("log_y"):
        ax.set_yscale("log")
    ax.set_title(spec.get("title", ""), fontsize=10)
    ax.set_xlabel(spec.get("x_label", ""))
    ax.set_ylabel(spec.get("y_label", ""))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


Block = tuple[Any, ...]
"""One piece of the report: ``("h1"|"h2"|"h3"|"p"|"quote"|"bullet", text)``,
``("table", header, body)`` or ``("img", relative_path, caption)``."""


def _record_blocks(rec: dict[str, Any], plots_dir: Path) -> tuple[list[Block], bool]:
    """Blocks for one benchmark's section; the flag says matplotlib was missing."""
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
    ratio_rows = _ratio_rows(rec)
    if ratio_rows:
        out.append(("table", ["measure", "value", "goal", "status"], ratio_rows))
    tables, skipped = _tables(rec)
    out += [("table", cols, body) for cols, body in tables if cols]
    out += [("bullet", f"Skipped peer {s}") for s in skipped]
    out += [("quote", note) for note in rec.get("notes", [])]
    missing = False
    for j, spec in enumerate(rec.get("plots", [])):
        # A peer that was skipped leaves an empty series: plot what was measured.
        series = [x for x in spec.get("series", []) if _as_list(x.get("y"))]
        if not series:
            continue
        spec = {**spec, "series": series}
        name = f"{rec['benchmark']}-{j}-{_slug(spec.get('title', ''))}.png"
        if _render_plot(spec, plots_dir / name):
            out.append(("img", f"plots/{name}", spec.get("title", "")))
        else:
            missing = True
    return out, missing


def _summary_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """Every measure that has a goal, across the suite, with its status."""
    body = []
    for rec in records:
        for row in _ratio_rows(rec):
            if row[2] != "–":
                body.append([rec["benchmark"], *row])
    failed = [rec["benchmark"] for rec in records if "error" in rec]
    out: list[Block] = [("h2", "Summary: every measure with a goal")]
    if body:
        out.append(("table", ["benchmark", "measure", "value", "goal", "status"], body))
        out.append(("p", "Status compares the value with the goal the project set; the "
                         "benchmark sections below say what limits each miss."))
    if failed:
        out.append(("p", "Failed benchmarks: " + ", ".join(failed) + "."))
    return out


def _claim_blocks(records: list[dict[str, Any]]) -> list[Block]:
    from llmds.bench.report_claims import check_claims

    out: list[Block] = [("h2", "The original report's claims, checked"),
                        ("p", "The report this project started from states the figures below "
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


def _memory_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """Memory measures of the structures themselves (not the process RSS)."""
    body = []
    for rec in records:
        for row in rec.get("rows", []):
            flat = _flatten(row)
            label = " ".join(fmt(flat[k]) for k in ("impl", "stage", "experiment", "config",
                                                     "collection", "page_size", "ef")
                             if k in flat and flat[k] is not None)
            for key, value in flat.items():
                if _MEMORY_KEYS.match(key) and isinstance(value, (int, float)):
                    body.append([rec["benchmark"], label, key, fmt(value)])
    if not body:
        return []
    return [("h2", "Memory"), ("table", ["benchmark", "row", "measure", "value"], body)]


def report_blocks(records: list[dict[str, Any]], results_dir: Path,
                  plots_dir: Path) -> list[Block]:
    """The whole report as renderer-neutral blocks (Markdown, HTML and Word share them)."""
    out: list[Block] = [("h1", "llmds benchmark report")]
    out.append(("p", f"Generated from the result files in {results_dir} (listed at the end). "
                     "Every number below is copied from those files; ratios compare llmds "
                     "with the peer library timed on the same workload in the same run."))
    env = next((r["env"] for r in records if "env" in r), None)
    if env:
        out.append(("p", f"Environment: Python {env.get('python')} on {env.get('platform')}, "
                         f"{env.get('cpu_count')} CPUs, {env.get('memory_gb')} GiB; commit "
                         f"{env.get('git_commit')}; {env.get('timestamp')}."))
    out += _summary_blocks(records)
    out += _claim_blocks(records)
    out.append(("h2", "Results by benchmark"))
    missing = False
    for rec in records:
        blocks, miss = _record_blocks(rec, plots_dir)
        out += blocks
        missing |= miss
    if missing:
        out.append(("p", "Plots were skipped: matplotlib is not installed "
                         "(pip install llmds[bench])."))
    out += _memory_blocks(records)
    out.append(("h2", "Result files"))
    out += [("bullet", rec["_file"]) for rec in records]
    return out


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
            cap = html.escape(b[2])
            parts.append(f'<figure><img src="{html.escape(b[1])}" alt="{cap}">'
                         f"<figcaption>{cap}</figcaption></figure>")
    if in_list:
        parts.append("</ul>")
    return _HTML_HEAD + "\n".join(parts) + "\n</body></html>\n"


def build_report(results_dir: Path, out_dir: Path, *, docx: bool | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``.

    Also ``report.docx`` (the seed report's outline, filled with the measurements) when
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
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missed { color: #a01010; font-weight: bold; }
.verdict { font-weight: bold; padding: 0 0.3em; border-radius: 3px; }
.holds { background: #d7f0d7; } .partly { background: #fbeecb; } .fails { background: #f6d3d3; }
.unmeasured { background: #e4e4e4; }
h3 { margin-top: 1.6em; }
blockquote { color: #444; border-left: 3px solid #9ab; margin: 0.5em 0; padding-left: 0.8em; }
figure { margin: 1em 0; } img { max-width: 100%; }
</style></head><body>
"""
