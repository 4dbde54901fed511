"""A deliberately naive, independent re-implementation of the published trace generator.

Written from the reference description (docs/reference.md §2.2-§2.5) in
plain Python: csv module, datetime parsing, lists of tuples, an explicit pool
list and ``sorted``. It shares no code with ``warmserve.workload``; the tests
check that the vectorised pipeline produces exactly what this produces.
"""

from __future__ import annotations

import csv
import math
import random
from datetime import datetime


def read_week(path) -> list[tuple[float, int, int]]:
    """process_csv(path): seconds since the first row, shifted to Monday, wrapped, sorted."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    stamps = [datetime.fromisoformat(r["TIMESTAMP"]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: stamps[i])
    first = stamps[order[0]]
    shift_days = {6: 1, 4: 3}.get(first.weekday(), (7 - first.weekday()) % 7)  # conv: Sunday, code: Friday
    out = []
    for i in order:
        delta = stamps[i] - first
        ns = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        t = ns / 1e9  # pandas 2.x total_seconds(): one division of the ns count
        t = t - shift_days * 24 * 3600
        if t < 0:
            t = t + 7 * 24 * 3600
        out.append((t, int(rows[i]["ContextTokens"]), int(rows[i]["GeneratedTokens"])))
    out.sort(key=lambda r: r[0])
    return out


def first_hour(week, day):
    hour = []
    for t, c, g in week:
        rel = t - day * 86400
        if 0 <= rel <= 3600:
            hour.append((rel, c, g))
    return hour


def generate(path, names, alpha, rps, seed=42):
    """The prewarm workload: list of (arrival, 'llm-i', model name, input, output) sorted by arrival."""
    week = read_week(path)
    m = len(names)
    start = max(0, 7 - m)
    assert start > 0
    weights = [(i + 1) ** (-alpha) for i in range(m)]
    total_w = sum(weights)
    n_total = int(3600 * rps)
    everything = []
    for i, name in enumerate(names):
        hour = first_hour(week, start + i)
        n_i = int(n_total * (weights[i] / total_w))
        k = math.ceil(n_i / len(hour))
        pool = []
        for t, c, g in hour:
            for _ in range(k):
                pool.append((t, f"llm-{i}", name, min(1024, c), max(3, g)))
        everything += random.Random(seed + i).sample(pool, n_i)
    everything.sort(key=lambda r: r[0])
    return everything
