"""Workloads: trace loading, the published per-model recipe, load history, sources, export.

Start with ``warmserve.workload.api`` (``build_workload``, ``save_bundle``,
``load_bundle``, ``replay_slice``) and ``warmserve.workload.schema`` (the
column contracts). ``python -m warmserve.workload`` is the command line.
"""
