"""Simulation config files for ``llmds simulate --config FILE`` (JSON, or TOML by suffix).

TOML (a ``.toml`` suffix) needs Python >= 3.11 (the standard library's ``tomllib``);
JSON works everywhere. The file must be a regular file of at most 1 MiB of UTF-8
text; sizes are capped before anything is allocated (``requests`` <= 1,000,000, a chat
trace of at most about 2**28 token ids, the KV pool at most 2**28 token slots).

Schema (every key optional; defaults in brackets). Unknown keys and bad values raise
``ValueError`` naming the key (``config key 'server.kv_pages': ...``)::

    requests  int in [1, 1000000] [2000]  number of requests (``--requests`` overrides)
    seed      int in [0, 2**63 - 1] [0]   workload seed (``--seed`` overrides)
    workload:
      source    "synthetic" | "chat_trace" ["synthetic"]
      rate      float > 0 [5.0]  mean arrivals per second
      process   "poisson" | "gamma" ["poisson"];  cv  float > 0 [2.0] (gamma burstiness)
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
    cost:        CostModel fields: overhead_ms, per_token_ms, prefill_quad_ms,
                 per_kv_token_ms

Example (JSON)::

    {"requests": 500, "workload": {"source": "chat_trace", "rate": 4.0},
     "tenants": [{"name": "a", "share": 3}, {"name": "b", "weight": 2}],
     "server": {"policy": "fair", "kv_backend": "radix", "kv_pages": 4096},
     "cost": {"overhead_ms": 6.0}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmds._validate import show
from llmds.sim.arrivals import (
    MAX_REQUESTS,
    LengthDist,
    SimRequest,
    SLOClass,
    Tenant,
    check_chat_trace_size,
    check_num_requests,
    check_seed,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import SimConfig

__all__ = ["SimSpec", "load_config", "parse_config", "read_text_file"]

_TOP = ("requests", "seed", "workload", "slo_classes", "tenants", "server", "cost")
_WORKLOAD = ("source", "rate", "process", "cv", "prompt", "output", "trace")
_SOURCES = ("synthetic", "chat_trace")
_LENGTH = ("kind", "mean", "low", "high", "sigma")
_TRACE = ("vocab_size", "num_system_prompts", "system_prompt_tokens", "user_tokens",
          "follow_up_prob", "recent_conversations", "follow_up_tokens", "output_tokens")
_TRACE_RANGES = ("user_tokens", "follow_up_tokens", "output_tokens")
_SLO = ("name", "weight", "ttft_ms", "e2e_ms", "tpot_ms")
_TENANT = ("name", "share", "weight", "qps_limit", "token_rate_limit")
_SERVER = ("mode", "policy", "max_num_seqs", "max_wait_ms", "max_num_batched_tokens",
           "chunked_prefill", "kv_backend", "kv_page_size", "kv_pages", "prefix_caching",
           "qps_limit", "token_rate_limit")
_COST = ("overhead_ms", "per_token_ms", "prefill_quad_ms", "per_kv_token_ms")
_MAX_CONFIG_BYTES = 1 << 20
_MAX_TRACE_LENGTH = 1 << 20  # tokens of one system prompt, user message, follow-up, output
# workload.trace integer keys -> (minimum, maximum)
_TRACE_INTS = {"vocab_size": (1, 2**31 - 1), "num_system_prompts": (1, 1 << 16),
               "system_prompt_tokens": (1, _MAX_TRACE_LENGTH),
               "recent_conversations": (1, 1 << 20)}


@dataclass(frozen=True, slots=True)
class SimSpec:
    """A validated config: everything needed to build the workload and the server."""

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
        if self.source == "chat_trace":
            check_chat_trace_size(n, **self.trace)  # before drawing anything
        slo = list(self.slo_classes) or None
        tenants = list(self.config.tenants) or None
        if self.source == "synthetic":
            reqs = synthetic_workload(
                n, self.rate, process=self.process, cv=self.cv, prompt=self.prompt,
                output=self.output, slo_classes=slo, tenants=tenants, seed=s,
            )
        else:
            from llmds.bench.workloads import multi_turn_chat_trace

            trace = multi_turn_chat_trace(n, seed=s, **self.trace)
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


def _make(path: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call a validating constructor; re-raise its error with the key path."""
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config key '{path}': {exc}") from None


def _int(value: Any, path: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config key '{path}' must be an int >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"config key '{path}' must be <= {maximum}, got {value!r}")
    return value


def _choice(value: Any, path: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"config key '{path}' must be one of {options}, got {value!r}")
    return str(value)


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"config key '{path}' must be a list, got {value!r}")
    return value


def parse_config(data: Any) -> SimSpec:
    """Validate a config mapping (the parsed JSON/TOML) into a :class:`SimSpec`. O(size)."""
    top = _table(data, "", _TOP)
    requests = _int(top.get("requests", 2000), "requests", 1, MAX_REQUESTS)
    seed = _int(top.get("seed", 0), "seed", 0, 2**63 - 1)
    wl = _table(top.get("workload", {}), "workload", _WORKLOAD)
    source = _choice(wl.get("source", "synthetic"), "workload.source", _SOURCES)
    process = _choice(wl.get("process", "poisson"), "workload.process", ("poisson", "gamma"))
    rate, cv = wl.get("rate", 5.0), wl.get("cv", 2.0)
    for name, v in (("rate", rate), ("cv", cv)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise ValueError(f"config key 'workload.{name}' must be a number > 0, got {v!r}")
    if not 1e-3 <= cv <= 1e3:
        raise ValueError(f"config key 'workload.cv' must be in [0.001, 1000], got {cv!r}")
    lengths: dict[str, LengthDist | None] = {"prompt": None, "output": None}
    for name in lengths:
        if name in wl:
            if source != "synthetic":
                raise ValueError(f"config key 'workload.{name}': only for source 'synthetic' "
                                 "(the chat trace has its own lengths; see workload.trace)")
            spec = _table(wl[name], f"workload.{name}", _LENGTH)
            lengths[name] = _make(f"workload.{name}", LengthDist, spec)
    trace: dict[str, Any] = {}
    if "trace" in wl:
        if source != "chat_trace":
            raise ValueError("config key 'workload.trace': only for source 'chat_trace'")
        trace = dict(_table(wl["trace"], "workload.trace", _TRACE))
        for key in _TRACE_RANGES:
            if key in trace:
                r = trace[key]
                if (not isinstance(r, list) or len(r) != 2
                        or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                        or not 1 <= r[0] <= r[1] <= _MAX_TRACE_LENGTH):
                    raise ValueError(f"config key 'workload.trace.{key}' must be [lo, hi] "
                                     f"ints with 1 <= lo <= hi <= {_MAX_TRACE_LENGTH}, "
                                     f"got {r!r}")
                trace[key] = (r[0], r[1])
        for key, (lo, hi) in _TRACE_INTS.items():
            if key in trace:
                _int(trace[key], f"workload.trace.{key}", lo, hi)
        p = trace.get("follow_up_prob", 0.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(
                f"config key 'workload.trace.follow_up_prob' must be in [0, 1], got {p!r}")
    slo = tuple(
        _make(f"slo_classes[{i}]", SLOClass, _table(c, f"slo_classes[{i}]", _SLO))
        for i, c in enumerate(_list(top.get("slo_classes", []), "slo_classes"))
    )
    tenants = tuple(
        _make(f"tenants[{i}]", Tenant, _table(t, f"tenants[{i}]", _TENANT))
        for i, t in enumerate(_list(top.get("tenants", []), "tenants"))
    )
    cost = _make("cost", CostModel, _table(top.get("cost", {}), "cost", _COST))
    server = _table(top.get("server", {}), "server", _SERVER)
    config = _make("server", SimConfig, {**server, "cost": cost, "tenants": tenants})
    return SimSpec(requests, seed, source, float(rate), process, float(cv), lengths["prompt"],
                   lengths["output"], trace, slo, config)


def read_text_file(path: str | os.PathLike[str], what: str, max_bytes: int) -> str:
    """The UTF-8 text of a small regular file, or ``ValueError`` naming ``what``. O(size).

    A missing, unreadable, non-regular (folder, FIFO, device: never opened in a way
    that blocks) or larger-than-``max_bytes`` file, or one that is not UTF-8, raises
    ``ValueError("<what> '<path>' ...")`` before its contents are read.
    """
    from llmds._persist import open_regular

    where = os.fspath(path)
    try:
        fd, size = open_regular(where)
    except FileNotFoundError:
        raise ValueError(f"{what} {where!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {where!r}: {exc.strerror or exc}") from None
    except ValueError:  # CorruptFileError: a folder, FIFO, socket or device
        raise ValueError(f"{what} {where!r} is not a regular file") from None
    try:
        if size > max_bytes:
            raise ValueError(f"{what} {where!r} is {size:,} bytes, more than {max_bytes:,}")
        chunks = []
        left = max_bytes + 1  # the file may have grown since fstat
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {where!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {where!r} is more than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {where!r} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None


def load_config(path: str | Path) -> SimSpec:
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
    return parse_config(data)
