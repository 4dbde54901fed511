"""Start, health-check and stop one OpenAI-compatible engine process.

An engine is a child process in its own process group (so stopping it stops
whatever it spawned: vLLM's engine-core process, OMP threads), listening on
its own loopback port, optionally pinned to its own cores
(``VLLM_CPU_OMP_THREADS_BIND``; without it every CPU engine binds core 0, see
docs/environment.md §1). Every live engine is in ``REGISTRY`` so a run that ends in
any way -- normally, by an exception, by Ctrl-C / SIGTERM, at interpreter exit
-- kills all of them and frees their ports.

Failures are typed so the backend can react and the run can report them:
``EngineExited`` (the process died; log tail attached), ``EngineTimeout``
(never became healthy in time), ``PortTaken`` (someone else holds the port).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from warmserve.testbed.ports import port_is_free


class EngineError(RuntimeError):
    """An engine could not be started or died."""


class EngineExited(EngineError):
    pass


class EngineTimeout(EngineError):
    pass


class PortTaken(EngineError):
    pass


@dataclass(slots=True)
class EngineSpec:
    """Everything needed to launch one engine process.

    ``argv`` is the full command line (built by ``warmserve.testbed.mechanisms``
    from the backend config); ``env`` is added to the parent's environment.
    """

    name: str  # for logs, e.g. "e3-tiny-s-0"
    argv: list[str]
    port: int
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = Path(".")
    cpus: tuple[int, ...] | None = None  # CPU affinity of the whole process tree (None = inherit)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ProcessRegistry:
    """Every engine process this interpreter started; kills them all on exit."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen] = {}
        atexit.register(self.kill_all)

    def add(self, proc: subprocess.Popen) -> None:
        self._procs[proc.pid] = proc

    def discard(self, proc: subprocess.Popen) -> None:
        self._procs.pop(proc.pid, None)

    def live(self) -> list[int]:
        return [pid for pid, p in self._procs.items() if p.poll() is None]

    def kill_all(self) -> None:
        for proc in list(self._procs.values()):
            kill_group(proc, grace_s=0.0)
        self._procs.clear()


REGISTRY = ProcessRegistry()


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> int | None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s if grace_s > 0 else 0.2)
    # the leader may be gone while its children (vLLM engine core) linger: kill the group anyway
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return proc.returncode


class EngineProcess:
    """One engine child process and its lifecycle."""

    def __init__(self, spec: EngineSpec, stdin_pipe: bool = False) -> None:
        self.spec = spec
        self.proc: subprocess.Popen | None = None
        self.launched_mono: float | None = None
        self.healthy_mono: float | None = None
        self._stdin_pipe = stdin_pipe

    @property
    def log_path(self) -> Path:
        return self.spec.log_dir / f"{self.spec.name}.log"

    def launch(self) -> None:
        """Start the process (non-blocking). Raises ``PortTaken`` if the port is held."""
        if not port_is_free(self.spec.port, self.spec.host):
            raise PortTaken(f"{self.spec.name}: port {self.spec.port} on {self.spec.host} is already taken")
        self.spec.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        log.write(f"$ {shlex.join(self.spec.argv)}\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env}
        cpus = self.spec.cpus
        self.proc = subprocess.Popen(
            self.spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: stop kills vLLM's children too
            # pin the whole tree (API server, engine core, workers inherit it) to the slot's cores, so an
            # engine that is starting cannot take CPU from another slot's serving engine
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        log.close()
        self.launched_mono = time.monotonic()
        REGISTRY.add(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def wait_healthy(
        self, session: aiohttp.ClientSession, timeout_s: float, interval_s: float = 0.2
    ) -> float:
        """Poll ``GET /health`` until 200; returns seconds from launch to healthy."""
        assert self.proc is not None and self.launched_mono is not None
        deadline = time.monotonic() + timeout_s
        url = f"{self.spec.url}/health"
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise PortTaken(f"{self.spec.name}: port {self.spec.port} taken (engine log says so)")
                raise EngineExited(
                    f"{self.spec.name} exited with code {self.proc.returncode} before becoming healthy; "
                    f"log {self.log_path}:\n{tail}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        self.healthy_mono = time.monotonic()
                        return self.healthy_mono - self.launched_mono
            if time.monotonic() > deadline:
                raise EngineTimeout(f"{self.spec.name} not healthy after {timeout_s:.0f} s (log {self.log_path})")
            await asyncio.sleep(interval_s)

    def stop(self, grace_s: float = 5.0) -> int | None:
        """Stop the whole process group; idempotent."""
        if self.proc is None:
            return None
        code = kill_group(self.proc, grace_s)
        REGISTRY.discard(self.proc)
        return code


def parse_cpus(cores: str) -> tuple[int, ...]:
    """``"0"``, ``"0,2"``, ``"0-3"`` (the ``VLLM_CPU_OMP_THREADS_BIND`` forms) -> sorted core ids."""
    out: set[int] = set()
    for part in cores.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return tuple(sorted(out))


def python_argv(module: str, *args: str) -> list[str]:
    """``[this interpreter, -m, module, *args]``: children use the same venv as the run."""
    return [sys.executable, "-m", module, *args]
