"""Check the performance claims of the design this library started from.

That design's report states three figures without measuring them. :func:`check_claims`
reads the benchmark records and, for each claim, lists the measured values that bear on
it (each with the result file and field it came from) and a verdict: ``holds``,
``holds in part``, ``does not hold`` or ``not measured``. The verdict rules are stated
in each claim's ``criterion`` so a reader can re-judge from the evidence table.

No number is typed in here except the claims' own thresholds, which are quoted from the
claim's text (:data:`CLAIM_STATEMENTS`).

The serving simulator's record (``sim``) holds the experiments on several cost models
("setups", each row and ratio tagged ``cost``); the claims are judged on the setup its
``params.claims_setup`` names (the GPU-profile model of an A100 with Llama-2-7B), and
on every row of records written before setups existed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLAIM_STATEMENTS", "CLAIM_TOPICS", "ClaimCheck", "Evidence", "check_claims"]

HOLDS, PARTLY, FAILS, UNMEASURED = "holds", "holds in part", "does not hold", "not measured"

#: The claims' words, verbatim (they are the only numbers not from a result file).
CLAIM_STATEMENTS = {
    "prefix_sharing": ("Prefix sharing further reduces memory usage by up to 30-40% for "
                       "workloads with repeated system prompts"),
    "max_wait": ("With max_wait_ms=50ms, the system achieves ~95% throughput of maximum "
                 "batching while maintaining sub-100ms p95 latency"),
    "hnsw": ("For M=16, efSearch=50, the system achieves >95% recall@10 on benchmark "
             "datasets while maintaining <5ms p95 search latency"),
}

#: What each claim is about, in words without numbers (the report's summary names them).
CLAIM_TOPICS = {
    "prefix_sharing": "prefix sharing's memory saving",
    "max_wait": "micro-batching's throughput at low latency",
    "hnsw": "HNSW's recall at low latency",
}

#: How each claim is judged (constant text; thresholds quoted from the claims).
CRITERIA = {
    "prefix_sharing": ("Each configuration counts if sharing saves at least 30% of KV memory "
                       "(the claim's lower figure). Holds if every measured configuration "
                       "does, in part if some do."),
    "max_wait": ("A load counts if, at max_wait_ms=50, the server's capacity (requests per "
                 "busy second) is at least 95% of always-full batches' (read generously: "
                 "93%) and p95 end-to-end latency is below 100 ms. Holds if some simulated "
                 "load meets both."),
    "hnsw": ("Holds if llmds' HNSW with M=16 at ef=50 reaches recall@10 above 0.95 with p95 "
             "per-query latency below 5 ms on the benchmark data."),
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One measured value bearing on a claim, and where it was read from."""

    label: str
    value: Any
    source: str
    ok: bool | None = None


@dataclass(slots=True)
class ClaimCheck:
    """A claim, the measurements that test it, and the verdict."""

    key: str
    statement: str
    criterion: str
    verdict: str = UNMEASURED
    evidence: list[Evidence] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)


def _verdict(oks: list[bool], *, any_suffices: bool = False) -> str:
    if not oks:
        return UNMEASURED
    if any_suffices:
        return HOLDS if any(oks) else FAILS
    if all(oks):
        return HOLDS
    return PARTLY if any(oks) else FAILS


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _claims_setup(rec: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Which rows/ratios of the ``sim`` record the claims are judged on (see above)."""
    setup = (rec.get("params") or {}).get("claims_setup")
    if setup is None:
        return lambda item: True
    return lambda item: item.get("cost", setup) == setup


def _prefix_sharing(recs: dict[str, dict[str, Any]], c: ClaimCheck) -> None:
    kv = recs.get("kv_cache")
    if kv is not None:
        for row in kv.get("rows", []):
            saved = _num(row.get("memory_saved_fraction"))
            if saved is None:
                continue
            c.evidence.append(Evidence(
                f"memory saved, {row.get('impl')}", saved,
                f"{kv['_file']}: rows[impl={row.get('impl')!r}].memory_saved_fraction",
                saved >= 0.30))
    sim = recs.get("sim")
    if sim is not None:
        judged = _claims_setup(sim)
        for r in sim.get("ratios", []):
            if ("memory saved" in r.get("name", "") and _num(r.get("value")) is not None
                    and judged(r)):
                c.evidence.append(Evidence(
                    r["name"], r["value"], f"{sim['_file']}: ratios[{r['name']!r}]",
                    float(r["value"]) >= 0.30))
    c.verdict = _verdict([e.ok for e in c.evidence if e.ok is not None])
    if kv is None and sim is None:
        c.remarks.append("No kv_cache or sim result: run `llmds bench kv_cache sim`.")
    elif c.verdict == PARTLY:
        c.remarks.append("Only whole pages covered by a shared prefix can be shared, so the "
                         "saving depends on the page size and on how long the shared "
                         "prompts are; see the rows above.")
    if sim is not None and any(e.source.startswith(sim["_file"]) for e in c.evidence):
        c.remarks.append("In the serving simulation the saving per running request grows "
                         "with load: the more requests run at once, the more of them share "
                         "the same cached prompts.")


def _max_wait(recs: dict[str, dict[str, Any]], c: ClaimCheck) -> None:
    sim = recs.get("sim")
    if sim is None:
        c.remarks.append("No sim result: run `llmds bench sim`.")
        return
    oks = []
    judged = _claims_setup(sim)
    for row in sim.get("rows", []):
        if _num(row.get("max_wait_ms")) != 50.0 or "load" not in row or not judged(row):
            continue
        cap, p95 = _num(row.get("capacity_vs_full")), _num(row.get("p95_e2e_ms"))
        if cap is None or p95 is None:
            continue
        where = f"{sim['_file']}: rows[max_wait_ms=50, load={row['load']}]"
        cap_ok, p95_ok = cap >= 0.93, p95 < 100.0
        oks.append(cap_ok and p95_ok)
        c.evidence.append(Evidence(f"capacity / always-full batches, load {row['load']}", cap,
                                   where + ".capacity_vs_full", cap_ok))
        c.evidence.append(Evidence(f"p95 end-to-end ms, load {row['load']}", p95,
                                   where + ".p95_e2e_ms", p95_ok))
    c.verdict = _verdict(oks, any_suffices=True)
    params = sim.get("params") or {}
    setup = params.get("claims_setup")
    cost = (params.get("cost_models") or {}).get(setup) if setup else params.get("cost_model")
    if isinstance(cost, dict) and cost.get("kind") == "gpu profiles":
        c.remarks.append(
            f"Simulated on the {setup} setup: every iteration timed from measured GPU "
            f"operator profiles ({cost.get('gpu_description')}, {cost.get('model')}, "
            f"attention {cost.get('attention_source')}), not on the old guessed cost "
            "model, whose rows the sim record also holds.")
    elif isinstance(cost, dict):
        c.remarks.append("Simulated with cost parameters " + ", ".join(
            f"{k}={v}" for k, v in cost.items()) + "; absolute latencies are only as good "
            "as these parameters, the throughput fraction is the robust figure.")


def _hnsw(recs: dict[str, dict[str, Any]], c: ClaimCheck) -> None:
    rec = recs.get("hnsw")
    if rec is None:
        c.remarks.append("No hnsw result: run `llmds bench hnsw`.")
        return
    m = (rec.get("params") or {}).get("M")
    if m != 16:
        c.remarks.append(f"The hnsw result used M={m}, not the claim's M; not comparable.")
        return
    for row in rec.get("rows", []):
        if row.get("ef") != 50 or row.get("impl") not in ("llmds", "hnswlib"):
            continue
        recall, p95 = _num(row.get("recall@10")), _num(row.get("p95_ms"))
        where = f"{rec['_file']}: rows[impl={row['impl']!r}, ef=50]"
        mine = row["impl"] == "llmds"
        if recall is not None:
            c.evidence.append(Evidence(f"{row['impl']} recall@10", recall, where + ".recall@10",
                                       recall > 0.95 if mine else None))
        if p95 is not None:
            c.evidence.append(Evidence(f"{row['impl']} p95 ms per query", p95,
                                       where + ".p95_ms", p95 < 5.0 if mine else None))
    mine_oks = [e.ok for e in c.evidence if e.ok is not None]
    if len(mine_oks) == 2:
        c.verdict = HOLDS if all(mine_oks) else FAILS
    else:
        c.remarks.append("The hnsw result has no llmds row at ef=50 with recall and p95 "
                         "latency (run `llmds bench hnsw` at default size).")
    if rec.get("data"):
        c.remarks.append(f"Data: {rec['data']}.")


_CHECKS: dict[str, Callable[[dict[str, dict[str, Any]], ClaimCheck], None]] = {
    "prefix_sharing": _prefix_sharing,
    "max_wait": _max_wait,
    "hnsw": _hnsw,
}


def check_claims(records: list[dict[str, Any]]) -> list[ClaimCheck]:
    """Judge every claim in :data:`CLAIM_STATEMENTS` from loaded result records.

    ``records`` are as returned by :func:`llmds.bench.report.load_results` (each with a
    ``_file`` key). Failed benchmarks (records with ``error``) count as not measured.
    O(total rows).
    """
    by_name = {r["benchmark"]: r for r in records if "error" not in r}
    out = []
    for key, statement in CLAIM_STATEMENTS.items():
        check = ClaimCheck(key, statement, CRITERIA[key])
        _CHECKS[key](by_name, check)
        out.append(check)
    return out
