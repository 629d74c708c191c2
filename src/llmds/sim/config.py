"""Simulator configuration: :class:`SimConfig` (the server) and config files.

:class:`SimConfig` is what :class:`~llmds.sim.engine.Simulator` runs with (also
importable from :mod:`llmds.sim.engine`). Config files for ``llmds simulate --config
FILE`` (JSON, or TOML by suffix) describe a workload, a :class:`SimConfig` and a
:class:`~llmds.sim.cost_model.CostModel`; :func:`load_config` reads and checks them.

TOML (a ``.toml`` suffix) needs Python >= 3.11 (the standard library's ``tomllib``);
JSON works everywhere. The file must be a regular file of at most 1 MiB of UTF-8
text; sizes are capped before anything is allocated (``requests`` <= 1,000,000, a chat
trace of at most about 2**28 token ids, the KV pool at most 2**28 token slots).

Schema (every key optional; defaults in brackets). Unknown keys and bad values raise
``ValueError`` naming the key (``config key 'workload.rate' must be > 0.0, got -2.0``,
``config key 'server': kv_pages must be >= 1, got 0``)::

    requests  int in [1, 1000000] [2000]  number of requests (``--requests`` overrides)
    seed      int in [0, 2**63 - 1] [0]   workload seed (``--seed`` overrides)
    workload:
      source    "synthetic" | "chat_trace" ["synthetic"]
      rate      float > 0 [5.0]  mean arrivals per second
      process   "poisson" | "gamma" ["poisson"]
      cv        float in [0.001, 1000] [2.0]  gamma burstiness
      prompt    {kind, mean, low, high, sigma}  LengthDist, synthetic only
                [uniform 64..1024]
      output    {kind, mean, low, high, sigma}  LengthDist, synthetic only [uniform 16..256]
      trace     {vocab_size, num_system_prompts, system_prompt_tokens, user_tokens,
                 follow_up_prob, recent_conversations, follow_up_tokens, output_tokens}
                multi_turn_chat_trace arguments, chat_trace only ([lo, hi] for ranges)
    slo_classes: [{name, weight, ttft_ms, e2e_ms, tpot_ms}, ...]   SLOClass, [none]
    tenants:     [{name, share, weight, qps_limit, token_rate_limit}, ...]  Tenant, [none]
    server:      SimConfig fields: mode, policy, max_num_seqs, max_wait_ms,
                 max_num_batched_tokens, chunked_prefill, kv_backend, kv_page_size,
                 kv_pages, prefix_caching, qps_limit, token_rate_limit
    cost:        either CostModel fields (the guessed model): overhead_ms,
                 per_token_ms, prefill_quad_ms, per_kv_token_ms;
                 or a GPU and model (Vidur's profiles, see :meth:`SimConfig.on_gpu`):
                 gpu ("a100" | "h100"), model ("llama-2-7b" | "llama-3-8b"),
                 cpu_overhead (bool) [false], prefill_rule ("vidur" | "per_request")
                 ["vidur"], gpu_memory_utilization (0, 1] [0.9]; server.kv_pages then
                 defaults to the pages that model's KV fits in (vLLM's rule)

Example (JSON)::

    {"requests": 500, "workload": {"source": "chat_trace", "rate": 4.0},
     "tenants": [{"name": "a", "share": 3}, {"name": "b", "weight": 2}],
     "server": {"policy": "fair", "kv_backend": "radix", "kv_pages": 4096},
     "cost": {"gpu": "a100", "model": "llama-2-7b"}}

The profiles are found as :func:`llmds.sim.profiles.find_profiles_dir` finds them
(``profiles_dir`` of :func:`load_config`, which ``llmds simulate --data`` sets, then
``$LLMDS_DATA``, then ``../shared/datasets``); missing ones are a ``ValueError``
naming the key.

Thread safety: :class:`SimConfig` and :class:`SimSpec` are immutable; the functions
are pure. Safe from any number of threads.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmds._files import read_text_file
from llmds._validate import (
    INT64_MAX,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_size,
    show,
)
from llmds.sim.arrivals import (
    ARRIVAL_PROCESSES,
    CV_RANGE,
    MAX_REQUESTS,
    LengthDist,
    SimRequest,
    SLOClass,
    Tenant,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.kv_backends import KV_BACKENDS
from llmds.sim.profiles.cost import PREFILL_RULES, ProfileCostModel
from llmds.sim.profiles.hardware import GPUS, MODELS, get_gpu, get_model, kv_pages
from llmds.sim.profiles.tables import find_profiles_dir
from llmds.sim.workloads import (
    TRACE_PARAMS,
    check_num_requests,
    check_seed,
    check_trace_params,
    multi_turn_chat_trace,
)

__all__ = [
    "MAX_KV_TOKENS",
    "MODES",
    "POLICIES",
    "SimConfig",
    "SimSpec",
    "load_config",
    "move_to_gpu",
    "parse_config",
    "profile_cost",
    "read_text_file",
]

MODES = ("continuous", "micro_batch")
POLICIES = ("default", "fcfs", "edf", "sjf", "fair")

# Size caps, checked before anything is allocated (a typo such as kv_pages=10**9 used to
# end in a MemoryError after seconds of allocation). The KV pool is one float32 per
# token slot plus Python bookkeeping per page, so it is capped in slots and in pages.
MAX_KV_TOKENS = 1 << 28  # kv_pages * kv_page_size: a 1 GiB pool, mapped lazily
_MAX_KV_PAGES = 1 << 22  # ~50 bytes of allocator bookkeeping per page: ~200 MiB
_MAX_PAGE_SIZE = 1 << 16
_MAX_NUM_SEQS = 1 << 20
_MAX_BATCHED_TOKENS = (1 << 31) - 1  # the Scheduler's per-request token limit


_PROFILES: dict[tuple[Any, ...], ProfileCostModel] = {}
_PROFILES_LOCK = threading.Lock()


def profile_cost(
    gpu: str = "a100",
    model: str = "llama-2-7b",
    profiles_dir: str | os.PathLike[str] | None = None,
    *,
    cpu_overhead: bool = False,
    prefill_rule: str = "vidur",
) -> ProfileCostModel:
    """The simulator's profile cost model for a GPU and model, built once per setting.

    ``ProfileCostModel.from_profiles(..., extrapolate=True)``: a batch beyond the
    profiled range (a decode batch above 128, KV beyond 4096 tokens, summed prefill KV
    of several prefix-cached prompts above 4096) is extended linearly and counted, and
    every run reports its own count as ``metrics["num_extrapolated"]``. The model is
    shared by every config built with the same arguments (~0.2 s to build). Raises
    ``ValueError`` for an unknown GPU or model (naming the known ones) or a bad
    setting, ``FileNotFoundError`` when the profiles are missing and
    :class:`~llmds.errors.CorruptFileError` for a malformed profile. Thread-safe.
    """
    get_gpu(gpu)
    get_model(model)
    check_bool(cpu_overhead, "cpu_overhead")
    check_choice(prefill_rule, "prefill_rule", PREFILL_RULES)
    root = find_profiles_dir(profiles_dir)
    key = (gpu, model, str(root), cpu_overhead, prefill_rule)
    with _PROFILES_LOCK:
        cost = _PROFILES.get(key)
        if cost is None:
            cost = ProfileCostModel.from_profiles(gpu, model, root, cpu_overhead=cpu_overhead,
                                                  extrapolate=True, prefill_rule=prefill_rule)
            _PROFILES[key] = cost
    return cost


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Server configuration. Validated on construction (the error names the field).

    ``mode``: one of :data:`MODES`; ``policy``: one of :data:`POLICIES` (queue
    order); ``max_num_seqs``: running requests (continuous) or batch size
    (micro_batch); ``max_wait_ms``: the Scheduler's wait rule (micro_batch);
    ``max_num_batched_tokens``: per-iteration token budget (continuous);
    ``chunked_prefill``; ``kv_page_size``/``kv_pages``: the KV pool (``kv_pages``
    is the pool size in pages, the ``num_pages`` of
    :class:`~llmds.paged_allocator.PagedAllocator`; the name stays for config
    files); ``kv_backend``: one of :data:`~llmds.sim.kv_backends.KV_BACKENDS`
    (``"kvcache"`` hash-chain KVCache, ``"radix"`` RadixCache + PagedAllocator);
    ``prefix_caching``; ``qps_limit``/``token_rate_limit`` (None: no admission
    control; set either to enable it, the other then defaults to unlimited-ish
    1e12); ``tenants``: a tuple of :class:`~llmds.sim.arrivals.Tenant` (per-tenant
    buckets and ``policy="fair"`` weights; tenants not listed have weight 1 and no
    bucket); ``cost``: the iteration cost model, the guessed
    :class:`~llmds.sim.cost_model.CostModel` or a GPU's
    :class:`~llmds.sim.profiles.ProfileCostModel` (:meth:`on_gpu` builds both it
    and the KV pool its GPU holds). With a profile model ``kv_pages`` may not exceed
    what the model's KV fits in the GPU's whole memory (``kv_pages(gpu, model,
    kv_page_size, gpu_memory_utilization=1.0)``), so no simulated batch holds KV that
    would not fit: the profiles' decode rows beyond that memory are never used.

    Thread safety: immutable; share it freely.
    """

    mode: str = "continuous"
    policy: str = "default"
    max_num_seqs: int = 64
    max_wait_ms: float = 50.0
    max_num_batched_tokens: int = 2048
    chunked_prefill: bool = True
    kv_page_size: int = 16
    kv_pages: int = 8192
    prefix_caching: bool = True
    qps_limit: float | None = None
    token_rate_limit: float | None = None
    cost: CostModel | ProfileCostModel = field(default_factory=CostModel)
    kv_backend: str = "kvcache"
    tenants: tuple[Tenant, ...] = ()

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", MODES)
        check_choice(self.policy, "policy", POLICIES)
        check_size(self.max_num_seqs, "max_num_seqs", maximum=_MAX_NUM_SEQS)
        check_size(self.max_num_batched_tokens, "max_num_batched_tokens",
                   maximum=_MAX_BATCHED_TOKENS, why="the Scheduler's token limit")
        check_size(self.kv_page_size, "kv_page_size", maximum=_MAX_PAGE_SIZE)
        check_size(self.kv_pages, "kv_pages", maximum=_MAX_KV_PAGES,
                   why="~50 bytes of bookkeeping per page")
        if self.kv_pages * self.kv_page_size > MAX_KV_TOKENS:
            raise ValueError(
                f"kv_pages * kv_page_size must be <= {MAX_KV_TOKENS} token slots, got "
                f"{self.kv_pages} * {self.kv_page_size} = {self.kv_pages * self.kv_page_size}"
            )
        check_number(self.max_wait_ms, "max_wait_ms", minimum=0.0, finite=False)
        for name in ("qps_limit", "token_rate_limit"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, minimum=0.0, exclusive_minimum=True)
        if isinstance(self.cost, ProfileCostModel):
            self._check_kv_memory(self.cost)
        elif not isinstance(self.cost, CostModel):
            raise TypeError(f"cost must be a CostModel or a ProfileCostModel, got "
                            f"{show(self.cost)}")
        check_choice(self.kv_backend, "kv_backend", KV_BACKENDS)
        check_bool(self.chunked_prefill, "chunked_prefill")
        check_bool(self.prefix_caching, "prefix_caching")
        if not isinstance(self.tenants, tuple) or not all(
            isinstance(t, Tenant) for t in self.tenants
        ):
            raise TypeError(f"tenants must be a tuple of Tenant, got {show(self.tenants)}")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenants must have distinct names, got {names}")

    def _check_kv_memory(self, cost: ProfileCostModel) -> None:
        gpu, model = cost.gpu.name, cost.model.name
        most = kv_pages(gpu, model, self.kv_page_size, gpu_memory_utilization=1.0)
        if self.kv_pages > most:
            usual = kv_pages(gpu, model, self.kv_page_size)
            raise ValueError(
                f"kv_pages must be <= {most} for {model} on {gpu} (its KV in the whole GPU "
                f"memory, pages of {self.kv_page_size} tokens; vLLM's default 0.9 "
                f"utilisation gives {usual}), got {self.kv_pages}"
            )

    @classmethod
    def on_gpu(
        cls,
        gpu: str = "a100",
        model: str = "llama-2-7b",
        *,
        profiles_dir: str | os.PathLike[str] | None = None,
        cpu_overhead: bool = False,
        prefill_rule: str = "vidur",
        gpu_memory_utilization: float = 0.9,
        **fields: Any,
    ) -> SimConfig:
        """A server on ``gpu`` serving ``model``: the profile cost model and its KV pool.

        ``cost`` is :func:`profile_cost` (Vidur's profiles, flagged extrapolation);
        ``kv_pages``, unless given, is what vLLM would allocate
        (:func:`llmds.sim.profiles.kv_pages` at ``gpu_memory_utilization``: 7,463
        pages of 16 tokens for Llama-2-7B on an A100-80GB). Other ``fields`` are
        :class:`SimConfig`'s. ~0.2 s the first time per setting (the tables).
        """
        cost = profile_cost(gpu, model, profiles_dir, cpu_overhead=cpu_overhead,
                            prefill_rule=prefill_rule)
        if "kv_pages" not in fields:
            fields["kv_pages"] = kv_pages(gpu, model, fields.get("kv_page_size", 16),
                                          gpu_memory_utilization=gpu_memory_utilization)
        return cls(cost=cost, **fields)


def move_to_gpu(
    config: SimConfig,
    gpu: str = "a100",
    model: str = "llama-2-7b",
    *,
    profiles_dir: str | os.PathLike[str] | None = None,
    keep_kv_pages: bool = False,
) -> SimConfig:
    """``config`` moved onto a GPU: its profile cost model and (unless ``keep_kv_pages``)
    the KV pages vLLM would allocate there (what ``llmds simulate --gpu`` does). O(1)."""
    fields: dict[str, Any] = {"kv_page_size": config.kv_page_size}
    if keep_kv_pages:
        fields["kv_pages"] = config.kv_pages
    moved = SimConfig.on_gpu(gpu, model, profiles_dir=profiles_dir, **fields)
    return replace(config, cost=moved.cost, kv_pages=moved.kv_pages)


_TOP = ("requests", "seed", "workload", "slo_classes", "tenants", "server", "cost")
_WORKLOAD = ("source", "rate", "process", "cv", "prompt", "output", "trace")
_SOURCES = ("synthetic", "chat_trace")
_LENGTH = ("kind", "mean", "low", "high", "sigma")
_SLO = ("name", "weight", "ttft_ms", "e2e_ms", "tpot_ms")
_TENANT = ("name", "share", "weight", "qps_limit", "token_rate_limit")
_SERVER = ("mode", "policy", "max_num_seqs", "max_wait_ms", "max_num_batched_tokens",
           "chunked_prefill", "kv_backend", "kv_page_size", "kv_pages", "prefix_caching",
           "qps_limit", "token_rate_limit")
_COST = ("overhead_ms", "per_token_ms", "prefill_quad_ms", "per_kv_token_ms")
_COST_GPU = ("gpu", "model", "cpu_overhead", "prefill_rule", "gpu_memory_utilization")
_MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SimSpec:
    """A validated config: everything needed to build the workload and the server.

    Thread safety: immutable; ``build`` draws a fresh workload on every call.
    """

    requests: int
    seed: int
    source: str
    rate: float
    process: str
    cv: float
    prompt: LengthDist | None
    output: LengthDist | None
    trace: dict[str, Any]
    slo_classes: tuple[SLOClass, ...]
    config: SimConfig
    kv_pages_given: bool = False  # server.kv_pages was in the file (--gpu keeps it)

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        return self.config.tenants

    def build(
        self, num_requests: int | None = None, seed: int | None = None
    ) -> tuple[list[SimRequest], SimConfig]:
        """The workload (``num_requests``/``seed`` override the file's) and config. O(n)."""
        n = self.requests if num_requests is None else num_requests
        s = check_seed(self.seed if seed is None else seed)
        if check_num_requests(n) < 1:
            raise ValueError(f"num_requests must be >= 1, got {n!r}")
        slo = list(self.slo_classes) or None
        tenants = list(self.config.tenants) or None
        if self.source == "synthetic":
            reqs = synthetic_workload(
                n, self.rate, process=self.process, cv=self.cv, prompt=self.prompt,
                output=self.output, slo_classes=slo, tenants=tenants, seed=s,
            )
        else:
            trace = multi_turn_chat_trace(n, seed=s, **self.trace)  # size checked first
            reqs = trace_workload(trace, self.rate, process=self.process, cv=self.cv,
                                  slo_classes=slo, tenants=tenants, seed=s)
        return reqs, self.config


def _table(value: Any, path: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        where = f"config key '{path}'" if path else "a config"
        raise ValueError(f"{where} must be a table/object, got {show(value)}")
    for key in value:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise ValueError(f"config: unknown key '{where}' (known: {', '.join(known)})")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"config key '{path}' must be a list, got {show(value)}")
    return value


def _key(path: str) -> str:
    """How errors name a config key: ``config key 'workload.rate'``."""
    return f"config key '{path}'"


def _make(path: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a validating function; re-raise its error as a ValueError naming the key.

    A config file's mistakes are all value errors (``llmds simulate`` exits with 2);
    the message is the check's own (``llmds._validate``), prefixed by the key path
    unless the check already names the key.
    """
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        raise ValueError(text if text.startswith("config key") else
                         f"{_key(path)}: {text}") from None


def _workload(wl: dict[str, Any]) -> dict[str, Any]:
    """The checked ``workload`` table as SimSpec fields. O(size)."""
    source = _make("workload.source", check_choice, wl.get("source", "synthetic"),
                   _key("workload.source"), _SOURCES)
    out: dict[str, Any] = {
        "source": source,
        "process": _make("workload.process", check_choice, wl.get("process", "poisson"),
                         _key("workload.process"), ARRIVAL_PROCESSES),
        "rate": _make("workload.rate", check_number, wl.get("rate", 5.0),
                      _key("workload.rate"), minimum=0.0, exclusive_minimum=True),
        "cv": _make("workload.cv", check_number, wl.get("cv", 2.0), _key("workload.cv"),
                    minimum=CV_RANGE[0], maximum=CV_RANGE[1]),
        "prompt": None, "output": None, "trace": {},
    }
    for name in ("prompt", "output"):
        if name in wl:
            if source != "synthetic":
                raise ValueError(f"config key 'workload.{name}': only for source 'synthetic' "
                                 "(the chat trace has its own lengths; see workload.trace)")
            spec = _table(wl[name], f"workload.{name}", _LENGTH)
            out[name] = _make(f"workload.{name}", LengthDist, **spec)
    if "trace" in wl:
        if source != "chat_trace":
            raise ValueError("config key 'workload.trace': only for source 'chat_trace'")
        trace = _table(wl["trace"], "workload.trace", TRACE_PARAMS)
        out["trace"] = _make("workload.trace", check_trace_params, trace,
                             lambda key: _key(f"workload.trace.{key}"))
    return out


def _cost(table: dict[str, Any], server: dict[str, Any],
          profiles_dir: str | os.PathLike[str] | None) -> tuple[Any, dict[str, Any]]:
    """The ``cost`` table as a cost model, and the server fields it implies. O(1).

    GPU keys build the profile model (:func:`profile_cost`; server.kv_pages then
    defaults to that model's pages); otherwise the keys are CostModel fields.
    """
    gpu_keys = [k for k in table if k in _COST_GPU]
    if not gpu_keys:
        return _make("cost", CostModel, **table), {}
    if len(gpu_keys) < len(table):
        raise ValueError("config key 'cost': give either gpu/model (Vidur's GPU profiles: "
                         f"{', '.join(_COST_GPU)}) or the guessed model's "
                         f"{', '.join(_COST)}, not both")
    gpu = _make("cost.gpu", check_choice, table.get("gpu", "a100"), _key("cost.gpu"), GPUS)
    model = _make("cost.model", check_choice, table.get("model", "llama-2-7b"),
                  _key("cost.model"), MODELS)
    util = _make("cost.gpu_memory_utilization", check_number,
                 table.get("gpu_memory_utilization", 0.9), _key("cost.gpu_memory_utilization"),
                 minimum=0.0, maximum=1.0, exclusive_minimum=True)
    try:
        cost = _make("cost", profile_cost, gpu, model, profiles_dir,
                     cpu_overhead=table.get("cpu_overhead", False),
                     prefill_rule=table.get("prefill_rule", "vidur"))
    except FileNotFoundError as exc:
        raise ValueError(f"{_key('cost.gpu')}: {exc}") from None
    extra: dict[str, Any] = {}
    if "kv_pages" not in server:
        page = server.get("kv_page_size", 16)
        extra["kv_pages"] = _make("server.kv_page_size", kv_pages, gpu, model, page,
                                  gpu_memory_utilization=util)
    return cost, extra


def parse_config(
    data: Any, profiles_dir: str | os.PathLike[str] | None = None
) -> SimSpec:
    """Validate a config mapping (the parsed JSON/TOML) into a :class:`SimSpec`. O(size).

    ``profiles_dir``: where to look for the GPU profiles first (``cost.gpu``).
    """
    top = _table(data, "", _TOP)
    requests = _make("requests", check_size, top.get("requests", 2000), _key("requests"),
                     maximum=MAX_REQUESTS)
    seed = _make("seed", check_int, top.get("seed", 0), _key("seed"), minimum=0,
                 maximum=INT64_MAX)
    wl = _workload(_table(top.get("workload", {}), "workload", _WORKLOAD))
    slo = tuple(
        _make(f"slo_classes[{i}]", SLOClass, **_table(c, f"slo_classes[{i}]", _SLO))
        for i, c in enumerate(_list(top.get("slo_classes", []), "slo_classes"))
    )
    tenants = tuple(
        _make(f"tenants[{i}]", Tenant, **_table(t, f"tenants[{i}]", _TENANT))
        for i, t in enumerate(_list(top.get("tenants", []), "tenants"))
    )
    server = _table(top.get("server", {}), "server", _SERVER)
    cost, implied = _cost(_table(top.get("cost", {}), "cost", _COST + _COST_GPU), server,
                          profiles_dir)
    config = _make("server", SimConfig, **server, **implied, cost=cost, tenants=tenants)
    return SimSpec(requests, seed, wl["source"], wl["rate"], wl["process"], wl["cv"],
                   wl["prompt"], wl["output"], wl["trace"], slo, config,
                   kv_pages_given="kv_pages" in server)


def load_config(
    path: str | Path, profiles_dir: str | os.PathLike[str] | None = None
) -> SimSpec:
    """Read and validate a config file: ``.toml`` as TOML, anything else as JSON. O(size).

    Raises ``ValueError`` (naming the file) for missing, unreadable, non-regular,
    oversized (> 1 MiB) or malformed files (including nesting too deep to parse), and
    the :func:`parse_config` errors for bad contents.
    """
    p = Path(path)
    text = read_text_file(p, "config file", _MAX_CONFIG_BYTES)
    if p.suffix.lower() == ".toml":
        try:
            import tomllib  # Python >= 3.11
        except ImportError:  # pragma: no cover - Python 3.10
            raise ValueError(
                f"config file {str(p)!r}: TOML needs Python >= 3.11 (tomllib); use JSON"
            ) from None
        kind, parse = "TOML", tomllib.loads
    else:
        kind, parse = "JSON", json.loads
    try:
        data = parse(text)
    except RecursionError:
        raise ValueError(f"config file {str(p)!r} is nested too deeply to be a config") from None
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, int digit limits
        raise ValueError(f"config file {str(p)!r} is not valid {kind}: {exc}") from None
    return parse_config(data, profiles_dir)
