"""Routing overhead on the testbed path: routing decision time at 1,000 requests/s through the front door.

Stub engines (warmserve.testbed.stub_engine, no model compute: 1-token answers) stand behind the real front
door, controller and open-loop streaming client; every request's routing decision (front door -> controller
-> policy -> backend.dispatch) is timed with perf_counter. Prints p50/p99/max of the decision, the achieved
send rate and the client-side send lag. Target (issue 6): decision <= 1 ms p99 at 1,000 req/s.

    .venv/bin/python scripts/bench_router.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from warmserve.control.controller import Controller
from warmserve.control.policy import PolicyContext
from warmserve.control.seam import StartInstance
from warmserve.testbed.stubs import LaunchOnIdle, stub_backend


class OnePerModel(LaunchOnIdle):
    """One instance per model started at setup; requests are spread by the published router."""

    instance_capacity = 10**6

    def setup(self, ctx: PolicyContext):
        return [StartInstance(m, (i,)) for i, m in enumerate(ctx.state.models)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    n = int(a.rate * a.seconds)
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(1 / a.rate, n)) + 1.0  # 1 s for the stubs to come up
    models = ["tiny-s-0", "tiny-m-0"]
    wl = pd.DataFrame({"request_id": range(n), "arrival_s": arrivals,
                       "model": [models[i % 2] for i in range(n)], "input_tokens": 8, "output_tokens": 1})
    with tempfile.TemporaryDirectory() as tmp:
        mix = [{"name": m, "base": m.rsplit("-", 1)[0]} for m in models]
        backend = stub_backend(Path(tmp), engine_args=["--startup-s", "0"], prespawned_pool=0, models=mix)
        ctrl = Controller(backend, OnePerModel(), models)
        backend.replay(wl, ctrl, until_s=arrivals[-1] + 30)
        # the door records are gone with the run; the backend keeps them for us:
        route = np.array([r for r in backend.route_times if r is not None]) * 1e3
        log = backend.request_log()
        det = backend.request_details()
    ok = (log.status == "ok").mean()
    span = arrivals[-1] - arrivals[0]
    print(f"requests {n} at {a.rate:.0f}/s offered over {span:.1f} s; ok {ok:.1%}")
    print(f"routing decision: p50 {np.percentile(route, 50):.3f} ms, p99 {np.percentile(route, 99):.3f} ms, "
          f"max {route.max():.3f} ms over {len(route)} decisions (target p99 <= 1 ms)")
    lag = det.send_lag_s.to_numpy() * 1e3
    print(f"client send lag behind schedule: p50 {np.nanpercentile(lag, 50):.2f} ms, "
          f"p99 {np.nanpercentile(lag, 99):.2f} ms")
    print(f"TTFT through front door + stub: p50 {log.ttft_s.median() * 1e3:.2f} ms, "
          f"p99 {log.ttft_s.quantile(0.99) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
