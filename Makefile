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

# Installs with the test extras (and Ray, for the sharded pipeline's tests) and runs lint,
# the type check and the whole suite.
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Installs the docs extra (pdoc) and writes the API reference from the docstrings to
# docs/api/ (open docs/api/index.html). Generated, not committed: it is rebuilt from the
# code in seconds, so it can never disagree with the docstrings.
# llmds.integrations.* are left out: each imports its framework (or torch) and raises
# ImportError without it, and pdoc 16 stops at the first module that fails to import
# (it has no skip-on-error mode), so `make docs` would need ~320 MB of frameworks.
API_MODULES := llmds llmds.filters llmds.sim llmds.sim.config llmds.page_hash llmds.dist
docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/api
	$(BIN)/pdoc --docformat restructuredtext --no-show-source --footer-text "llmds API reference" \
		--output-directory docs/api $(API_MODULES)
	@echo "API reference: docs/api/index.html"
