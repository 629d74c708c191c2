"""Smoke-run every shipped benchmark at --quick size, then build the report from it.

Tests never assert timings; they check that each benchmark runs end to end, writes a
well-formed record, times or explicitly skips each peer, and that the report builds.
"""

import importlib.util
import json

import pytest

from llmds.bench import available
from llmds.bench.report import CLAIMS
from llmds.cli import main
from tests.report_trace import untraced_numbers


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_quick_benchmark_runs(name, results_dir, request):
    if name == "sharded" and importlib.util.find_spec("ray") is not None:
        request.getfixturevalue("ray_cluster")  # the session's Ray: started once per session
    assert main(["bench", name, "--quick", "--repeat", "2", "--out", str(results_dir)]) == 0
    record = json.loads((results_dir / f"{name}.json").read_text())
    assert record["benchmark"] == name and record["size"] == "quick"
    assert record["rows"], "a benchmark must report at least one row"
    for row in record["rows"]:
        assert "impl" in row or "config" in row or "name" in row
    for r in record["ratios"]:
        assert set(r) >= {"name", "value", "goal", "met"}


@pytest.mark.slow
def test_report_from_quick_results(results_dir, tmp_path):
    if not any(results_dir.glob("*.json")):
        pytest.skip("no benchmark ran in this session")
    assert main(["report", "--results", str(results_dir), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    for path in results_dir.glob("*.json"):
        assert json.loads(path.read_text())["title"] in md
    # every number in the report built from the real (quick) results traces to them
    assert untraced_numbers(md, results_dir) == []
    assert f"## {CLAIMS}" in md
