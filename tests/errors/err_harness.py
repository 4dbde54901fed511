"""Calling the three CLIs in-process and checking the contract of a bad input.

The contract (warmserve.errors): exit code 2, exactly one stderr line
``error: <key or file>: <what is wrong>`` naming the key or file, and nothing
written (the directory tree the test owns is unchanged).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (hidden staging directories included)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _entry(cli: str) -> Callable[[list[str]], object]:
    if cli == "workload":
        from warmserve.workload.__main__ import cli as workload_cli

        return lambda argv: _with_argv("warmserve.workload", argv, workload_cli)
    if cli == "run":
        from warmserve.run.__main__ import main as run_main

        return lambda argv: _with_argv("warmserve.run", argv, run_main)
    if cli == "experiments":
        from warmserve.experiments.__main__ import main as exp_main

        return lambda argv: exp_main(argv)
    raise ValueError(cli)


def _with_argv(prog: str, argv: list[str], fn: Callable[[], object]) -> object:
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        return fn()
    finally:
        sys.argv = saved


def invoke(cli: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """(exit code, stderr lines) of one in-process CLI call."""
    capsys.readouterr()
    try:
        _entry(cli)(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    return code, err


def assert_one_line_error(code: int, err: list[str], names: str) -> None:
    assert code == 2, (code, err)
    assert len(err) == 1, err
    assert err[0].startswith("error: "), err
    assert names.lower() in err[0].lower(), (names, err[0])


def cwd_unchanged(fn: Callable[[], object]) -> object:
    here = os.getcwd()
    try:
        return fn()
    finally:
        os.chdir(here)
