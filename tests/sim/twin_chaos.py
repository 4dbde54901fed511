"""A seeded random policy that exercises every backend verb (for the invariant tests of both backends).

It launches on demand like an autoscaler, and on each tick tries random
starts, stops (keeping weights or not), prewarms, evictions and KV lending.
Verbs are called directly so that a refused one (``CapacityError``) can be
checked to leave the books untouched; the cluster book is cross-checked
against the state after each (``ClusterBook.check``). It needs only what both
the twin and the testbed have: the seam's verbs, ``state`` and ``book``.
"""

from __future__ import annotations

import random

from warmserve.cluster.ledger import HostBook
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import CapacityError, Command, InstancePhase, StartInstance


class ChaosPolicy(SystemPolicy):
    name = "chaos"
    instance_capacity = 32  # a test policy: the published BATCH_SIZE

    def __init__(self, backend, seed: int, tick_interval_s: float = 0.7, setup_starts: int = 1) -> None:
        self.b = backend
        self.rng = random.Random(seed)
        self.tick_interval_s = tick_interval_s
        self.setup_starts = setup_starts
        self.refused = 0
        self.applied = 0

    def _sets(self, tp: int) -> list[tuple[int, ...]]:
        st = self.b.state
        out = []
        for node in range(st.nodes):
            base = node * st.gpus_per_node
            for s in range(0, st.gpus_per_node - tp + 1):
                out.append(tuple(range(base + s, base + s + tp)))
        return out

    def _free_set(self, model: str) -> tuple[int, ...] | None:
        tp = self.b.state.models[model].tp
        cands = [s for s in self._sets(tp) if all(not self.b.state.gpus[g].instances for g in s)]
        return self.rng.choice(cands) if cands else None

    def setup(self, ctx: PolicyContext) -> list[Command]:
        cmds = []
        for m in list(ctx.state.models)[: self.setup_starts]:
            s = self._free_set(m)
            if s is not None:
                cmds.append(StartInstance(m, s))
                break
        return cmds

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        s = self._free_set(model)
        return None if s is None else StartInstance(model, s)

    def _books(self) -> tuple:
        """What a refused verb must leave as it was: memory per GPU and category, replicas, instances,
        reservations and (the twin's sleep mode) pinned host memory."""
        st = self.b.state
        book = self.b.book
        host = getattr(self.b, "host", None)  # the twin's sleep-mode pinned host memory (a HostBook)
        host = host if isinstance(host, HostBook) else None
        return ([list(h) for h in book.ledger.held], [g.used_bytes for g in st.gpus],
                [sorted((m, r.gpus) for m, r in g.replicas.items()) for g in st.gpus],
                [list(g.instances) for g in st.gpus], sorted(st.instances), dict(book.kv_of), dict(book.reserved),
                None if host is None else list(host.held))

    def _try(self, fn, *args) -> None:
        before = self._books()
        try:
            fn(*args)
            self.applied += 1
        except CapacityError:
            self.refused += 1
            assert self._books() == before, "a refused verb changed the books"
        self.b.book.check()

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        rng = self.rng
        st = self.b.state
        models = list(st.models)
        for _ in range(rng.randint(0, 3)):
            verb = rng.random()
            m = rng.choice(models)
            sets = self._sets(st.models[m].tp)
            if verb < 0.3:
                self._try(self.b.prewarm, m, rng.choice(sets))
            elif verb < 0.45:
                reps = [(r.model, r.gpus) for g in st.gpus for r in g.replicas.values()]
                if reps:
                    self._try(self.b.evict, *rng.choice(reps))
            elif verb < 0.6:
                live = [i for i in st.instances.values() if i.phase in (InstancePhase.READY, InstancePhase.STARTING)]
                if live:
                    inst = rng.choice(live)
                    self._try(self.b.stop_instance, inst.instance_id, rng.random() < 0.5)
            elif verb < 0.8:
                live = [i for i in st.instances.values() if i.phase is InstancePhase.READY]
                if live:
                    inst = rng.choice(live)
                    self._try(self.b.lend_kv, inst.instance_id, rng.randint(0, inst.kv_blocks_total))
            else:
                frac = rng.choice([1.0, 1.0, 0.5])
                self._try(self.b.start_instance, m, rng.choice(sets), frac)
        return []
