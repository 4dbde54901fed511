"""The one controller: glue between a backend's events and a system's decisions.

It owns no physical state (the backend's ``ClusterState`` is the truth) and no
decision logic (the ``SystemPolicy`` decides). It keeps the front-door queue
per model and the load statistics, asks the policy, and applies the returned
commands to the backend. The same object runs on the twin and on the testbed.

Routing follows the published front end (docs/reference.md §1.3): a request
goes to the least-loaded instance under capacity; otherwise, if no instance
of its model is starting, the policy may launch one and the request is
assigned to it; otherwise it waits. Unlike the published front end, which
re-polls every second, waiting requests are retried as soon as capacity can
have changed (an instance became ready, a request finished, a tick ran), so no
artificial 0-1 s delay is added.

Events raised while a tick's commands are being applied are not routed at
once. A backend may report an event synchronously from inside a verb (the
twin stops an idle instance at once and calls ``on_instance_stopped``
before ``stop_instance`` returns); routing then could launch an instance on
GPUs the rest of the same command list was planned around (a ``Prewarm``
into memory the launch just took), so a policy's plan would no longer match
the state it was made for. The controller therefore only records which
models have waiting requests to route and routes them once ``apply``
returns, when the whole plan has taken effect. Load bookkeeping
(``LoadTracker``) still happens at the event's own time. The testbed reports
its events from separate tasks, so there the deferral never triggers; the
controller is the same object on both backends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from warmserve.control.load import LoadTracker
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import (
    Backend,
    Command,
    Dispatch,
    Evict,
    GpuSet,
    LendKv,
    Prewarm,
    Request,
    RequestStatus,
    StartInstance,
    StopInstance,
)


class Controller:
    """Implements ``EventSink``; drives one ``SystemPolicy`` against one ``Backend``."""

    def __init__(self, backend: Backend, policy: SystemPolicy, models: list[str]) -> None:
        self.backend = backend
        self.policy = policy
        self.ctx = PolicyContext(
            state=backend.state,
            load=LoadTracker(models, t0=backend.clock.now()),
            pending={m: deque() for m in models},
        )
        self._stopped = False
        self._applying = 0  # depth of apply() calls in progress (see the module docstring)
        self._deferred: dict[str, None] = {}  # models to route once apply returns (insertion-ordered set)
        self._now = backend.clock.now  # bound once (the backend's clock object never changes)
        self.observers: list[Callable[[str, dict], None]] = []  # e.g. timeline recorders

    # ---- lifecycle -------------------------------------------------------
    def start(self, ticks: bool = True) -> None:
        """Issue the policy's initial commands and (unless ``ticks`` is False) begin periodic ticks."""
        self.ctx.now = self.backend.clock.now()
        self.apply(self.policy.setup(self.ctx))
        if ticks:
            self.start_ticks()

    def start_ticks(self) -> None:
        """Begin periodic ticks. A real backend whose setup takes wall time (engines starting before
        the replay) calls this once that setup is deployed, so no tick sees the setup phase -- on the
        twin the setup is instantaneous and ticks start at t = 0."""
        self.backend.clock.call_later(self.policy.tick_interval_s, self._tick)

    def stop(self) -> None:
        """Stop ticking (the replay is over)."""
        self._stopped = True

    def _tick(self) -> None:
        if self._stopped:
            return
        self.ctx.now = self.backend.clock.now()
        self.apply(self.policy.on_tick(self.ctx))
        for model in self.ctx.pending:
            if self.ctx.pending[model]:
                self._drain(model)
        self.backend.clock.call_later(self.policy.tick_interval_s, self._tick)

    # ---- EventSink -------------------------------------------------------
    # Arrivals and finishes run once per request each (~10^7 times at internet scale), so they
    # read the clock through a bound method cached at construction and skip attribute chains.
    def on_arrival(self, request: Request) -> None:
        now = self._now()
        ctx = self.ctx
        ctx.now = now
        model = request.model
        ctx.load.change(model, 1, now)
        ctx.pending[model].append(request)
        if self._applying:
            self._deferred[model] = None
        else:
            self._drain(model)

    def on_finish(self, request_id: int, model: str, instance_id: int | None, status: RequestStatus) -> None:
        now = self._now()
        ctx = self.ctx
        ctx.now = now
        ctx.load.change(model, -1, now)
        if ctx.pending[model]:  # nothing waits: nothing to route
            self._route(model)

    def on_instance_ready(self, instance_id: int) -> None:
        self.ctx.now = self.backend.clock.now()
        self._route(self.backend.state.instances[instance_id].model)

    def on_instance_stopped(self, instance_id: int) -> None:
        self.ctx.now = self.backend.clock.now()
        # freed GPUs may let a waiting model launch
        for model, queue in self.ctx.pending.items():
            if queue:
                self._route(model)

    def on_prewarm_done(self, model: str, gpus: GpuSet) -> None:
        self.ctx.now = self.backend.clock.now()

    # ---- routing ---------------------------------------------------------
    def _route(self, model: str) -> None:
        """Route ``model``'s waiting requests now, or once the commands being applied have all taken effect."""
        if self._applying:
            self._deferred[model] = None
        else:
            self._drain(model)

    def _drain(self, model: str) -> None:
        ctx = self.ctx
        queue = ctx.pending[model]
        pick = self.policy.pick_instance
        dispatch = self.backend.dispatch
        while queue:
            req = queue[0]
            iid = pick(req, ctx)
            if iid is None:
                if ctx.starting(model) > 0:
                    return  # an instance is on its way; wait for it
                launch = self.policy.launch_for(model, ctx)
                if launch is None:
                    return
                iid = self._start(launch)
            queue.popleft()
            dispatch(req.request_id, iid)

    def pending_requests(self) -> list[Request]:
        """Requests still waiting at the front door (the runner marks them at the end)."""
        return [r for q in self.ctx.pending.values() for r in q]

    # ---- applying commands ----------------------------------------------
    def _start(self, cmd: StartInstance) -> int:
        iid = self.backend.start_instance(cmd.model, cmd.gpus, cmd.mem_fraction, cmd.compute_share)
        for obs in self.observers:
            obs("start", {"model": cmd.model, "gpus": cmd.gpus, "instance_id": iid})
        return iid

    def apply(self, commands: list[Command]) -> None:
        """Apply a policy's commands in order; routing asked for meanwhile runs after the last one."""
        self._applying += 1
        try:
            self._apply(commands)
        finally:
            self._applying -= 1
        if not self._applying and self._deferred:
            deferred, self._deferred = self._deferred, {}
            for model in deferred:  # outside apply now: nothing routed here is deferred again
                if self.ctx.pending[model]:
                    self._drain(model)

    def _apply(self, commands: list[Command]) -> None:
        b = self.backend
        for cmd in commands:
            match cmd:
                case StartInstance():
                    self._start(cmd)
                case StopInstance(instance_id=iid, keep_weights=keep):
                    b.stop_instance(iid, keep)
                case Prewarm(model=m, gpus=g):
                    b.prewarm(m, g)
                case Evict(model=m, gpus=g):
                    b.evict(m, g)
                case Dispatch(request_id=rid, instance_id=iid):
                    b.dispatch(rid, iid)
                case LendKv(instance_id=iid, blocks=n):
                    b.lend_kv(iid, n)
                case _:
                    raise TypeError(f"unknown command {cmd!r}")
