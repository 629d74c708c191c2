"""Check that every number in a generated report comes from a result file.

Independent of the report code except for ``fmt`` (the rule that turns a measured value
into table text): collect every numeric token that the result files can produce (their
numbers as written and as formatted to 3 or 4 digits, the digits inside their strings
and keys, and the counts a summary states: result files, measures with a goal, goals
met and missed, overall and per file) and require every numeric token of the report to
be one of them, once the fixed text that is allowed to hold numbers (the claims of the
design the library started from and the verdict criteria, quoted verbatim) has been
removed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmds.bench.report import fmt
from llmds.bench.report_claims import CLAIM_STATEMENTS, CRITERIA

NUMBER = re.compile(r"(?<![\w.,-])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[+-]?\d+)?(?!\w)")


def _tokens(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def traceable_numbers(results_dir: Path) -> set[str]:
    """Every numeric token that the result files in ``results_dir`` can put in a report."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                out.update(_tokens(str(k)))
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
            out.update(_tokens(fmt(value)))
        elif isinstance(value, str):
            out.update(_tokens(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            for text in (fmt(value), fmt(value, 4), repr(value), str(value)):
                out.update(_tokens(text))

    totals = [0, 0, 0, 0]  # records that ran, goals, met, missed
    for path in results_dir.glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        walk(record)
        if not isinstance(record, dict) or "error" in record:
            continue
        goals = [r for r in record.get("ratios", []) if r.get("goal") is not None]
        counts = [1, len(goals), sum(r.get("met") is True for r in goals),
                  sum(r.get("met") is False for r in goals)]
        out.update(str(n) for n in counts)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    out.update(str(n) for n in totals)
    return out


def untraced_numbers(report_text: str, results_dir: Path) -> list[str]:
    """Numeric tokens of ``report_text`` that no result file accounts for."""
    text = report_text.replace(str(results_dir), "")
    for fixed in (*CLAIM_STATEMENTS.values(), *CRITERIA.values()):
        text = text.replace(fixed, "")
    known = traceable_numbers(results_dir)
    return sorted(t for t in _tokens(text) if t not in known)
