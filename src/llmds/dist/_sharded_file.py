"""ShardedRetrievalPipeline files: one folder per shard plus a manifest.

A saved sharded pipeline is a folder::

    MANIFEST                   the commit point (an llmds._persist bundle manifest, kind
                               llmds.ShardedRetrievalPipeline, version 1)
    ids-<token>.llmds          the coordinator's ids: each document's key and caller id
    shard-0000-<token>/        shard 0: a RetrievalPipeline bundle (see _pipeline_file)
    shard-0001-<token>/        ...

The manifest holds the pipeline's parameters, ``num_shards``, the placement rule,
counts, the embedder's identity and, per shard, its folder and the SHA-256 of that
folder's own MANIFEST (which names its parts with their SHA-256). A save writes new
shard folders (each shard writes its own, in parallel, on its node: on a multi-node
Ray cluster ``path`` must be a filesystem every node sees), then the manifest by
rename, then removes the folders of the previous save, so a reader sees the old
save or the new one, never a mix.

``read_sharded`` checks, after the bundle's checksums: every manifest field (types,
ranges), that it names exactly ``num_shards`` shard folders, in order, each present,
and the ids part (as a pipeline's). Each shard then loads its folder through
RetrievalPipeline.load (which trusts nothing) after checking its MANIFEST against the
recorded digest; the coordinator checks that the shards agree with the manifest
(parameters, documents, placement). Any failure is a CorruptFileError naming it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from llmds._docstore import DocId
from llmds._persist import read_bundle, read_container, write_bundle, write_container
from llmds._pipeline_file import PARAMS, check_identity, id_arrays, read_ids
from llmds._validate import INT64_MAX, is_int

__all__ = ["KIND", "MAX_SHARDS", "PLACEMENT", "Saved", "read_sharded", "write_sharded"]

KIND = "llmds.ShardedRetrievalPipeline"
VERSION = 1
IDS_KIND = "llmds.ShardedRetrievalPipeline.ids"
PLACEMENT = "sha256-v1"  # llmds.dist._shards.shard_of
MAX_SHARDS = 4096
_FOLDER = re.compile(r"shard-(\d{4})-[0-9a-f]{12}")
_META = {"params", "num_shards", "placement", "shards", "num_documents", "num_vectors",
         "embedder", "parts"}


class Saved(NamedTuple):
    """A checked manifest and ids part."""

    params: dict[str, Any]
    identity: Any
    folders: list[str]
    digests: list[str]
    id_kind: str | None
    ids: list[DocId]
    keys: npt.NDArray[np.int64]
    next_key: int
    num_vectors: int


def write_sharded(path: str | os.PathLike[str], meta: dict[str, Any],
                  doc_state: dict[str, Any],
                  save_shards: Callable[[list[str]], list[str]]) -> None:
    """Write a sharded pipeline: ``save_shards(folders)`` saves shard ``i`` to
    ``folders[i]`` and returns their MANIFEST digests; then the ids part and the
    manifest; then the previous save's shard folders go. O(size of the shards)."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"cannot save to {os.fspath(path)!r}: it is a file")
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    names = [f"shard-{i:04d}-{token}" for i in range(meta["num_shards"])]
    try:
        digests = save_shards([str(root.resolve() / n) for n in names])
        shards = [{"folder": n, "manifest_sha256": d} for n, d in zip(names, digests,
                                                                      strict=True)]
        ids_meta = {"id_kind": doc_state["id_kind"], "next_key": doc_state["next_key"]}
        write_bundle(root, KIND, VERSION, {**meta, "placement": PLACEMENT, "shards": shards},
                     {"ids": lambda p: write_container(p, IDS_KIND, 1, ids_meta,
                                                       id_arrays(doc_state))})
    except BaseException:
        for n in names:
            shutil.rmtree(root / n, ignore_errors=True)
        raise
    for old in root.iterdir():
        if old.name not in names and _FOLDER.fullmatch(old.name) and old.is_dir():
            with contextlib.suppress(OSError):
                shutil.rmtree(old)


def read_sharded(path: str | os.PathLike[str]) -> Saved:
    """Read and check the manifest and ids part (see the module docstring). O(documents)."""
    manifest, parts = read_bundle(path, KIND, (VERSION,), ("ids",))
    meta = manifest.meta
    if set(meta) != _META:
        raise manifest.fail(f"the manifest must hold exactly {sorted(_META - {'parts'})}")
    p = meta["params"]
    if not isinstance(p, dict) or set(p) != set(PARAMS):
        raise manifest.fail(f"params must be an object with {sorted(PARAMS)}")
    if meta["placement"] != PLACEMENT:
        raise manifest.fail(f"placement must be {PLACEMENT!r}, got {meta['placement']!r}")
    num_shards = meta["num_shards"]
    if not is_int(num_shards) or not 1 <= num_shards <= MAX_SHARDS:
        raise manifest.fail(f"num_shards must be an int in [1, {MAX_SHARDS}], "
                            f"got {num_shards!r}")
    for key in ("num_documents", "num_vectors"):
        if not is_int(meta[key]) or not 0 <= meta[key] <= INT64_MAX:
            raise manifest.fail(f"{key} must be an int >= 0, got {meta[key]!r}")
    shards = meta["shards"]
    if not isinstance(shards, list) or len(shards) != num_shards:
        count = len(shards) if isinstance(shards, list) else shards
        raise manifest.fail(f"num_shards is {num_shards} but the manifest names {count!r} "
                            "shard folders")
    root = Path(path).resolve()
    folders, digests = [], []
    for i, entry in enumerate(shards):
        folder = entry.get("folder") if isinstance(entry, dict) else None
        digest = entry.get("manifest_sha256") if isinstance(entry, dict) else None
        match = _FOLDER.fullmatch(folder) if isinstance(folder, str) else None
        if not isinstance(folder, str) or match is None or int(match.group(1)) != i or \
                not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise manifest.fail(f"shard {i} has a bad entry {entry!r}")
        if not (root / folder).is_dir():
            raise manifest.fail(f"shard {i}'s folder {folder!r} is missing")
        folders.append(str(root / folder))
        digests.append(digest)
    dim = p["embedding_dim"]
    identity = check_identity(manifest, meta["embedder"], dim) if is_int(dim) else None
    ids = read_container(parts["ids"], IDS_KIND, (1,))
    kind, doc_ids, keys, next_key = read_ids(ids, manifest, meta["num_documents"])
    return Saved(p, identity, folders, digests, kind, doc_ids, keys.astype(np.int64),
                 next_key, int(meta["num_vectors"]))

