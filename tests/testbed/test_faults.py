"""Faults on the testbed path (stub engines): crash mid-run, port taken, never healthy, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from warmserve.control.controller import Controller
from warmserve.testbed.engines import REGISTRY

from .helpers import LaunchOnIdle, stub_backend, workload

STUB = ["--startup-s", "0.1", "--decode-ms", "20"]


def test_engine_killed_mid_run_requests_retried_or_failed_none_missing(tmp_path):
    # Requests 0-2 stream on instance A; A crashes at request 2's second token. Request 3 is still in
    # prefill then (no byte sent): it is retried on a fresh instance B. Request 4 arrives later: warm on B.
    args = ["--startup-s", "0.1", "--prefill-ms-base", "300", "--decode-ms", "20", "--die-after", "3"]
    backend = stub_backend(tmp_path, engine_args=args, prespawned_pool=0, slots=1)
    wl = workload([(0.0, "tiny-s-0", 8, 10), (0.01, "tiny-s-0", 8, 10), (0.02, "tiny-s-0", 8, 10),
                   (0.6, "tiny-s-0", 8, 10), (4.0, "tiny-s-0", 8, 10)])
    ctrl = Controller(backend, LaunchOnIdle(), list(backend.state.models))
    info = backend.replay(wl, ctrl, until_s=30.0)
    log = backend.request_log().set_index("request_id")
    details = backend.request_details().set_index("request_id")
    assert sorted(log.index) == sorted(wl.request_id)  # none missing
    assert list(log.status) == ["failed", "failed", "failed", "ok", "ok"], log.status
    assert details.loc[3, "attempts"] == 2 and log.loc[3, "instance_id"] != log.loc[0, "instance_id"]
    assert log.loc[4, "start_kind"] == "warm" and log.loc[4, "instance_id"] == log.loc[3, "instance_id"]
    failed_events = [e for e in backend.timeline_rows if e["kind"] == "instance_failed"]
    assert len(failed_events) == 1 and "exited" in failed_events[0]["detail"]
    assert info.unfinished == 0 and REGISTRY.live() == []


def test_port_already_taken_is_skipped(tmp_path):
    backend = stub_backend(tmp_path, prespawned_pool=0)
    first = backend.settings.port_first
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", first))
    blocker.listen()
    try:
        ctrl = Controller(backend, LaunchOnIdle(), list(backend.state.models))
        backend.replay(workload([(0.0, "tiny-s-0", 4, 2)]), ctrl, until_s=20.0)
    finally:
        blocker.close()
    log = backend.request_log()
    assert list(log.status) == ["ok"]
    assert first in backend.launcher.ports.skipped and backend.counters["ports_skipped"] >= 1


def test_engine_that_never_becomes_healthy_times_out_and_is_reported(tmp_path):
    backend = stub_backend(tmp_path, engine_args=["--never-healthy"], prespawned_pool=0, request_timeout_s=20)
    backend.factory.cfg.startup_timeout_s = 1.0
    ctrl = Controller(backend, LaunchOnIdle(), list(backend.state.models))
    backend.replay(workload([(0.0, "tiny-s-0", 4, 2)]), ctrl, until_s=15.0)
    log = backend.request_log()
    assert len(log) == 1 and log.status.iloc[0] in {"failed", "timeout"}
    failed = [e for e in backend.timeline_rows if e["kind"] == "instance_failed"]
    assert failed and "not healthy" in failed[0]["detail"]
    assert REGISTRY.live() == []


SIGINT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from warmserve.testbed.stubs import LaunchOnIdle, stub_backend, workload
    from warmserve.control.controller import Controller
    b = stub_backend(Path({tmp!r}), engine_args=["--decode-ms", "50"], prespawned_pool=1,
                     features={{"worker_pool": True}})
    wl = workload([(0.1 * i, "tiny-s-0", 4, 400) for i in range(50)])
    c = Controller(b, LaunchOnIdle(), list(b.state.models))
    info = b.replay(wl, c, until_s=120)
    log = b.request_log()
    print(json.dumps({{"partial": info.extra["partial"], "rows": len(log),
                      "statuses": sorted(set(log.status)), "by": info.extra["interrupted_by"]}}))
""")


def test_sigint_cleans_up_children_and_marks_partial(tmp_path):
    tests_dir = os.path.dirname(os.path.dirname(__file__))
    script = SIGINT_SCRIPT.format(tests=tests_dir, tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    import psutil

    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(parent.children(recursive=True)) < 2:
        time.sleep(0.2)  # wait for the pre-spawned process and an engine
    time.sleep(1.0)
    children = parent.children(recursive=True)
    assert children, "the run should have engine children by now"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    import json

    res = json.loads(out.strip().splitlines()[-1])
    assert res["partial"] is True and res["by"] == "SIGINT"
    assert res["rows"] == 50  # every request has a row, unfinished ones marked
    assert "timeout" in res["statuses"]
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"children left behind: {alive}"


@pytest.mark.parametrize("level", [1, 2])
def test_sleep_mode_client_speaks_vllm_endpoints(tmp_path, level):
    """The GPU mechanism's HTTP calls, against the stub's copy of vLLM's dev endpoints."""
    import asyncio

    import aiohttp

    from warmserve.testbed.engines import EngineProcess, EngineSpec, python_argv
    from warmserve.testbed.mechanisms import SleepModeClient
    from warmserve.testbed.ports import PortAllocator

    port = PortAllocator(18500, 50).acquire()
    eng = EngineProcess(EngineSpec("sleepy", python_argv("warmserve.testbed.stub_engine", "--model", "m",
                                                         "--port", str(port)), port, log_dir=tmp_path))

    async def go():
        eng.launch()
        async with aiohttp.ClientSession() as s:
            await eng.wait_healthy(s, 20, 0.05)
            c = SleepModeClient(s, eng.spec.url)
            await c.sleep(level)
            assert await c.is_sleeping()
            await c.wake_up(["weights"])
            assert await c.is_sleeping()  # weights back, KV not yet: a prewarmed replica
            await c.wake_up(["kv_cache"])
            assert not await c.is_sleeping()

    try:
        asyncio.run(go())
    finally:
        eng.stop(1)
