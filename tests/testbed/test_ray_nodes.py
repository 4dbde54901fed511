"""Ray: one agent actor per node owns that node's engines (a local Ray cluster on this machine)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from warmserve.testbed.engines import EngineSpec, PortTaken, python_argv
from warmserve.testbed.ports import PortAllocator

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (testbed extra)")


def test_node_agent_starts_checks_and_stops_an_engine_on_its_node(tmp_path):
    import ray

    from warmserve.testbed.ray_nodes import RayEngineHost, RemoteEngine

    host = RayEngineHost(num_cpus=1)
    try:
        assert len(host.agents) == 1  # one node here: one agent
        port = PortAllocator(18600, 50).acquire()
        spec = EngineSpec("ray-stub", python_argv("warmserve.testbed.stub_engine", "--model", "m", "--port",
                                                   str(port)), port, log_dir=tmp_path)
        eng = RemoteEngine(host, 0, spec)
        eng.launch()
        secs = asyncio.run(eng.wait_healthy(None, 30, 0.05))
        assert secs > 0 and eng.alive()
        twin = RemoteEngine(host, 0, EngineSpec("ray-stub-2", spec.argv, port, log_dir=tmp_path))
        with pytest.raises(PortTaken):  # the agent refuses a port its node already uses
            twin.launch()
        eng.stop(2)
        assert not eng.alive()
        with pytest.raises(ValueError):
            host.agent(5)
    finally:
        host.shutdown()
        ray.shutdown()
