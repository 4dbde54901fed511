"""Weight loads as flows over shared links, with max-min fair bandwidth sharing.

A load of one TP shard onto GPU ``g`` of node ``n`` is a flow over the links
it streams through (pipelined, so all at once):

    NVMe[n] (skipped when the checkpoint is in the node's DRAM cache)
      -> host DRAM[n] -> PCIe switch uplink[n, g // gpus_per_switch] -> PCIe[g]

A sleeping replica's prewarm stops at host DRAM (no switch or PCIe link) and
its wake starts there (no NVMe). A load through vLLM's own loader (every system
but the ServerlessLLM-style one, whose loader reaches the links' rate) also
crosses a private ``loader`` link per shard at ``vllm_loader_GBps``: the rate
its safetensors path reaches when storage is faster than it.

Each link has a capacity in bytes/s; the GPU's PCIe link loses
``h2d_slowdown_under_d2h`` of its H2D capacity while a D2H flow uses it.
Rates are the max-min fair allocation (progressive filling), recomputed for
a node whenever a flow on it starts, ends or is cancelled; links never span
nodes, so a change costs O(flows on that node). Completion is an event; a
rate change bumps the flow's generation so the old completion is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.hardware import HardwareProfile
from warmserve.sim.events import EventLoop

Link = tuple[str, int, int]  # (kind, node, index)


class Flow:
    __slots__ = ("seq", "node", "links", "remaining", "rate", "t_last", "gen", "on_done", "total", "d2h")

    def __init__(self, node: int, links: tuple[Link, ...], nbytes: float, on_done: Callable[[Flow], None],
                 d2h: bool = False) -> None:
        self.seq = 0  # set by LinkNetwork.start; orders flows deterministically
        self.node = node
        self.links = links
        self.total = nbytes
        self.remaining = float(nbytes)
        self.rate = 0.0
        self.t_last = 0.0
        self.gen = 0
        self.on_done = on_done
        self.d2h = d2h

    @property
    def transferred(self) -> float:
        return self.total - self.remaining


class LinkNetwork:
    """All load flows of the cluster; fair sharing per node."""

    def __init__(self, loop: EventLoop, hw: HardwareProfile, nodes: int) -> None:
        self.loop = loop
        self.hw = hw
        self.flows: list[dict[int, Flow]] = [{} for _ in range(nodes)]  # insertion-ordered
        self.bytes_moved = 0.0
        self._seq = 0

    def path(self, gpu: int, node: int, local: int, from_nvme: bool, *, to_gpu: bool = True,
             vllm_loader: bool = False) -> tuple[Link, ...]:
        """Links of one shard's load: from NVMe or host DRAM, to the GPU or (a sleeping replica) to host DRAM."""
        links: list[Link] = [("host", node, 0)]
        if from_nvme:
            links.insert(0, ("nvme", node, 0))
        if to_gpu:
            links += [("switch", node, local // self.hw.gpus_per_pcie_switch), ("pcie", node, gpu)]
        if vllm_loader and from_nvme and self.hw.vllm_loader_Bps is not None:
            links.append(("loader", node, gpu))
        return tuple(links)

    def _capacity(self, link: Link, d2h_gpus: set[int]) -> float:
        kind = link[0]
        hw = self.hw
        if kind == "pcie":
            cap = hw.pcie_h2d_Bps
            if link[2] in d2h_gpus:
                cap *= 1.0 - hw.h2d_slowdown_under_d2h
            return cap
        if kind == "switch":
            return hw.switch_uplink_Bps
        if kind == "host":
            return hw.host_mem_Bps
        if kind == "loader":
            assert hw.vllm_loader_Bps is not None  # path() adds the link only then
            return hw.vllm_loader_Bps
        return hw.nvme_Bps

    def start(self, flow: Flow) -> None:
        flow.t_last = self.loop.t
        self._seq += 1
        flow.seq = self._seq
        self.flows[flow.node][flow.seq] = flow
        self._reshare(flow.node)

    def cancel(self, flow: Flow) -> float:
        """Stop a flow; returns bytes it had transferred."""
        fl = self.flows[flow.node]
        if flow.seq not in fl:
            return flow.transferred
        self._advance(flow)
        del fl[flow.seq]
        flow.gen += 1
        self._reshare(flow.node)
        self.bytes_moved += flow.transferred
        return flow.transferred

    def _advance(self, f: Flow) -> None:
        now = self.loop.t
        f.remaining = max(0.0, f.remaining - f.rate * (now - f.t_last))
        f.t_last = now

    def _reshare(self, node: int) -> None:
        flows = list(self.flows[node].values())
        for f in flows:
            self._advance(f)
        d2h_gpus = {f.links[-1][2] for f in flows if f.d2h}
        # progressive filling (max-min fairness)
        cap: dict[Link, float] = {}
        users: dict[Link, list[Flow]] = {}
        for f in flows:
            for lk in f.links:
                if lk not in cap:
                    cap[lk] = self._capacity(lk, d2h_gpus)
                    users[lk] = []
                users[lk].append(f)
        unfixed = set(flows)
        rate: dict[Flow, float] = {}
        while unfixed:
            best_lk, best_share = None, float("inf")
            for lk, us in users.items():
                n = sum(1 for f in us if f in unfixed)
                if n:
                    share = cap[lk] / n
                    if share < best_share:
                        best_lk, best_share = lk, share
            assert best_lk is not None
            for f in users[best_lk]:
                if f in unfixed:
                    rate[f] = best_share
                    unfixed.discard(f)
                    for lk in f.links:
                        cap[lk] = max(0.0, cap[lk] - best_share)
        for f in flows:
            r = max(rate[f], 1.0)  # float guard: a bottleneck share is never 0 in exact arithmetic
            if r != f.rate or f.gen == 0:
                f.rate = r
                f.gen += 1
                self.loop.at(self.loop.t + f.remaining / r, self._done, (f, f.gen))

    def _done(self, arg: tuple[Flow, int]) -> None:
        f, gen = arg
        if gen != f.gen:
            return
        f.remaining = 0.0
        f.t_last = self.loop.t
        del self.flows[f.node][f.seq]
        f.gen += 1
        self.bytes_moved += f.total
        self._reshare(f.node)
        f.on_done(f)
