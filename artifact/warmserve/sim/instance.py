"""One serving engine at iteration granularity (vLLM-0.6-style continuous batching).

(Past the ~400-line house rule on purpose: one hot-path class whose methods share the slot
copies of the speed notes below; splitting the scheduler from the iteration ends would add a
call or an attribute chain per event. Its start's lifecycle lives in ``warmserve.sim.starting``.)

Scheduling, as the published engines (vLLM 0.6.3, no chunked prefill) do it:

* Waiting sequences are admitted FIFO into a *prefill iteration* while the
  running count stays under ``max_num_seqs``, the iteration's prompt tokens
  under ``max_num_batched_tokens``, and the KV cache has room. Prefill runs
  alone (running sequences wait one iteration) and yields each admitted
  sequence's next token (the first token, for a new request).
  With ``engine.scheduler: mixed`` (vLLM V1, the engine the CPU testbed runs)
  the running sequences are not held back: the iteration is one *mixed step*
  in which each of them decodes a token while the admitted prompts prefill
  (token budget ``max_num_batched_tokens`` minus one per running sequence;
  prompts are admitted whole, not chunked), costing
  ``max(prefill_base, decode_base) + per_seq * running + per_ctx_token * their
  context + prefill_per_token * prompt tokens``.
* Otherwise all running sequences take *decode steps* together. Step time is
  ``decode_base + per_seq * batch + per_ctx_token * context_tokens`` (prefill
  and decode steps each times their compute-sharing factor when instances share
  a GPU, ``warmserve.control.mps``).
* KV is counted in tokens with one slack block per running sequence (an upper
  bound of vLLM's per-sequence block rounding, so the twin preempts at most a
  block early). When the next step would not fit, the most recently admitted
  sequence is preempted *by recomputation*: it goes back to the head of the
  waiting queue and its prompt plus generated tokens are prefilled again.
* A request that cannot fit an empty engine (longer than ``max_model_len`` or
  than the whole KV cache, or over the token budget alone) fails.

Cost per event, not per token: between events the batch is constant, so a
run of ``k`` decode steps is one heap event (``k`` = steps until the first
sequence finishes or KV runs out); its duration is the closed form
``k*A + D*k*(k-1)/2`` (context grows by ``batch`` tokens a step). New work
arriving mid-run truncates it at the end of the step in progress (solving the
quadratic for the steps already done), never rescheduling per token.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from warmserve.control.seam import InstancePhase, InstanceState
from warmserve.hardware import EngineLimits, Latency
from warmserve.sim.requests import FAILED, OK, RequestTable

if TYPE_CHECKING:
    from warmserve.sim.events import EventLoop

IDLE, PREFILL, DECODE = 0, 1, 2
_READY = InstancePhase.READY
_STOPPING = InstancePhase.STOPPING
_push = heapq.heappush
_pop = heapq.heappop

# Speed notes: every method here runs a few times per simulated request, so the
# request columns, engine limits and latency coefficients are copied into slots
# (no attribute chains), busy intervals go straight into the backend's arrays (``_busy``),
# and events are pushed onto the loop's heap directly (their times are never in
# the past). The arithmetic is written exactly as the closed forms above, in the
# same order, so results are bit-for-bit those of the straightforward version.


class Instance:
    __slots__ = (
        "st", "lat", "lim", "loop", "req", "on_done", "on_drained", "on_preempt",
        "waiting", "running", "fin", "step", "ctx", "cap_tokens", "block_tokens", "mode", "gen",
        "t0", "k", "B", "A", "D", "batch", "in_handler", "truncated",
        "seg", "slow", "slow_prefill",
        # hot-path copies (see the speed notes)
        "heap", "seq", "inp", "out", "gen_tok", "epoch", "admit_step", "first", "prefill",
        "max_seqs", "max_batched", "max_len", "p_base", "p_tok", "d_base", "d_seq", "d_ctx", "mixed",
        "seg_inst", "seg_t0", "seg_t1", "iid", "prefill_done", "decode_done", "note_idle",
    )

    def __init__(self, st: InstanceState, lat: Latency, lim: EngineLimits, loop: EventLoop, req: RequestTable,
                 on_done: Callable[[Instance, int, int], None],
                 segs: tuple[array, array, array], on_drained: Callable[[Instance], None],
                 on_preempt: Callable[[Instance, int], None],
                 note_idle: Callable[[InstanceState], None] | None = None) -> None:
        self.st = st
        self.lat = lat
        self.lim = lim
        self.loop = loop
        self.req = req
        self.on_done = on_done  # (instance, row, status) after a request ends
        self.seg_inst, self.seg_t0, self.seg_t1 = segs  # the backend's busy-interval columns
        self.on_drained = on_drained  # stopping instance became empty
        self.on_preempt = on_preempt
        self.note_idle = note_idle  # the state's idle index (``InstanceTable.note_idle``), if tracked
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}  # admission order (preemption victim = last)
        self.fin: list[tuple[int, int, int]] = []  # (finish_step, row, epoch)
        self.step = 0
        self.ctx = 0
        self.block_tokens = lim.kv_block_tokens
        self.cap_tokens = 0
        self.mode = IDLE
        self.gen = 0
        self.t0 = self.A = self.D = 0.0
        self.k = self.B = 0
        self.batch: list[int] = []
        self.in_handler = False
        self.truncated = False
        self.seg = -1  # index of this instance's last busy segment
        self.slow = 1.0  # decode slowdown from compute sharing; the backend updates it when instances share GPUs
        self.slow_prefill = 1.0  # prefill (and mixed-step) slowdown, likewise (warmserve.control.mps)
        self.heap = loop.heap
        self.seq = loop.seq
        self.inp, self.out, self.gen_tok, self.epoch = req.inp, req.out, req.gen, req.epoch
        self.admit_step, self.first, self.prefill = req.admit_step, req.first, req.prefill
        self.max_seqs, self.max_batched, self.max_len = lim.max_num_seqs, lim.max_num_batched_tokens, lim.max_model_len
        self.p_base, self.p_tok = lat.prefill_base, lat.prefill_per_token
        self.d_base, self.d_seq, self.d_ctx = lat.decode_base, lat.decode_per_seq, lat.decode_per_ctx_token
        self.mixed = lim.scheduler == "mixed"
        self.iid = st.instance_id
        self.prefill_done = self._prefill_done  # bound once, not per event
        self.decode_done = self._decode_done

    # ---- capacity ------------------------------------------------------------
    def set_kv_blocks(self, blocks: int) -> None:
        self.cap_tokens = blocks * self.block_tokens
        self.interrupt()

    def used_blocks(self) -> int:
        if not self.running and self.mode != PREFILL:
            return 0
        n = len(self.running) + (len(self.batch) if self.mode == PREFILL else 0)
        return -(-(self.ctx + n * self.block_tokens) // self.block_tokens)

    # ---- work in ---------------------------------------------------------------
    def enqueue(self, row: int) -> None:
        self.waiting.append(row)
        if self.in_handler:
            return
        ph = self.st.phase
        if ph is not _READY and ph is not _STOPPING:
            return
        mode = self.mode
        if mode == IDLE:
            self.schedule()
        elif mode == DECODE:
            self.interrupt()

    def interrupt(self) -> None:
        """New work or a smaller KV cache: end the current decode run after the step in progress."""
        if self.mode != DECODE or self.truncated or self.in_handler:
            return
        e = self.loop.t - self.t0
        A, D = self.A, self.D
        if D > 0:
            b = A - D / 2
            j = int((-b + math.sqrt(b * b + 2 * D * e)) / D)
        else:
            j = int(e / A)
        while j > 0 and j * A + D * j * (j - 1) / 2 > e:  # float guards
            j -= 1
        while (j + 1) * A + D * (j + 1) * j / 2 <= e:
            j += 1
        kn = j + 1
        if kn < self.k:
            self.k = kn
            self.gen += 1
            self.truncated = True
            t_end = self.t0 + kn * A + D * kn * (kn - 1) / 2
            self.loop.at(max(t_end, self.loop.t), self.decode_done, self.gen)

    def start_serving(self) -> None:
        if self.waiting and self.mode == IDLE:
            self.schedule()

    # ---- the scheduler ---------------------------------------------------------
    def schedule(self) -> None:
        """Start the next iteration (prefill if anyone can be admitted, else a decode run).

        Requests that fail admission are ended after the decision, with the
        handler flag up, so that callbacks dispatching new work to this very
        instance only enqueue it; the loop then decides again if still idle.
        """
        if self.mode == IDLE and not self.waiting and not self.running:  # nothing to do (common)
            self.st.kv_blocks_used = 0
            if self.st.phase is _STOPPING:
                self.on_drained(self)
            return
        while self.mode == IDLE:
            failed = self._decide()
            if not failed:
                break
            self.in_handler = True
            for row in failed:
                self._end(row, FAILED)
            self.in_handler = False
        n = len(self.running) + (len(self.batch) if self.mode == PREFILL else 0)
        bt = self.block_tokens
        self.st.kv_blocks_used = -(-(self.ctx + n * bt) // bt) if n else 0
        if self.mode == IDLE and self.st.phase is _STOPPING and self.empty():
            self.on_drained(self)

    def _decide(self) -> list[int] | None:
        """One scheduling decision; returns the requests that failed admission (None if none)."""
        bt = self.block_tokens
        running = self.running
        waiting = self.waiting
        failed: list[int] | None = None
        # -- admit a prefill batch; leave room for one more step of everyone (no admit-then-preempt)
        if waiting:
            inp = self.inp
            gen = self.gen_tok
            max_seqs = self.max_seqs
            max_batched = self.max_batched
            cap = self.cap_tokens
            nrun = len(running)
            batch: list[int] = []
            tokens = 0
            ctx_run = self.ctx
            mixed = self.mixed and nrun > 0
            if mixed:
                max_batched -= nrun  # one decode token per running sequence comes out of the budget
            while waiting and nrun + len(batch) < max_seqs:
                row = waiting[0]
                need = inp[row] + gen[row]
                if (need + bt + 1 > cap and not running and not batch) \
                        or need > self.max_batched or inp[row] + self.out[row] > self.max_len:
                    waiting.popleft()
                    if failed is None:
                        failed = [row]
                    else:
                        failed.append(row)
                    continue
                if batch and tokens + need > max_batched:
                    break
                n = nrun + len(batch) + 1
                if self.ctx + need + n * (bt + 1) > cap:
                    break
                waiting.popleft()
                batch.append(row)
                tokens += need
                self.ctx += need
            if batch:
                self.mode = PREFILL
                self.batch = batch
                t0 = self.t0 = self.loop.t
                self.gen += 1
                if mixed:  # the running sequences decode in this step too
                    self.B = nrun
                    p0 = self.p_base if self.p_base > self.d_base else self.d_base
                    dur = (p0 + self.d_seq * nrun + self.d_ctx * ctx_run + self.p_tok * tokens) * self.slow_prefill
                else:
                    self.B = 0
                    dur = (self.p_base + self.p_tok * tokens) * self.slow_prefill
                _push(self.heap, (t0 + dur, next(self.seq), self.prefill_done, self.gen))
                return failed
        if not running:
            return failed
        # -- a decode run
        B = len(running)
        k_kv = (self.cap_tokens - self.ctx - B * bt) // B
        while k_kv < 1:
            self._preempt_last()
            B = len(running)
            if B == 0:
                more = self._decide()  # alone now: the victim is re-admitted or fails
                if more:
                    failed = more if failed is None else failed + more
                return failed
            k_kv = (self.cap_tokens - self.ctx - B * bt) // B
        fin = self.fin
        epoch = self.epoch
        while fin:
            top = fin[0]
            if top[2] == epoch[top[1]] and top[1] in running:
                break
            _pop(fin)
        k = fin[0][0] - self.step
        if k_kv < k:
            k = k_kv
        slow = self.slow
        d_ctx = self.d_ctx
        A = self.A = slow * (self.d_base + self.d_seq * B + d_ctx * self.ctx)
        D = self.D = slow * d_ctx * B
        self.B = B
        self.k = k
        self.mode = DECODE
        self.truncated = False
        t0 = self.t0 = self.loop.t
        self.gen += 1
        _push(self.heap, (t0 + k * A + D * k * (k - 1) / 2, next(self.seq), self.decode_done, self.gen))
        return failed

    def _preempt_last(self) -> None:
        row = next(reversed(self.running))
        del self.running[row]
        req = self.req
        generated = req.gen[row] + (self.step - req.admit_step[row])
        req.gen[row] = generated
        req.epoch[row] += 1
        self.ctx -= req.inp[row] + generated
        self.waiting.appendleft(row)
        self.on_preempt(self, row)

    def _busy(self, t0: float, t1: float) -> None:
        """Record a computing interval [t0, t1], merged with the previous one when contiguous."""
        i = self.seg
        seg_t1 = self.seg_t1
        if i >= 0 and seg_t1[i] == t0:
            seg_t1[i] = t1
        else:
            self.seg = len(self.seg_t0)
            self.seg_inst.append(self.iid)
            self.seg_t0.append(t0)
            seg_t1.append(t1)

    # ---- iteration ends --------------------------------------------------------
    def _prefill_done(self, gen: int) -> None:
        if gen != self.gen:
            return
        t = self.loop.t
        t0 = self.t0
        self._busy(t0, t)
        self.mode = IDLE
        dur = t - t0
        gen_tok = self.gen_tok
        first = self.first
        out = self.out
        ended: list[int] = []
        self.in_handler = True
        if self.B:  # a mixed step: every running sequence decoded one token as well
            self._advance(1, ended)
        step = self.step
        for row in self.batch:
            g = gen_tok[row] + 1
            gen_tok[row] = g
            self.ctx += 1
            if first[row] != first[row]:  # NaN: first token of this request
                first[row] = t
                self.prefill[row] = dur
            rem = out[row] - g
            if rem <= 0:
                self.ctx -= self.inp[row] + g
                ended.append(row)
            else:
                self.running[row] = None
                self.admit_step[row] = step
                _push(self.fin, (step + rem, row, self.epoch[row]))
        self.batch = []
        for row in ended:
            self._end(row, OK)
        self.in_handler = False
        self.schedule()

    def _decode_done(self, gen: int) -> None:
        if gen != self.gen:
            return
        self._busy(self.t0, self.loop.t)
        self.mode = IDLE
        self.in_handler = True
        self._advance(self.k, None)
        self.in_handler = False
        self.schedule()

    def _advance(self, k: int, ended: list[int] | None) -> None:
        """The running sequences decoded ``k`` tokens each: move the step and context on and take out
        the sequences that are done -- ended at once, or collected into ``ended`` for the caller."""
        step = self.step = self.step + k
        self.ctx += self.B * k
        fin = self.fin
        running = self.running
        epoch = self.epoch
        while fin and fin[0][0] <= step:
            _, row, ep = _pop(fin)
            if ep != epoch[row] or row not in running:
                continue
            del running[row]
            self.ctx -= self.inp[row] + self.out[row]
            if ended is None:
                self._end(row, OK)
            else:
                ended.append(row)

    def _end(self, row: int, status: int) -> None:
        req = self.req
        req.status[row] = status
        req.finish[row] = self.loop.t
        st = self.st
        st.inflight -= 1
        if st.inflight == 0 and self.note_idle is not None:
            self.note_idle(st)  # keep the state's idle index exact before anyone routes again
        self.on_done(self, row, status)

    # ---- stopping --------------------------------------------------------------
    def empty(self) -> bool:
        return not self.waiting and not self.running and self.mode == IDLE

    def abandon(self) -> list[int]:
        """The replay ended: return every request still inside (they become timeouts)."""
        rows = list(self.waiting) + list(self.running) + (self.batch if self.mode == PREFILL else [])
        self.waiting.clear()
        self.running.clear()
        self.batch = []
        self.gen += 1
        self.mode = IDLE
        return rows
