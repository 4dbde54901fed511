"""Arrivals and the end of a replay on the twin.

``Arrivals`` feeds the workload's requests to the controller one heap entry
at a time (the next arrival is pushed when one is delivered), counts ended
requests and halts the event loop when every request has ended.
``close_requests`` does the end-of-run accounting: whatever is still waiting
at the front door, inside an engine or not yet arrived becomes a timeout.
``SimBackend.replay`` runs the two around the controller's start and stop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from warmserve.control.seam import EventSink, Request, RequestStatus
from warmserve.sim.events import EventLoop
from warmserve.sim.requests import FAILED, OK, PENDING, TIMEOUT, RequestTable

if TYPE_CHECKING:
    from warmserve.sim.instance import Instance

_NEW = object.__new__
_SET_REQUEST = tuple(Request.__dict__[f].__set__  # the slots' own setters (see _request)
                     for f in ("request_id", "arrival_s", "model", "input_tokens", "output_tokens"))
_STATUS = {OK: RequestStatus.OK, FAILED: RequestStatus.FAILED, TIMEOUT: RequestStatus.TIMEOUT}


def _request(request_id: int, arrival_s: float, model: str, input_tokens: int, output_tokens: int) -> Request:
    """A ``Request`` equal to ``Request(...)``, built without the frozen dataclass ``__init__``.

    One is made per arrival (10^7 at internet scale) and the generated frozen
    ``__init__`` (one ``object.__setattr__`` call per field) costs about twice
    as much as setting the slots directly.
    """
    r = _NEW(Request)
    s0, s1, s2, s3, s4 = _SET_REQUEST
    s0(r, request_id)
    s1(r, arrival_s)
    s2(r, model)
    s3(r, input_tokens)
    s4(r, output_tokens)
    return r


class Arrivals:
    """The request side of one replay: arrival events in, ends counted, the controller told of both."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.req: RequestTable | None = None
        self.sink: EventSink | None = None
        self._ended = 0
        self._delivered = 0
        self._n = 0
        self._arrive_cb = self._arrive  # bound once: one arrival event per request

    def begin(self, req: RequestTable, sink: EventSink) -> None:
        """Take the replay's request table and the controller (before its ``start``)."""
        self.req = req
        self.sink = sink

    def run(self, until_s: float, progress: Callable[[float], None] | None, progress_every_s: float) -> int:
        """Schedule the first arrival and run the loop; returns the number of requests."""
        req = self.req
        assert req is not None, "begin() first"
        n = self._n = req.n
        if n:
            self.loop.at(req.arrival[0], self._arrive_cb, 0)
        # the run ends when every request has ended (``req_done`` halts the loop); with no requests
        # at all, after the first event (as a stop predicate that is always true)
        self.loop.run(until_s, None if n else (lambda: True), progress, progress_every_s)
        return n

    def _arrive(self, row: int) -> None:
        """Arrival of workload row ``row``; schedules the next arrival (one heap entry at a time)."""
        req = self.req
        self._delivered += 1
        nxt = row + 1
        if nxt < req.n:  # type: ignore[union-attr]
            heapq.heappush(self.loop.heap, (req.arrival[nxt], next(self.loop.seq), self._arrive_cb, nxt))  # type: ignore[union-attr]
        self.sink.on_arrival(_request(req.ids[row], req.arrival[row], req.model_names[req.model[row]],  # type: ignore[union-attr]
                                      req.inp[row], req.out[row]))  # type: ignore[union-attr]

    def req_done(self, inst: Instance, row: int, status: int) -> None:
        """An engine ended request ``row`` (the instances' ``on_done``)."""
        self._ended += 1
        if self._ended >= self._n and self._delivered >= self._n:
            self.loop.halt()  # every request ended: the replay is over after this event
        if self.sink is not None:
            st = inst.st
            self.sink.on_finish(self.req.ids[row], st.model, st.instance_id, _STATUS[status])  # type: ignore[union-attr]


def close_requests(req: RequestTable, pending: Iterable[Request], insts: Iterable[Instance]) -> int:
    """The replay ended: mark every request that did not end as a timeout; returns how many."""
    unfinished = 0
    for r in pending:  # waiting at the front door
        row = req.row(r.request_id)
        req.status[row] = TIMEOUT
        unfinished += 1
    for inst in insts:
        for row in inst.abandon():
            req.status[row] = TIMEOUT
            unfinished += 1
    status = np.frombuffer(req.status, dtype=np.int8)
    undelivered = status == PENDING  # arrivals after until_s (none when until_s >= the last arrival)
    if undelivered.any():
        unfinished += int(undelivered.sum())
        status[undelivered] = TIMEOUT
    return unfinished
