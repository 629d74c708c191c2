# The two quick-start commands, and the API reference. Each works on a fresh clone with
# Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bench test docs

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

# Installs the docs extra (pdoc) and writes the API reference from the docstrings to
# docs/api/ (open docs/api/index.html). Generated, not committed: it is rebuilt from the
# code in seconds, so it can never disagree with the docstrings.
API_MODULES := llmds llmds.sim llmds.sim.config llmds.page_hash llmds.dist
docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/api
	$(BIN)/pdoc --docformat restructuredtext --no-show-source --footer-text "llmds API reference" \
		--output-directory docs/api $(API_MODULES)
	@echo "API reference: docs/api/index.html"
