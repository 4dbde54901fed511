"""Test helpers: re-exported from ``warmserve.testbed.stubs``."""

from warmserve.testbed.stubs import LaunchOnIdle, stub_backend, workload

__all__ = ["LaunchOnIdle", "stub_backend", "workload"]
