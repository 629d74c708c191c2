"""Loader for test collections in the BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``), as in ``../shared/datasets/ir/``.

Documents are indexed as ``title + " " + text`` (records whose title and text are
both empty are dropped: no query can match them, and llmds rejects empty text); only
queries with at least one relevance judgment of score > 0 are kept (the BEIR /
trec_eval convention).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IRCollection", "load_beir"]


@dataclass(frozen=True, slots=True)
class IRCollection:
    """A test collection: documents, judged queries and graded relevance judgments.

    ``doc_ids`` / ``docs`` are parallel lists (string ids as in the files);
    ``query_ids`` / ``queries`` likewise; ``qrels[query_id][doc_id] = grade``
    (all judgments, including grade 0).
    """

    name: str
    doc_ids: list[str]
    docs: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> IRCollection:
    """Read a BEIR-layout folder. O(size of the files).

    Raises FileNotFoundError naming the missing file.
    """
    root = Path(folder)
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl",
             "qrels": root / "qrels" / f"{split}.tsv"}
    for label, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(f"{label} file {str(p)!r} not found (BEIR layout expected)")
    doc_ids, docs = [], []
    for row in _read_jsonl(paths["corpus"]):
        text = f"{row.get('title') or ''} {row.get('text') or ''}"
        if text.strip():  # a few collections hold empty records; nothing can match them
            doc_ids.append(str(row["_id"]))
            docs.append(text)
    qrels: dict[str, dict[str, int]] = {}
    with paths["qrels"].open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header and header[0].strip() != "query-id":  # headerless file: keep the row
            qrels.setdefault(header[0], {})[header[1]] = int(header[2])
        for cells in reader:
            if len(cells) >= 3:
                qrels.setdefault(cells[0].strip(), {})[cells[1].strip()] = int(cells[2])
    relevant = {q for q, judged in qrels.items() if any(g > 0 for g in judged.values())}
    query_ids: list[str] = []
    queries: list[str] = []
    for row in _read_jsonl(paths["queries"]):
        qid = str(row["_id"])
        if qid in relevant:
            query_ids.append(qid)
            queries.append(str(row["text"]))
    return IRCollection(root.name, doc_ids, docs, query_ids, queries,
                        {q: qrels[q] for q in query_ids})
