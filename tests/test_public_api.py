import subprocess
import sys

import pytest

import llmds
from llmds.bench import BENCHMARKS, available


def test_every_public_name_resolves():
    for name in llmds.__all__:
        assert getattr(llmds, name) is not None, name
    assert llmds.__version__


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no_such_name"):
        llmds.no_such_name  # noqa: B018


def test_import_is_lazy():
    # `import llmds` must not pull in numba: kernels load with the structure that needs them.
    code = "import sys, llmds; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_is_complete():
    # every benchmark the CLI advertises is shipped
    assert available() == list(BENCHMARKS)


def test_seed_benchmark_modules_import():
    import importlib

    for name in BENCHMARKS:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        assert callable(getattr(module, f"benchmark_{name}")), name
