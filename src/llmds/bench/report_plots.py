"""Draw the plots of a benchmark record (matplotlib, the ``bench`` or ``report`` extra).

A record's ``plots`` entries (see :func:`llmds.bench.harness.result_record`) become PNG
files. The title and the legend sit above the axes, where they cover no bar or point,
and every bar carries its value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmds.bench.report import fmt

__all__ = ["as_list", "render_plot"]


def as_list(value: Any) -> list[Any]:
    """``value`` as a list: a list or tuple as is, None as empty, anything else alone."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _legend_columns(labels: list[str]) -> int:
    """As many legend columns as fit one line of about 70 characters (at least one)."""
    longest = max(len(s) for s in labels) + 4
    return max(1, min(len(labels), 70 // longest))


def _label_bars(ax: Any, containers: list[Any], values: list[list[float]]) -> None:
    """Write each bar's value on it, small and vertical when the bars are narrow."""
    count = sum(len(v) for v in values)
    vertical = count > 8
    for bars, vals in zip(containers, values, strict=True):
        ax.bar_label(bars, labels=[fmt(v) for v in vals], fontsize=7 if count <= 16 else 6,
                     padding=2, rotation=90 if vertical else 0)
    if ax.get_yscale() == "log":
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * (6.0 if vertical else 2.5))
    else:
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * (0.22 if vertical else 0.1))


def render_plot(spec: dict[str, Any], path: Path) -> bool:
    """Draw one plot spec to ``path``; False when matplotlib is missing.

    The title and the legend sit above the axes (a legend inside them covers bars or
    points), and every bar carries its value, so close values (0.777 vs 0.771) read
    exactly.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110, layout="constrained")
    kind = spec.get("kind", "line")
    series = spec.get("series", [])
    if spec.get("log_y"):
        ax.set_yscale("log")
    legend = False
    if kind == "bar" and any(len(as_list(s.get("x"))) > 1 for s in series):
        # Grouped bars: one group per x category, one bar per series within it.
        cats: list[str] = []
        for s in series:
            cats += [str(c) for c in as_list(s.get("x")) if str(c) not in cats]
        width = 0.8 / max(len(series), 1)
        containers, values = [], []
        for i, s in enumerate(series):
            ys = dict(zip([str(c) for c in as_list(s.get("x"))], as_list(s["y"]), strict=False))
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(cats))]
            heights = [ys.get(c, 0.0) for c in cats]
            containers.append(ax.bar(xs, heights, width=width, label=str(s["label"])))
            values.append(heights)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=20 if len(cats) > 4 else 0)
        _label_bars(ax, containers, values)
        legend = len(series) > 1
    elif kind == "bar":
        labels = [str(s["label"]) for s in series]
        heights = [as_list(s["y"])[0] for s in series]
        bars = ax.bar(labels, heights, color="#4477aa")
        ax.tick_params(axis="x", rotation=20 if len(labels) > 3 else 0)
        _label_bars(ax, [bars], [heights])
    else:
        for s in series:
            ax.plot(s["x"], s["y"], marker="o" if s.get("marker", True) else None,
                    label=str(s["label"]), linewidth=1.5 if s.get("marker", True) else 1.0)
        legend = len(series) > 1
    if spec.get("log_x"):
        ax.set_xscale("log")
        xs = sorted({float(x) for s in series for x in as_list(s.get("x"))})
        if 0 < len(xs) <= 12:
            # Few measured x values (page sizes, widths): tick exactly those, in plain
            # numbers; log-axis minor labels ("3 x 10^1") collide.
            from matplotlib.ticker import NullFormatter

            ax.set_xticks(xs, [fmt(int(x) if x.is_integer() else x) for x in xs])
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(spec.get("title", ""), fontsize=10)
    if legend:
        labels = [str(s["label"]) for s in series]
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=_legend_columns(labels),
                  fontsize=8, frameon=False)
    ax.set_xlabel(spec.get("x_label", ""))
    ax.set_ylabel(spec.get("y_label", ""))
    ax.grid(alpha=0.3)
    fig.savefig(path)
    plt.close(fig)
    return True
