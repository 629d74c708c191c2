"""Argument checks shared by :class:`~llmds.retrieval_pipeline.RetrievalPipeline` and
:class:`~llmds.dist.sharded.ShardedRetrievalPipeline`: batches of documents, the hooks
(embedder, analyzer, query normaliser) and the embedder a loaded pipeline gets.

Every function raises naming the bad argument (through :mod:`llmds._validate`) and
holds no state, so it is safe from any thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from llmds._docstore import DocId, DocStore, check_metadata
from llmds._validate import check_text, show
from llmds.embed import embedder_from_identity

if TYPE_CHECKING:
    from llmds.embed import Embedder

__all__ = ["AUTO", "as_list", "check_batch", "check_hooks", "resolve_embedder"]


def as_list(values: object, name: str, what: str) -> list[Any]:
    """``values`` (any iterable except a str/bytes/dict/set) as a list, or a TypeError.

    The message is built only on failure: ``show`` of a list of 5,183 vectors (a
    valid ``embeddings``) took 15 s of ``repr``."""
    if isinstance(values, str | bytes | dict | set | frozenset) or not isinstance(
            values, Iterable):
        raise TypeError(f"{name} must be a sequence of {what}, got {show(values)}")
    try:
        return list(values)
    except TypeError:  # a 0-d array is Iterable but cannot be iterated
        raise TypeError(f"{name} must be a sequence of {what}, got {show(values)}") from None


def check_batch(docs: DocStore, doc_ids: Any, texts: Any, metadatas: Any,
                ) -> tuple[list[DocId], list[str], list[str | None]]:
    """New ids (checked against ``docs``), texts and canonical metadata JSON of an
    ``add_documents`` batch; raises naming the first bad argument. O(total size)."""
    ids = docs.check_new_ids(as_list(doc_ids, "doc_ids", "ids"), "doc_ids")
    texts_ = [check_text(t, f"texts[{i}]", nonempty=True)
              for i, t in enumerate(as_list(texts, "texts", "str"))]
    n = len(ids)
    if len(texts_) != n:
        raise ValueError(f"doc_ids and texts differ in length: {n} and {len(texts_)}")
    metas: list[str | None] = [None] * n
    if metadatas is not None:
        given = as_list(metadatas, "metadatas", "dicts or None")
        if len(given) != n:
            raise ValueError(f"metadatas has {len(given)} entries for {n} documents")
        metas = [check_metadata(m, f"metadatas[{i}]") for i, m in enumerate(given)]
    return ids, texts_, metas


AUTO: Any = object()  # load(embedder=AUTO): recreate the saved embedder


def resolve_embedder(embedder: Any, identity: dict[str, Any] | None, path: Any,
                     dim: int) -> Embedder | None:
    """The embedder a loaded pipeline gets: ``embedder`` when passed (its ``dim``
    checked), else the saved one made again (``AUTO``), else a ValueError asking for
    ``embedder=``."""
    if embedder is not AUTO:
        got = getattr(embedder, "dim", dim)
        if embedder is not None and got != dim:
            raise ValueError(f"embedder has dim {got!r}; the pipeline at "
                             f"{os.fspath(path)!r} has embedding_dim {dim}")
        return embedder
    if identity is None:
        return None
    try:
        return embedder_from_identity(identity)
    except (LookupError, ImportError, OSError, ValueError) as exc:
        raise ValueError(
            f"the pipeline at {os.fspath(path)!r} was built with the embedder "
            f"{identity.get('name') or identity['kind']} ({identity['dim']} dims), which "
            f"cannot be made here ({exc}); pass embedder=... to load(), or embedder=None "
            "to accept lexical-only text queries") from None


def check_hooks(embedder: object, analyzer: object = None, query_normalizer: object = str,
                ) -> None:
    """TypeError naming a hook (embedder, analyzer, query normaliser) of the wrong kind."""
    if embedder is not None and not callable(getattr(embedder, "embed", None)):
        raise TypeError(f"embedder must have an embed(texts) method, got {show(embedder)}")
    if analyzer is not None and not callable(analyzer):
        raise TypeError(f"analyzer must be callable, got {show(analyzer)}")
    if not callable(query_normalizer):
        raise TypeError(f"query_normalizer must be callable, got {show(query_normalizer)}")


