"""``python -m llmds ...``: the same command as the ``llmds`` console script."""

from llmds.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
