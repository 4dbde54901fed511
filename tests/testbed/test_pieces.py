"""Small pieces: ports, clock, engine command building, prompts, config errors."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmserve.errors import InputError
from warmserve.testbed.clock import WallClock
from warmserve.testbed.mechanisms import EngineConfig, EngineFactory
from warmserve.testbed.ports import PortAllocator, port_is_free
from warmserve.testbed.replay import prompt_ids


def test_port_allocator_skips_a_listening_port_and_reuses_released_ones():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    base = probe.getsockname()[1]
    probe.listen()
    try:
        assert not port_is_free(base)
        alloc = PortAllocator(base, 5)
        p = alloc.acquire()
        assert p != base and base in alloc.skipped
        alloc.release(p)
        assert alloc.acquire() == p
    finally:
        probe.close()
    with pytest.raises(InputError):
        PortAllocator(70000, 10)


def test_wall_clock_reads_zero_before_start_and_runs_callbacks():
    clock = WallClock()
    assert clock.now() == 0.0
    seen = []

    async def go():
        clock.start()
        clock.call_later(0.05, lambda: seen.append(clock.now()))
        await asyncio.sleep(0.15)

    asyncio.run(go())
    assert len(seen) == 1 and 0.04 <= seen[0] < 0.5


def test_engine_factory_fills_placeholders_and_rejects_unknown(tmp_path):
    cfg = EngineConfig.from_cfg({"module": "m", "args": ["--x"], "env": {"BIND": "{cores}"},
                                 "per_engine_args": ["--model", "{checkpoint}", "--port", "{port}"]})
    f = EngineFactory(cfg, tmp_path, "127.0.0.1", tmp_path)
    spec = f.fresh("e0", "tiny-s-0", "tiny-s", 1234, "1")
    assert spec.argv[-5:] == ["--x", "--model", str(tmp_path / "tiny-s"), "--port", "1234"]
    assert spec.env == {"BIND": "1"} and spec.url == "http://127.0.0.1:1234"
    bad = EngineFactory(EngineConfig.from_cfg({"module": "m", "args": [], "per_engine_args": ["{nope}"]}),
                        tmp_path, "127.0.0.1", tmp_path)
    with pytest.raises(InputError, match="nope"):
        bad.fresh("e", "a", "b", 1, "0")
    with pytest.raises(InputError, match="module"):
        EngineConfig.from_cfg({"args": []})


@given(st.integers(0, 10**6), st.integers(1, 2048), st.integers(10, 50000))
def test_prompts_have_the_exact_length_and_stay_in_vocab(rid, n, vocab):
    ids = prompt_ids(rid, n, vocab, seed=3)
    assert len(ids) == n and all(3 <= i < vocab for i in ids)
    assert ids == prompt_ids(rid, n, vocab, seed=3)


def test_missing_checkpoint_is_one_clear_input_error(tmp_path):
    from omegaconf import OmegaConf

    from warmserve.config import configs_dir, model_specs
    from warmserve.testbed.runnable import RunnableTestbed

    cfg = OmegaConf.to_container(OmegaConf.load(configs_dir() / "backend" / "testbed.yaml"))
    cfg.pop("_target_")
    cfg["checkpoint_dir"] = str(tmp_path / "none")
    hw = OmegaConf.load(configs_dir() / "hardware" / "cpu-testbed.yaml")
    with pytest.raises(InputError, match="checkpoint"):
        RunnableTestbed(models=model_specs("tiny3"), cluster={"nodes": 1, "gpus_per_node": 2}, hardware=hw, **cfg)
    with pytest.raises(InputError, match="core sets"):
        RunnableTestbed(models=model_specs("tiny3"), cluster={"nodes": 1, "gpus_per_node": 3}, hardware=hw, **cfg)


def test_tiny_model_config_is_complete():
    from warmserve.testbed.tiny_models import llama_config_dict

    d = llama_config_dict("tiny-s")
    assert d["num_hidden_layers"] == 4 and d["vocab_size"] == 8192
    with pytest.raises(InputError):
        llama_config_dict("llama2-7b")  # no 'intermediate'/'vocab': not a tiny model


def test_engine_process_tree_is_pinned_to_its_slot_cores(tmp_path):
    import os

    import psutil

    from warmserve.testbed.engines import EngineProcess, EngineSpec, parse_cpus, python_argv

    assert parse_cpus("0") == (0,) and parse_cpus("0-2,5") == (0, 1, 2, 5)
    mine = sorted(os.sched_getaffinity(0))
    port = PortAllocator(18700, 50).acquire()
    eng = EngineProcess(EngineSpec("pinned", python_argv("warmserve.testbed.stub_engine", "--model", "m", "--port",
                                                         str(port)), port, log_dir=tmp_path, cpus=(mine[0],)))
    eng.launch()
    try:
        assert psutil.Process(eng.proc.pid).cpu_affinity() == [mine[0]]
    finally:
        eng.stop(1)


def test_dispatch_resolves_the_front_doors_request_synchronously(tmp_path):
    """The backend's ``dispatch`` (called inside the controller's decision) must hand the instance and
    how it was classified to the front door before anything else runs: a start may finish meanwhile."""
    from warmserve.control.seam import InstancePhase, InstanceState, Request, RequestStatus, StartKind
    from warmserve.testbed.fleet import InstanceRuntime
    from warmserve.testbed.frontdoor import FrontDoor
    from warmserve.testbed.mechanisms import Mechanism
    from warmserve.testbed.stubs import stub_backend

    backend = stub_backend(tmp_path, prespawned_pool=0)
    model = next(iter(backend.state.models))
    backend.state.instances[7] = InstanceState(7, model, (0,), InstancePhase.STARTING, StartKind.COLD, 0.0)
    backend.fleet.rt[7] = InstanceRuntime(engine=None, mechanism=Mechanism.PROCESS_START)
    finished: list[tuple[int, int | None, RequestStatus]] = []

    class RouteTo7:
        def on_arrival(self, req: Request) -> None:
            backend.dispatch(req.request_id, 7)

        def on_finish(self, rid: int, model: str, iid: int | None, status: RequestStatus) -> None:
            finished.append((rid, iid, status))

    door = FrontDoor(backend, RouteTo7(), "127.0.0.1", 0, 5.0, 0)  # type: ignore[arg-type]
    assert backend.dispatch_listener is door

    async def go() -> None:
        req = Request(request_id=3, arrival_s=0.0, model=model, input_tokens=4, output_tokens=2)
        fut = door.submit(req)
        assert fut.done() and fut.result() == 7  # resolved inside submit, no loop turn needed
        assert door.dispatched_as.pop(3) == ("cold", "process_start")
        assert backend.state.instances[7].inflight == 1
        backend.state.instances[7].phase = InstancePhase.READY  # a later request to it is warm
        door.submit(Request(request_id=4, arrival_s=0.0, model=model, input_tokens=4, output_tokens=2))
        assert door.dispatched_as.pop(4) == ("warm", "routed")
        door.finish(req, 7, RequestStatus.OK)

    asyncio.run(go())
    assert backend.state.instances[7].inflight == 1 and finished == [(3, 7, RequestStatus.OK)]
