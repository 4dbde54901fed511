"""Start-up validation: every bad input is one line ``error: <key>: <what is wrong>`` before any work.

``checks`` holds the entry points (``check_run``, ``check_workload_app``,
``check_source``), ``schema`` the typed pydantic schema, ``targets`` the
check of ``_target_`` blocks against their classes, ``report`` the one-line
formatting and ``overrides`` the command-line checks done before Hydra
composes anything.
"""
