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

__all__ = ["build_report", "load_results"]


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Load every ``*.json`` result record (and ``*.error.json``), in suite order."""
    from llmds.bench import BENCHMARKS

    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {str(results_dir)!r} does not exist; "
                                "run `llmds bench` first")
    records = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if isinstance(rec, dict) and "benchmark" in rec:
            rec["_file"] = path.name
            records.append(rec)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    records.sort(key=lambda r: (order.get(r["benchmark"], len(order)), r["_file"]))
    return records


def fmt(value: Any) -> str:
    """Format a measured value for a table cell (3 significant digits, thousands separators)."""
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
        return f"{value:.3g}"
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


def _tables(rec: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    rows = [_flatten(r) for r in rec.get("rows", [])]
    ran = [r for r in rows if "skipped" not in r]
    cols = _scalar_columns(ran)
    body = [[fmt(r.get(c)) for c in cols] for r in ran]
    skipped = [f"{r.get('impl', '?')}: {r['skipped']}" for r in rows if "skipped" in r]
    return cols, body, skipped


def _md_table(header: list[str], body: list[list[str]]) -> str:
    if not header:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    if not header:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _ratio_rows(rec: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in rec.get("ratios", []):
        goal = r.get("goal")
        sense = ">=" if r.get("higher_is_better", True) else "<="
        met = {True: "met", False: "missed", None: "–"}[r.get("met")]
        out.append([r["name"], fmt(r.get("value")), f"{sense} {fmt(goal)}" if goal is not None
                    else "–", met])
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
            ax.plot(s["x"], s["y"], marker="o", label=str(s["label"]))
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


def build_report(results_dir: Path, out_dir: Path) -> list[Path]:
    """Write ``report.md`` and ``report.html`` (plus ``plots/*.png``) into ``out_dir``."""
    records = load_results(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    md: list[str] = ["# llmds benchmark report", ""]
    hp: list[str] = ["<h1>llmds benchmark report</h1>"]
    intro = (f"Generated from {len(records)} result file(s) in `{results_dir}`. Every number "
             "below is copied from those files; ratios compare llmds with the peer library "
             "timed on the same workload in the same run.")
    md += [intro, ""]
    hp.append(f"<p>{html.escape(intro)}</p>")
    if records:
        env = next((r["env"] for r in records if "env" in r), None)
        if env:
            desc = (f"Python {env.get('python')} on {env.get('platform')}, "
                    f"{env.get('cpu_count')} CPUs, {env.get('memory_gb')} GiB; "
                    f"commit {env.get('git_commit')}; {env.get('timestamp')}")
            md += [f"Environment: {desc}", ""]
            hp.append(f"<p>Environment: {html.escape(desc)}</p>")
    matplotlib_missing = False
    for rec in records:
        title = rec.get("title", rec["benchmark"])
        md += [f"## {title}", ""]
        hp.append(f"<h2>{html.escape(title)}</h2>")
        if "error" in rec:
            last = rec["error"].strip().splitlines()[-1]
            md += [f"**This benchmark failed:** `{last}`", ""]
            hp.append(f"<p><b>This benchmark failed:</b> <code>{html.escape(last)}</code></p>")
            continue
        size = rec.get("size", "quick" if rec.get("quick") else "default")
        meta = (f"Data: {rec.get('data')}. Size: {size}; "
                f"{rec.get('repeat')} timed repeats after warm-up; seed {rec.get('seed')}.")
        md += [meta, ""]
        hp.append(f"<p>{html.escape(meta)}</p>")
        params = rec.get("params") or {}
        if params:
            ptxt = ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
            md += [f"Parameters: {ptxt}", ""]
            hp.append(f"<p>Parameters: {html.escape(ptxt)}</p>")
        ratio_rows = _ratio_rows(rec)
        if ratio_rows:
            header = ["measure", "value", "goal", "status"]
            md += [_md_table(header, ratio_rows), ""]
            hp.append(_html_table(header, ratio_rows))
        cols, body, skipped = _tables(rec)
        if cols:
            md += [_md_table(cols, body), ""]
            hp.append(_html_table(cols, body))
        for s in skipped:
            md += [f"- Skipped peer {s}"]
            hp.append(f"<p>Skipped peer {html.escape(s)}</p>")
        if skipped:
            md.append("")
        for note in rec.get("notes", []):
            md += [f"> {note}", ""]
            hp.append(f"<blockquote>{html.escape(note)}</blockquote>")
        for j, spec in enumerate(rec.get("plots", [])):
            # A peer that was skipped leaves an empty series: plot what was measured.
            series = [x for x in spec.get("series", []) if _as_list(x.get("y"))]
            if not series:
                continue
            spec = {**spec, "series": series}
            name = f"{rec['benchmark']}-{j}-{_slug(spec.get('title', ''))}.png"
            if _render_plot(spec, plots_dir / name):
                md += [f"![{spec.get('title', '')}](plots/{name})", ""]
                cap = html.escape(spec.get("title", ""))
                hp.append(f'<figure><img src="plots/{name}" alt="{cap}">'
                          f"<figcaption>{cap}</figcaption></figure>")
            else:
                matplotlib_missing = True
    if matplotlib_missing:
        note = "Plots were skipped: matplotlib is not installed (pip install llmds[bench])."
        md += [note, ""]
        hp.append(f"<p>{note}</p>")
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(_HTML_HEAD + "\n".join(hp) + "\n</body></html>\n", encoding="utf-8")
    return [md_path, html_path]


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>llmds benchmark report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f3f7; }
td:first-child, th:first-child { text-align: left; }
blockquote { color: #444; border-left: 3px solid #9ab; margin: 0.5em 0; padding-left: 0.8em; }
figure { margin: 1em 0; } img { max-width: 100%; }
</style></head><body>
"""
