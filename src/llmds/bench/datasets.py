"""Where benchmark data comes from: ``--data DIR``, ``$LLMDS_DATA``, or ``../shared/datasets``.

No data is bundled. Without a data folder each benchmark runs its seeded synthetic
workload and records that it did. See README ("Benchmark data") for where to get
each collection.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_data_dir"]


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Resolve the datasets folder: explicit path, then ``LLMDS_DATA``, then the default.

    The default is ``../shared/datasets`` relative to the working directory or to the
    repository root (when it exists). An explicit path or ``LLMDS_DATA`` that does not
    exist raises ``FileNotFoundError``: a typo must not silently fall back to synthetic data.
    """
    for label, value in (("--data", explicit), ("LLMDS_DATA", os.environ.get("LLMDS_DATA"))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{label} points to {str(path)!r}, which is not a folder")
            return path.resolve()
    repo_root = Path(__file__).resolve().parents[3]
    for base in (Path.cwd(), repo_root):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate.resolve()
    return None
