"""Micro-batching (request-level, the Scheduler's release rules): the ``"micro_batch"`` mode.

The Scheduler's release rules (full batch, ``max_wait_ms``, SLO) release a batch; the
batch reserves KV for its requests' whole prompt + output, runs its prefill phase
and then decode iterations until its longest request ends, and only then is the
server free for the next batch. Requests whose KV does not fit wait for the next
batch. The prefill phase packs the uncached prompt tails into iterations of at most
``max_num_batched_tokens`` tokens (in batch order, a tail split across two
iterations where it does not fit whole), so no iteration exceeds the token budget;
every first token comes at the end of that phase. The decode phase's token times are
computed in closed form with NumPy (decode step ``j`` runs the requests with more
than ``j`` output tokens), not iteration by iteration.

Thread safety: not thread-safe (see :class:`~llmds.sim.server.Server`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from llmds.errors import CapacityError
from llmds.sim.metrics import FINISHED
from llmds.sim.server import LiveRequest, Server

__all__ = ["MicroBatching"]


class MicroBatching(Server):
    """The micro-batching loop over a :class:`~llmds.sim.server.Server`'s state.

    Complexity per batch: O(k log k + longest output) NumPy work for k requests.
    Thread safety: not thread-safe.
    """

    def _run_micro_batch(self) -> None:
        """Release, place and run batches until every request has finished. O(events)."""
        deferred: list[LiveRequest] = []
        while True:
            self._arrive_until(self.now)
            if deferred:
                batch, deferred = deferred, []
            else:
                release = self._next_release()
                if isinstance(release, float):  # nothing due now: look again then
                    if release == math.inf:
                        return
                    self._arrive_until(release)
                    self.now = release
                    continue
                batch = [self.runs[i] for i in release]
                self._dispatched(release)
            placed = self._place(batch, deferred)
            if not placed:
                raise RuntimeError("simulator stalled: a batch's KV does not fit an empty pool")
            self._run_batch(placed)

    def _next_release(self) -> list[int] | float:
        """The batch the Scheduler releases now, or the time to look again (inf: done).

        With nothing due, that time is the next arrival or release rule, whichever
        comes first; once nothing else can arrive, whatever is queued is forced out.
        O(k log n).
        """
        sched = self.sched
        ids = sched.get_batch()
        if ids is not None:
            return ids
        t_arr = self._next_arrival()
        due = sched.next_release_time()
        if due is None and t_arr == math.inf:
            return math.inf
        if t_arr == math.inf and (due is None or due == math.inf):
            return sched.get_batch(force=True) or []  # drain: nothing else will come
        t = min(t_arr, math.inf if due is None else due)
        if t <= self.now:  # float edge: the rule fires now
            return sched.get_batch(force=True) or []
        return t

    def _place(self, batch: list[LiveRequest], deferred: list[LiveRequest]) -> list[LiveRequest]:
        """Reserve KV for prompt + output of each request that fits; defer the rest. O(k T)."""
        kv = self.kv
        placed: list[LiveRequest] = []
        for run in batch:
            n = run.req.prompt_tokens + run.req.output_tokens
            try:
                cached = kv.allocate(run.sid, run.ids[:n])
            except CapacityError:
                deferred.append(run)
                continue
            run.computed = min(cached, run.req.prompt_tokens - 1)
            if run.rec.first_scheduled is None:
                run.rec.first_scheduled = self.now
                run.rec.cached_tokens = run.computed
            placed.append(run)
        return placed

    def _prefill_ms(self, placed: list[LiveRequest]) -> float:
        """The prefill phase: uncached tails packed into budgeted iterations. O(k + iters)."""
        cost = self.config.cost
        budget = self.config.max_num_batched_tokens
        total = 0.0
        chunks: list[tuple[int, int]] = []
        room = budget
        for r in placed:
            done, end = r.computed, r.req.prompt_tokens
            while done < end:
                take = min(end - done, room)
                chunks.append((take, done))
                done += take
                room -= take
                if room == 0:
                    total += cost.iteration_ms_mix(0, 0, chunks)
                    chunks, room = [], budget
        if chunks:
            total += cost.iteration_ms_mix(0, 0, chunks)
        return total

    def _token_times(self, placed: list[LiveRequest], t0: float) -> npt.NDArray[np.float64]:
        """Time of output token ``j`` of the batch started at ``t0``: ``times[j]``. O(k log k + m).

        The prefill phase (:meth:`_prefill_ms`), then decode step ``j`` (1 .. longest
        output - 1) over the requests with more than ``j`` outputs, each reading its
        prompt plus ``j - 1`` KV tokens (as a continuous-batching decode step does).
        """
        cost = self.config.cost
        t = t0 + self._prefill_ms(placed) / 1000.0
        outs = np.array([r.req.output_tokens for r in placed], dtype=np.int64)
        prompts = np.array([r.req.prompt_tokens for r in placed], dtype=np.int64)
        steps = np.arange(1, int(outs.max()), dtype=np.int64)
        order = np.argsort(outs, kind="stable")
        sorted_prompt_suffix = np.concatenate((np.cumsum(prompts[order][::-1])[::-1], [0]))
        first_active = np.searchsorted(outs[order], steps, side="right")
        count = len(placed) - first_active
        # step j feeds output token j: the cache holds the prompt and j - 1 outputs
        kv_read = sorted_prompt_suffix[first_active] + (steps - 1) * count
        step_ms = cost.decode_steps_ms(count, kv_read)
        return t + np.concatenate(([0.0], np.cumsum(step_ms) / 1000.0))

    def _run_batch(self, placed: list[LiveRequest]) -> None:
        """Run a placed batch to its end: record every token, free the KV. O(k + m)."""
        t0 = self.now
        self._record_util()
        times = self._token_times(placed, t0)
        for run in placed:
            o = run.req.output_tokens
            rec = run.rec
            rec.first_token = float(times[0])
            rec.last_token = float(times[o - 1])
            if o > 1:
                rec.itls.frombytes(np.diff(times[:o]).tobytes())
            rec.generated = o
            rec.finish = rec.last_token
        self.now = float(times[-1])
        self._record_memory(len(placed), self.now - t0)
        self.busy_s += self.now - t0
        self._arrive_until(self.now)  # arrivals during the batch, each at its own time
        for run in placed:
            self.kv.free(run.sid, run.req.prompt_tokens + run.req.output_tokens - 1)
            run.rec.status = FINISHED
            del self.runs[run.sid]
        self.sched.complete_batch([r.sid for r in placed])
