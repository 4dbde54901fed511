"""The front door: one OpenAI-compatible endpoint that routes each request by model.

``POST /v1/completions`` (streaming or not) with the workload's request id in
the ``X-Request-Id`` header. The handler hands the request to the controller
(``submit``), waits for the routing decision (the controller calls the
backend's ``dispatch``, which tells the front door -- its ``dispatch_listener``
-- at once), waits for that instance to be ready if it is still starting, then
relays the engine's stream to the client byte for byte. Requests are the front
door's: it keeps the routing futures and tells the controller of each finish.

Faults: if the chosen instance fails before any token reached the client,
the request is handed back to the controller (counted as a finish with
``failed`` and a fresh arrival, so load statistics stay balanced) and retried
on whatever instance the policy picks, up to ``max_retries`` times; once
tokens have been relayed it cannot be replayed transparently and is reported
``failed``. A request not routed within ``request_timeout_s`` is ``timeout``.
Every request leaves a ``DoorRecord`` -- none goes missing.

It binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass
from typing import cast

import aiohttp
from aiohttp import web

from warmserve.control.controller import Controller
from warmserve.control.seam import Request, RequestStatus
from warmserve.testbed.backend import TestbedBackend

REAP_WAIT_S = 1.0  # how long a lost connection's engine process gets to be reaped before it counts as alive


@dataclass(slots=True)
class DoorRecord:
    """What the front door saw of one request (monotonic times; NaN-free ints where possible)."""

    request_id: int
    model: str
    input_tokens: int
    output_tokens: int
    arrival_mono: float
    dispatch_mono: float | None = None
    ready_mono: float | None = None
    route_s: float | None = None  # time inside the routing decision (controller + policy)
    instance_id: int = -1
    gpus: tuple[int, ...] = ()
    start_kind: str = ""
    mechanism: str = ""
    attempts: int = 0
    status: str = ""
    error: str = ""


class FrontDoor:
    """The routing HTTP server; one per run, on the backend's loop."""

    def __init__(
        self,
        backend: TestbedBackend,
        controller: Controller,
        host: str,
        port: int,
        request_timeout_s: float,
        max_retries: int,
    ) -> None:
        self.backend = backend
        self.controller = controller
        backend.dispatch_listener = self  # dispatch resolves the waiting request synchronously
        self.host = host
        self.port = port
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.records: dict[int, DoorRecord] = {}
        self._auto_ids = itertools.count(10**9)
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._waiting: dict[int, asyncio.Future[int]] = {}  # request -> its routing decision (an instance id)
        self.dispatched_as: dict[int, tuple[str, str]] = {}  # request -> (start kind, mechanism) at dispatch

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = cast("asyncio.Server | None", site._server)  # noqa: SLF001 - a TCPSite serves an asyncio.Server
        sockets = server.sockets if server else []  # the bound port
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving; then every request still waiting for a routing decision is cancelled (it
        becomes a ``timeout``), right before the runner closes the backend."""
        self._closing = True
        try:
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.cancel()

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    # ---- requests and the controller -----------------------------------
    def submit(self, request: Request) -> asyncio.Future[int]:
        """Register an arriving request and hand it to the controller; resolves to an instance id."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[request.request_id] = fut
        self.controller.on_arrival(request)
        return fut

    def on_dispatch(self, request_id: int, instance_id: int, start_kind: str, mechanism: str) -> None:
        """The backend's ``dispatch`` (inside the controller's decision): record it, wake the request."""
        self.dispatched_as[request_id] = (start_kind, mechanism)
        fut = self._waiting.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(instance_id)

    def withdraw(self, request: Request) -> None:
        """A request gave up before being dispatched (timeout or shutdown)."""
        self._waiting.pop(request.request_id, None)

    def finish(self, request: Request, instance_id: int | None, status: RequestStatus) -> None:
        """A request left an instance (any status); keeps in-flight counts and tells the controller."""
        if instance_id is not None:
            inst = self.backend.state.instances[instance_id]
            inst.inflight = max(0, inst.inflight - 1)
        self.controller.on_finish(request.request_id, request.model, instance_id, status)

    async def report_broken(self, instance_id: int) -> None:
        """A connection to this instance was lost: if its engine is dead (given ``REAP_WAIT_S`` to be
        reaped), the backend fails the instance now rather than at its next watch poll, so a retry
        cannot be routed back to it."""
        deadline = time.monotonic() + REAP_WAIT_S
        while self.backend.fleet.engine_alive(instance_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.backend.fail_if_exited(instance_id)

    # ---- the routing handler ------------------------------------------
    async def _handle(self, http: web.Request) -> web.StreamResponse:
        body = await http.json()
        model = str(body.get("model", ""))
        if model not in self.backend.state.models:
            return web.json_response({"error": f"unknown model {model!r}"}, status=404)
        rid = int(http.headers.get("X-Request-Id", next(self._auto_ids)))
        prompt = body.get("prompt", [])
        req = Request(request_id=rid, arrival_s=self.backend.clock.now(), model=model,
                      input_tokens=len(prompt) if isinstance(prompt, list) else 0,
                      output_tokens=int(body.get("max_tokens", 16)))
        rec = DoorRecord(rid, model, req.input_tokens, req.output_tokens, arrival_mono=time.monotonic())
        self.records[rid] = rec
        deadline = rec.arrival_mono + self.request_timeout_s
        resp: web.StreamResponse | None = None
        while True:
            rec.attempts += 1
            t0 = time.perf_counter()
            fut = self.submit(req)
            if fut.done():
                rec.route_s = time.perf_counter() - t0
            try:
                iid = await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
            except (TimeoutError, asyncio.CancelledError):
                self._give_up(req, rec, RequestStatus.TIMEOUT, "not routed in time")
                return self._error_response(resp, 504, rec.error)
            rec.dispatch_mono = time.monotonic()
            inst = self.backend.state.instances[iid]
            rec.instance_id, rec.gpus = iid, inst.gpus
            rec.start_kind, rec.mechanism = self.dispatched_as.pop(rid)
            error = await self.backend.fleet.wait_ready(iid)
            rec.ready_mono = time.monotonic()
            if error is None:
                outcome, resp = await self._relay(http, body, rid, iid, resp)
                if outcome == "ok":
                    assert resp is not None  # "ok" comes with the client response
                    rec.status = RequestStatus.OK.value
                    self.finish(req, iid, RequestStatus.OK)
                    return resp
                error = outcome
            # the instance failed under this request
            await self.report_broken(iid)
            self.finish(req, iid, RequestStatus.FAILED)
            if resp is not None or rec.attempts > self.max_retries or self._closing:
                rec.status, rec.error = RequestStatus.FAILED.value, error
                return self._error_response(resp, 502, error)
            rec.error = error  # retry: hand it back to the controller as a fresh arrival

    def _give_up(self, req: Request, rec: DoorRecord, status: RequestStatus, why: str) -> None:
        self.withdraw(req)
        queue = self.controller.ctx.pending.get(req.model)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(req)
        self.finish(req, None, status)
        rec.status, rec.error = status.value, why

    def _error_response(self, resp: web.StreamResponse | None, code: int, why: str) -> web.StreamResponse:
        if resp is None:
            return web.json_response({"error": why}, status=code)
        # headers already went out: signal the failure in-stream (the client marks it failed)
        return resp

    async def _relay(self, http: web.Request, body: dict, rid: int, iid: int,
                     resp: web.StreamResponse | None) -> tuple[str, web.StreamResponse | None]:
        """Forward to the engine; returns ("ok" | error text, the client response if started)."""
        url = f"{self.backend.fleet.engine_url(iid)}/v1/completions"
        try:
            async with self.backend.session.post(url, json=body, headers={"X-Request-Id": str(rid)}) as r:
                if r.status != 200:
                    return f"engine answered HTTP {r.status}: {(await r.text())[:200]}", resp
                if not body.get("stream"):
                    data = await r.read()
                    return "ok", web.Response(body=data, content_type="application/json")
                async for chunk in r.content.iter_any():
                    if resp is None:
                        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                        await resp.prepare(http)
                    await resp.write(chunk)
                if resp is None:
                    return "engine closed the stream without data", resp
                await resp.write_eof()
                return "ok", resp
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            if resp is not None:
                err = json.dumps({"error": f"engine failed mid-stream: {type(exc).__name__}"})
                with contextlib.suppress(Exception):
                    await resp.write(f"data: {err}\n\n".encode())
                    await resp.write_eof()
            return f"engine connection failed: {type(exc).__name__}: {exc}", resp
