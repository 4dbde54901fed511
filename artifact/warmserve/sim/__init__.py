"""The cluster twin: a discrete-event backend that runs the one controller at cluster scale.

Modules (one job each):

``events``     heap of timestamped callbacks + virtual clock (the seam's ``Clock``)
``profile``    the hardware profile (``configs/hardware``), validated and typed
``calibrate``  fits the latency coefficients from the bundled Vidur profiles
``links``      weight loads as flows over NVMe / host DRAM / PCIe switch / PCIe, max-min fair
``ledger``     per-GPU memory books (weights, KV, prewarmed); oversubscription raises
``instance``   one engine: continuous batching, analytic decode runs, preemption by recompute
``requests``   per-request state in flat arrays (10^7 requests without per-request objects)
``backend``    ``SimBackend``: the seam's verbs, engine lifecycle, replay, outputs
``outputs``    request log / timeline / utilisation tables from the twin's records
``synthetic``  a seeded synthetic workload for tests and the benchmark (labelled synthetic)

Every number the twin uses comes from ``configs/`` (hardware, model); results
it produces are simulated and say so (``describe()["simulated"]``).
"""
