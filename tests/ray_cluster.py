"""The real local Ray of the sharded-pipeline tests: started once per test session.

``ray_cluster`` (session): ``ray.init(num_cpus=2, include_dashboard=False)`` on
loopback (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's single-machine mode, every
process on 127.0.0.1; no usage reporting), shut down at the end of the session. It
costs ~5-10 s once and ~750 MB of RSS while it runs. Without Ray the tests that use
it are skipped with the reason, except under CI (``CI`` set), where the ``ray``
extra is installed by ``make test`` and a missing Ray is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from llmds.dist._shards import local_ray_env


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    if importlib.util.find_spec("ray") is None:
        why = "ray is not installed (pip install 'llmds[ray]')"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; make test installs the ray extra")
        pytest.skip(why)
    local_ray_env()  # before Ray's first import in this process
    import ray

    if ray.is_initialized():  # someone else's Ray: use it, leave it running
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
