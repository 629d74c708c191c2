import os

from hypothesis import settings

# deadline=None: the first call of a numba kernel compiles it (seconds with a cold
# cache), which Hypothesis would otherwise report as DeadlineExceeded.
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The real local Ray of the ShardedRetrievalPipeline tests (tests/ray_cluster.py) and the
# real redis-server of llmds.dist's Redis tests (tests/redis_server.py).
from tests.ray_cluster import ray_cluster  # noqa: E402, F401
from tests.redis_server import make_redis_server, redis_server, redis_url  # noqa: E402, F401
