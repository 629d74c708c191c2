# The two quick-start commands. Each works on a fresh clone with Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bench test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the library with the peer libraries and runs the main job at its default size,
# then writes the report (Markdown, HTML, plots and the Word document).
bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench,report]"
	$(BIN)/llmds bench
	$(BIN)/llmds report

# Installs with the test extras and runs lint, the type check and the whole suite.
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest
