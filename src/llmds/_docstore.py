"""The pipeline's document store: caller ids, dense slots, texts, metadata and filters.

Every document lives in a *slot* ``0 .. n-1`` (dense: a delete moves the last
document into the gap, so per-slot arrays and filter masks stay ``n`` long). Each
has

* the caller's id: all ``int`` (int64) or all ``str`` in one pipeline, fixed by the
  first document added (mixing them is an error);
* a *key*, the int64 under which both indexes and the fusion know it: the id itself
  for int ids (so ties go to the smaller id, as the design this library started
  from promised), a counter for str ids (never reused, so ties go to the document
  added first);
* its internal id in the BM25 index (``lex_ids``), so a filter's mask over slots
  becomes the index's ``allowed_mask`` by one gather;
* its text (unless ``store_text=False``) and its metadata, kept as canonical JSON
  (``json.dumps(..., sort_keys=True)``) and parsed afresh for every caller, so no
  caller can change a stored document through a returned dict;
* its fields in a :class:`~llmds.filters.FilterIndex`.

Thread safety: not thread-safe; :class:`~llmds.retrieval_pipeline.RetrievalPipeline`
serialises writers with readers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import INT64_MAX, INT64_MIN, check_int, check_text, is_int, show
from llmds.filters import FilterIndex

__all__ = ["DocId", "DocStore", "Document", "check_metadata"]

DocId = int | str
ID_KINDS = ("int", "str")


@dataclass(frozen=True, slots=True)
class Document:
    """A search result (or :meth:`RetrievalPipeline.get_document`): the caller's id, the
    fused score (None from ``get_document``), the text (None with ``store_text=False``)
    and a fresh copy of the metadata."""

    id: DocId
    score: float | None
    text: str | None
    metadata: dict[str, Any]


def check_metadata(value: object, name: str) -> str | None:
    """``value`` (None or a dict with str keys) as canonical JSON, None when empty. O(size).

    Raises ``TypeError`` naming ``name`` (and the key) for anything JSON cannot hold
    as given (non-str keys, NaN/inf, sets, objects) and ``ValueError`` for a field
    name that is empty or starts with ``$`` (the filter operators' prefix).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict or None, got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {show(key)}")
        if not key or key.startswith("$"):
            raise ValueError(f"{name} field names must be non-empty and not start with '$', "
                             f"got {key!r}")
        check_text(key, f"{name} key")
    try:
        text = json.dumps(dict(value), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable (str, int, float, bool, None, "
                        f"lists and dicts of those; no NaN/inf): {exc}") from None
    check_text(text, name)
    return None if text == "{}" else text


class DocStore:
    """Ids, keys, texts, metadata and filter columns of ``n`` documents in slots ``0..n-1``.

    Invariants (``_check``): ids, keys and slots are in bijection; keys are unique
    int64 (for str ids below ``next_key``); the filter index agrees with the
    metadata. Complexity: ``add`` O(text + metadata), ``remove`` O(fields) (swap with
    the last slot), lookups O(1). Memory: the texts and JSON metadata, ~100 bytes of
    Python objects per document, 12 bytes per (field, document) of filter columns.
    """

    __slots__ = ("_ids", "_keys", "_lex", "_metas", "_next_key", "_slot_of_id", "_slot_of_key",
                 "_texts", "filters", "id_kind", "store_text")

    def __init__(self, store_text: bool = True) -> None:
        self.store_text = store_text
        self.id_kind: str | None = None
        self._ids: list[DocId] = []
        self._keys = np.zeros(16, dtype=np.int64)
        self._lex = np.zeros(16, dtype=np.int64)
        self._texts: list[str | None] = []
        self._metas: list[str | None] = []
        self._slot_of_id: dict[DocId, int] = {}
        self._slot_of_key: dict[int, int] = {}
        self._next_key = 0
        self.filters = FilterIndex()

    def __len__(self) -> int:
        return len(self._ids)

    # ------------------------------------------------------------------ ids
    def check_id(self, doc_id: object, name: str = "doc_id", kind: str | None = None) -> DocId:
        """``doc_id`` as this store's id kind (``kind`` if the store has none yet). O(1)."""
        want = self.id_kind or kind
        if isinstance(doc_id, str):
            if want == "int":
                raise TypeError(f"{name} must be an int like this pipeline's other ids "
                                f"(ids are all int or all str), got {show(doc_id)}")
            return check_text(doc_id, name, nonempty=True)
        if is_int(doc_id):
            if want == "str":
                raise TypeError(f"{name} must be a str like this pipeline's other ids "
                                f"(ids are all int or all str), got {show(doc_id)}")
            return check_int(doc_id, name, minimum=INT64_MIN, maximum=INT64_MAX)
        raise TypeError(f"{name} must be an int or a str, got {show(doc_id)}")

    def check_new_ids(self, values: Iterable[object], name: str) -> list[DocId]:
        """New, distinct ids of one kind (the store's, or the first one's). O(n)."""
        kind = self.id_kind
        out: list[DocId] = []
        seen: set[DocId] = set()
        for i, v in enumerate(values):
            d = self.check_id(v, f"{name}[{i}]", kind)
            kind = kind or ("str" if isinstance(d, str) else "int")
            if d in seen or d in self._slot_of_id:
                raise ValueError(f"doc_id {d!r} is repeated or already in the pipeline")
            seen.add(d)
            out.append(d)
        return out

    def slot(self, doc_id: object, name: str = "doc_id") -> int:
        """Slot of a stored id; ``KeyError`` naming it otherwise. O(1)."""
        d = self.check_id(doc_id, name)
        slot = self._slot_of_id.get(d)
        if slot is None:
            raise KeyError(f"{name} {d!r} is not in the pipeline")
        return slot

    def __contains__(self, doc_id: object) -> bool:
        return (isinstance(doc_id, str) or is_int(doc_id)) and doc_id in self._slot_of_id

    def doc_id(self, slot: int) -> DocId:
        return self._ids[slot]

    def key(self, slot: int) -> int:
        return int(self._keys[slot])

    def slot_of_key(self, key: int) -> int:
        return self._slot_of_key[key]

    def ids_of_keys(self, keys: list[int]) -> list[DocId]:
        """Caller ids of index keys (the same list for int ids). O(len(keys))."""
        if self.id_kind != "str":
            return keys  # type: ignore[return-value]
        ids, slot = self._ids, self._slot_of_key
        return [ids[slot[k]] for k in keys]

    def slots_of_keys(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        get = self._slot_of_key.__getitem__
        return np.fromiter(map(get, keys.tolist()), dtype=np.int64, count=keys.shape[0])

    def keys(self) -> npt.NDArray[np.int64]:
        """Keys of slots ``0..n-1`` (a view). O(1)."""
        return self._keys[: len(self._ids)]

    def lex_ids(self) -> npt.NDArray[np.int64]:
        """BM25 internal ids of slots ``0..n-1`` (a view). O(1)."""
        return self._lex[: len(self._ids)]

    def set_lex_ids(self, first: int, internal: npt.NDArray[np.int64]) -> None:
        """Record the BM25 internal ids of slots ``first, first + 1, ...``. O(len)."""
        self._lex[first: first + internal.shape[0]] = internal

    @property
    def next_key(self) -> int:
        return self._next_key

    # ------------------------------------------------------------------ documents
    def text(self, slot: int) -> str | None:
        return self._texts[slot]

    def metadata(self, slot: int) -> dict[str, Any]:
        """A fresh dict (parsed from the stored JSON): callers cannot alter the store."""
        text = self._metas[slot]
        return {} if text is None else json.loads(text)

    def metadata_json(self, slot: int) -> str | None:
        return self._metas[slot]

    def planned_keys(self, ids: list[DocId]) -> list[int]:
        """The keys ``add(ids, ...)`` will give (ints: the ids; strs: the next counters)."""
        if ids and isinstance(ids[0], str):
            return list(range(self._next_key, self._next_key + len(ids)))
        return ids  # type: ignore[return-value]

    def add(self, ids: list[DocId], texts: list[str], metas: list[str | None]) -> list[int]:
        """Append checked documents; return their keys. O(total size)."""
        if ids and self.id_kind is None:
            self.id_kind = "str" if isinstance(ids[0], str) else "int"
        n = len(self._ids)
        need = n + len(ids)
        if need > self._keys.shape[0]:
            cap = max(need, 2 * self._keys.shape[0])
            grown, lex = np.zeros(cap, dtype=np.int64), np.zeros(cap, dtype=np.int64)
            grown[:n], lex[:n] = self._keys[:n], self._lex[:n]
            self._keys, self._lex = grown, lex
        self.filters.reserve(need)
        keys: list[int] = []
        for j, (d, text, meta) in enumerate(zip(ids, texts, metas, strict=True)):
            if isinstance(d, str):
                key = self._next_key
                self._next_key += 1
            else:
                key = d
            slot = n + j
            self._ids.append(d)
            self._keys[slot] = key
            self._texts.append(text if self.store_text else None)
            self._metas.append(meta)
            self._slot_of_id[d] = slot
            self._slot_of_key[key] = slot
            if meta is not None:
                self.filters.set(slot, json.loads(meta))
            keys.append(key)
        return keys

    def remove(self, slot: int) -> int:
        """Delete the document in ``slot``; the last one moves there. Returns the last slot
        (whose document now lives in ``slot``; equal to ``slot`` when it was last). O(fields).
        """
        last = len(self._ids) - 1
        d, key = self._ids[slot], int(self._keys[slot])
        del self._slot_of_id[d]
        del self._slot_of_key[key]
        self.filters.clear(slot)
        if slot != last:
            moved = self._ids[last]
            self._ids[slot] = moved
            self._keys[slot] = self._keys[last]
            self._lex[slot] = self._lex[last]
            self._texts[slot] = self._texts[last]
            self._metas[slot] = self._metas[last]
            self._slot_of_id[moved] = slot
            self._slot_of_key[int(self._keys[last])] = slot
            self.filters.move(last, slot)
        self._ids.pop()
        self._texts.pop()
        self._metas.pop()
        return last

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """What a save needs: id kind, ids, keys, texts and metadata JSON (lists)."""
        return {"id_kind": self.id_kind, "ids": list(self._ids), "keys": self.keys().copy(),
                "texts": list(self._texts), "metas": list(self._metas),
                "next_key": self._next_key}

    def restore(self, id_kind: str | None, ids: list[DocId], keys: npt.NDArray[np.int64],
                texts: list[str | None], metas: list[str | None], next_key: int) -> None:
        """Become the store of checked saved state (see ``_pipeline_file``). O(total size)."""
        self.id_kind = id_kind
        self._ids = list(ids)
        self._keys = np.zeros(max(len(ids), 16), dtype=np.int64)
        self._keys[: len(ids)] = keys
        self._lex = np.zeros_like(self._keys)  # the owner sets them (set_lex_ids)
        self._texts = list(texts) if self.store_text else [None] * len(ids)
        self._metas = list(metas)
        self._slot_of_id = {d: i for i, d in enumerate(ids)}
        self._slot_of_key = {int(k): i for i, k in enumerate(keys.tolist())}
        self._next_key = next_key
        self.filters = FilterIndex()
        self.filters.reserve(len(ids))
        for slot, meta in enumerate(metas):
            if meta is not None:
                self.filters.set(slot, json.loads(meta))

    # ------------------------------------------------------------------ invariants
    def _check(self) -> None:
        n = len(self._ids)
        assert len(self._texts) == len(self._metas) == n
        assert len(self._slot_of_id) == len(self._slot_of_key) == n
        kinds = {type(d) for d in self._ids}
        assert len(kinds) <= 1 and (not kinds or self.id_kind == ("str" if str in kinds
                                                                  else "int"))
        for slot, d in enumerate(self._ids):
            key = int(self._keys[slot])
            assert self._slot_of_id[d] == slot and self._slot_of_key[key] == slot
            assert key == d if self.id_kind == "int" else 0 <= key < self._next_key
            assert self.store_text or self._texts[slot] is None
        self.filters._check(n, [self.metadata(s) for s in range(n)])
