"""Reading Vidur's profile CSVs: where they are, and every number checked.

The files live in ``<datasets>/serving/vidur/data/profiling/...`` (see that folder's
README). :func:`find_profiles_dir` resolves the folder the same way the benchmark
suite finds its data (an explicit path, then ``$LLMDS_DATA``, then
``../shared/datasets`` next to the working directory or the repository) without
importing :mod:`llmds.bench`: the simulator must not depend on the benchmark suite.

**Files are untrusted.** :func:`read_csv` opens regular files only
(:func:`llmds._persist.open_regular`), caps their size (:data:`MAX_CSV_BYTES`) before
reading, parses with the stdlib :mod:`csv` module, requires every named column, and
checks every value it returns: a finite number >= 0, an integer where a count is
expected. Anything else raises :class:`~llmds.errors.CorruptFileError` (a
``ValueError``) naming the file, the line and the column.

Everything here is a pure function: thread-safe.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from llmds._persist import open_regular
from llmds.errors import CorruptFileError
from llmds.sim.profiles.hardware import MODELS, GPUSpec, ModelShape

__all__ = [
    "LINEAR_OPS",
    "MAX_CSV_BYTES",
    "AttentionProfile",
    "CpuProfile",
    "LinearProfile",
    "find_profiles_dir",
    "load_attention",
    "load_cpu_overheads",
    "load_linear",
    "read_csv",
]

MAX_CSV_BYTES = 64 * 2**20  # Vidur's largest profile (a full attention.csv) is ~11 MB
VIDUR = ("serving", "vidur")
LINEAR_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
CPU_OPS = ("schedule", "sampler_e2e", "prepare_inputs_e2e", "process_model_outputs",
           "ray_comm_time")


def _vidur_root(base: Path) -> Path | None:
    """``base`` itself if it holds ``data/profiling``, else ``base/serving/vidur``."""
    for candidate in (base, base.joinpath(*VIDUR)):
        if (candidate / "data" / "profiling").is_dir():
            return candidate
    return None


def _default_datasets() -> list[Path]:
    """``../shared/datasets`` next to the working directory and to the repository root."""
    repo_root = Path(__file__).resolve().parents[4]
    return [base.parent / "shared" / "datasets" for base in (Path.cwd(), repo_root)]


def find_profiles_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The Vidur profiles folder (the one holding ``data/profiling``). O(1).

    Looks in ``explicit`` (a datasets folder or the profiles folder itself), then
    ``$LLMDS_DATA``, then ``../shared/datasets`` relative to the working directory and
    to the repository root. An explicit path or ``LLMDS_DATA`` that is not a folder or
    holds no profiles raises ``FileNotFoundError`` (a typo never falls back silently);
    so does finding nothing at all, with the places searched in the message.
    """
    for label, value in (("profiles_dir", explicit), ("LLMDS_DATA", os.environ.get("LLMDS_DATA"))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{label} points to {str(path)!r}, which is not a folder")
            root = _vidur_root(path)
            if root is None:
                raise FileNotFoundError(
                    f"{label} points to {str(path)!r}, which holds neither data/profiling "
                    f"nor serving/vidur/data/profiling (Vidur's GPU profiles)"
                )
            return root.resolve()
    tried = []
    for candidate in _default_datasets():
        tried.append(str(candidate))
        root = _vidur_root(candidate) if candidate.is_dir() else None
        if root is not None:
            return root.resolve()
    raise FileNotFoundError(
        "Vidur's GPU profiles were not found: pass profiles_dir=, set LLMDS_DATA to the "
        f"datasets folder, or place it at ../shared/datasets (tried {', '.join(tried)})"
    )


def read_csv(
    path: Path,
    numeric: Sequence[str],
    *,
    integer: Sequence[str] = (),
    text: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, list[str]]]:
    """Columns of a CSV file, every value checked. O(file size).

    ``numeric`` columns must hold finite numbers >= 0 (``optional`` ones among them may
    be empty: NaN is returned there); ``integer`` ones (also listed in ``numeric`` or
    not) must be whole numbers; ``text`` columns are returned as strings. Raises
    ``FileNotFoundError`` for a missing file and :class:`CorruptFileError` for a file
    that is not a regular file, larger than :data:`MAX_CSV_BYTES`, not UTF-8, has no
    header, lacks a column, has a short row, or holds a bad value (file, line, column
    and value in the message).
    """
    fd, size = open_regular(path)
    try:
        if size > MAX_CSV_BYTES:
            raise CorruptFileError(
                f"{str(path)!r} has {size} bytes; profile CSVs are capped at {MAX_CSV_BYTES}"
            )
        raw = os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)
    if len(raw) > MAX_CSV_BYTES:
        raise CorruptFileError(f"{str(path)!r} grew past {MAX_CSV_BYTES} bytes while read")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{str(path)!r} is not UTF-8 text (byte {e.start})") from None
    reader = csv.reader(io.StringIO(content, newline=""))
    header = next(reader, None)
    if not header:
        raise CorruptFileError(f"{str(path)!r} is empty: a header line was expected")
    index = {name: i for i, name in enumerate(header)}
    wanted = list(dict.fromkeys([*numeric, *integer, *text]))
    missing = [c for c in wanted if c not in index]
    if missing:
        raise CorruptFileError(f"{str(path)!r} line 1: missing column(s) {', '.join(missing)}")
    ints, opt = set(integer), set(optional)
    values: dict[str, list[float]] = {c: [] for c in dict.fromkeys([*numeric, *integer])}
    strings: dict[str, list[str]] = {c: [] for c in text}
    width = max(index[c] for c in wanted) + 1
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) < width:
            raise CorruptFileError(
                f"{str(path)!r} line {line}: {len(row)} fields, at least {width} expected"
            )
        for c, out in values.items():
            cell = row[index[c]].strip()
            if cell == "" and c in opt:
                out.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not (math.isfinite(v) and v >= 0.0) or (c in ints and v != int(v)):
                kind = "a whole number >= 0" if c in ints else "a finite number >= 0"
                raise CorruptFileError(
                    f"{str(path)!r} line {line}, column {c!r}: expected {kind}, got {cell!r}"
                )
            out.append(v)
        for c, sout in strings.items():
            sout.append(row[index[c]])
    if not any(values.values()) and not any(strings.values()):
        raise CorruptFileError(f"{str(path)!r} has a header but no rows")
    return {c: np.asarray(v, dtype=np.float64) for c, v in values.items()}, strings


@dataclass(frozen=True, slots=True)
class LinearProfile:
    """TP=1 medians (ms per layer) of the linear/norm ops, by ``num_tokens`` (sorted).

    Counts profiled twice are averaged; ``path`` says where the numbers came from.
    """

    path: Path
    tokens: npt.NDArray[np.float64]
    medians: dict[str, npt.NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class AttentionProfile:
    """TP=1 attention medians (ms per layer): decode by (batch, kv), prefill by (chunk, kv).

    Repeated keys are averaged.
    """

    path: Path
    decode_batch: npt.NDArray[np.float64]
    decode_kv: npt.NDArray[np.float64]
    decode_ms: npt.NDArray[np.float64]
    prefill_chunk: npt.NDArray[np.float64]
    prefill_kv: npt.NDArray[np.float64]
    prefill_ms: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CpuProfile:
    """Legacy engine CPU overheads (ms per step) by batch size, one array per op."""

    path: Path
    batch: npt.NDArray[np.float64]
    medians: dict[str, npt.NDArray[np.float64]]


def _mean_by_key(keys: npt.NDArray[np.float64], *cols: npt.NDArray[np.float64]
                 ) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.float64]]]:
    """Rows grouped by ``keys`` (1-D or 2-D), sorted, each column averaged per key."""
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    return uniq, [np.bincount(inverse, weights=c, minlength=len(uniq)) / counts for c in cols]


def _check_model(path: Path, cols: dict[str, npt.NDArray[np.float64]], model: ModelShape,
                 pairs: Sequence[tuple[str, int]]) -> None:
    for col, want in pairs:
        bad = cols[col] != want
        if bad.any():
            raise CorruptFileError(
                f"{str(path)!r}: column {col!r} holds {cols[col][bad][0]:g}, but "
                f"{model.name} has {want}: the file is for another model"
            )


def load_linear(root: Path, gpu: GPUSpec, model: ModelShape) -> LinearProfile:
    """``compute/<gpu>/<model>/mlp.csv``, TP=1 rows. O(file size)."""
    compute = root / "data" / "profiling" / "compute"
    path = compute / gpu.profile_dir / model.profile_dir / "mlp.csv"
    if not path.exists():
        names = {m.profile_dir.split("/")[-1]: m.name for m in MODELS.values()}
        have = sorted(f"{p.parts[-4]}/{names.get(p.parts[-2], p.parts[-2])}"
                      for p in compute.glob("*/*/*/mlp.csv"))
        raise FileNotFoundError(
            f"no linear-op profile for {model.name} on {gpu.name} ({str(path)!r} is missing); "
            f"profiles present: {', '.join(have) or 'none'}"
        )
    meds = [f"time_stats.{op}.median" for op in LINEAR_OPS]
    keys = ["num_tokens", "num_tensor_parallel_workers", "n_head", "n_kv_head", "n_embd",
            "n_expanded_embd"]
    cols, _ = read_csv(path, meds, integer=keys)
    tp1 = cols["num_tensor_parallel_workers"] == 1
    if not tp1.any():
        raise CorruptFileError(f"{str(path)!r} holds no num_tensor_parallel_workers=1 rows")
    cols = {c: v[tp1] for c, v in cols.items()}
    _check_model(path, cols, model, [("n_head", model.num_q_heads),
                                     ("n_kv_head", model.num_kv_heads),
                                     ("n_embd", model.hidden_size),
                                     ("n_expanded_embd", model.intermediate_size)])
    if (cols["num_tokens"] < 1).any():
        raise CorruptFileError(f"{str(path)!r}: column 'num_tokens' must be >= 1")
    tokens, avg = _mean_by_key(cols["num_tokens"], *(cols[m] for m in meds))
    if len(tokens) < 4:
        raise CorruptFileError(f"{str(path)!r}: {len(tokens)} token counts, at least 4 needed")
    return LinearProfile(path, tokens, dict(zip(LINEAR_OPS, avg, strict=True)))


def load_attention(root: Path, gpu: GPUSpec, model: ModelShape) -> AttentionProfile:
    """The TP=1 attention extract of ``compute/<gpu>/<model>/``. O(file size)."""
    folder = root / "data" / "profiling" / "compute" / gpu.profile_dir / model.profile_dir
    path = folder / "attention_tp1_extract.csv"
    dec, pre = "time_stats.attn_decode.median", "time_stats.attn_prefill.median"
    keys = ["batch_size", "kv_cache_size", "prefill_chunk_size", "num_tensor_parallel_workers",
            "n_q_head", "n_kv_head", "n_embd"]
    cols, texts = read_csv(path, [dec, pre], integer=keys, text=["is_prefill"],
                           optional=[dec, pre])
    flags = texts["is_prefill"]
    if any(f not in ("True", "False") for f in flags):
        bad = next(i for i, f in enumerate(flags) if f not in ("True", "False"))
        raise CorruptFileError(f"{str(path)!r} line {bad + 2}, column 'is_prefill': expected "
                               f"True or False, got {flags[bad]!r}")
    is_pre = np.array([f == "True" for f in flags])
    tp1 = cols["num_tensor_parallel_workers"] == 1
    _check_model(path, {c: v[tp1] for c, v in cols.items()}, model,
                 [("n_q_head", model.num_q_heads), ("n_kv_head", model.num_kv_heads),
                  ("n_embd", model.hidden_size)])
    d, p = tp1 & ~is_pre, tp1 & is_pre
    for mask, col, what in ((d, dec, "decode"), (p, pre, "prefill")):
        if not mask.any():
            raise CorruptFileError(f"{str(path)!r} holds no TP=1 {what} rows")
        empty = np.flatnonzero(mask & np.isnan(cols[col]))
        if len(empty):
            raise CorruptFileError(f"{str(path)!r}: a {what} row has an empty {col!r} "
                                   f"(data row {int(empty[0]) + 1})")
    if (cols["batch_size"][d] < 1).any() or (cols["prefill_chunk_size"][p] < 1).any():
        raise CorruptFileError(f"{str(path)!r}: decode batch_size and prefill_chunk_size "
                               f"must be >= 1")
    dk, (dms,) = _mean_by_key(np.column_stack([cols["batch_size"][d], cols["kv_cache_size"][d]]),
                              cols[dec][d])
    pk, (pms,) = _mean_by_key(
        np.column_stack([cols["prefill_chunk_size"][p], cols["kv_cache_size"][p]]), cols[pre][p])
    return AttentionProfile(path, dk[:, 0], dk[:, 1], dms, pk[:, 0], pk[:, 1], pms)


def load_cpu_overheads(root: Path, model: ModelShape) -> CpuProfile:
    """``a100/cpu_overheads.csv`` rows of ``model`` at TP=1 (the only GPU profiled)."""
    path = root / "data" / "profiling" / "a100" / "cpu_overheads.csv"
    cols_wanted = [f"{op}_median" for op in CPU_OPS[:-1]] + ["ray_comm_time_mean"]
    cols, texts = read_csv(path, cols_wanted, integer=["batch_size", "tensor_parallel_degree"],
                           text=["model_name"])
    mask = np.array([n == model.hf_name for n in texts["model_name"]])
    mask &= cols["tensor_parallel_degree"] == 1
    if mask.sum() < 2:
        raise CorruptFileError(f"{str(path)!r} holds {int(mask.sum())} TP=1 rows of "
                               f"{model.hf_name}; at least 2 are needed")
    batch, avg = _mean_by_key(cols["batch_size"][mask], *(cols[c][mask] for c in cols_wanted))
    if batch[0] < 1:
        raise CorruptFileError(f"{str(path)!r}: batch_size must be >= 1")
    return CpuProfile(path, batch, dict(zip(CPU_OPS, avg, strict=True)))
