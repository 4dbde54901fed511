"""The cluster twin: a discrete-event backend that runs the one controller at cluster scale.

Modules (one job each):

``events``     heap of timestamped callbacks + virtual clock (the seam's ``Clock``)
``calibrate``  fits the latency coefficients from the bundled Vidur profiles
``links``      weight loads as flows over NVMe / host DRAM / PCIe switch / PCIe, max-min fair
``instance``   one engine: continuous batching, analytic decode runs, preemption by recompute
``requests``   per-request state in flat arrays (10^7 requests without per-request objects)
``lifecycle``  what a start costs (the start plans) and sleep mode's pinned host memory
``loading``    weight loads of replicas and starts (flows over the links) with their waiters
``workers``    the pre-spawned worker pool per node
``backend``    ``SimBackend``: the seam's verbs; drives the modules below
``residency``  the twin's layer over the cluster book: replicas' loads, sleeping replicas, evictions logged
``starting``   the start state machine (init -> load -> post -> ready); each start's ``Start`` record
``kv_lending`` ``lend_kv``: free KV blocks of an instance lent to prewarming
``replay``     arrivals fed to the controller, ends counted, end-of-run timeouts
``outputs``    request log / timeline / utilisation tables from a ``TwinRecord`` (no backend object)
``synthetic``  a seeded synthetic workload for tests and the benchmark (labelled synthetic)

The memory books and the command checks are ``warmserve.cluster`` (shared with the testbed); the typed
hardware profile (``configs/hardware``) is ``warmserve.hardware`` (shared with the policies).

Every number the twin uses comes from ``configs/`` (hardware, model); results
it produces are simulated and say so (``describe()["simulated"]``).
"""
