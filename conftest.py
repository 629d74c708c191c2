"""Root pytest configuration: what the README doctests need (tests/conftest.py has the rest)."""

from __future__ import annotations

import doctest
import importlib.util

# README examples that need torch: the first line of the block carries the option
# SKIP_WITHOUT_TORCH; without torch, that example and the rest of its ``` block are
# skipped (torch is in the test extra, so `make test` runs them).
SKIP_WITHOUT_TORCH = doctest.register_optionflag("SKIP_WITHOUT_TORCH")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("torch") is not None:
        return
    for item in items:
        test = getattr(item, "dtest", None)
        if test is None or not test.filename or not test.filename.endswith(".md"):
            continue
        with open(test.filename, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        skipping_until = -1
        for ex in test.examples:
            if ex.options.get(SKIP_WITHOUT_TORCH):
                end = ex.lineno
                while end < len(lines) and not lines[end].startswith("```"):
                    end += 1
                skipping_until = end
            if ex.lineno < skipping_until:
                ex.options[doctest.SKIP] = True
