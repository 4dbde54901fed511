"""The real testbed: the one controller driving real vLLM engine processes on the wall clock.

Pieces (one job each):

``clock``        ``WallClock``: the seam's ``Clock`` on an asyncio loop (seconds since replay start).
``ports``        loopback port allocation and "is this port taken" checks.
``engines``      start / health-check / stop one OpenAI-compatible engine process
                 (``python -m vllm.entrypoints.openai.api_server`` or the stub engine).
``stub_engine``  a tiny OpenAI-compatible fake engine (aiohttp) for tests and benchmarks.
``prespawn``     a process that has already imported vLLM and waits for its arguments on
                 stdin: the "worker" prewarm mechanism (the published pre-spawned api_servers).
``mechanisms``   how a start is served: fresh process (cold), pre-spawned process (worker),
                 standby engine (CPU stand-in for prewarmed weights), vLLM sleep mode (GPU).
``frontdoor``    the HTTP front door: owns the requests (submit, routing futures, finish) and relays
                 each to the controller's pick.
``replay``       the open-loop streaming client measuring TTFT/TPOT at the client.
``backend``      ``TestbedBackend``: the seam's ``Backend`` verbs acting on engines, composed of:
``settings``     ``TestbedSettings``, the resolved backend config;
``launcher``     ``Launcher``: ports, the pre-spawned pool, engine launches (local or on a Ray node);
``gpu_lifecycle`` ``GpuLifecycle``: engine plans, stops that free GPU memory, sleeping to weights;
``fleet``        ``Fleet``: each instance's and prewarmed replica's engine, and queries on them;
``tasks``        ``TaskSet``: the backend's background tasks; ``timeline`` the timeline rows.
``utilization``  per-second process CPU/memory (CPU) or NVML (GPU) sampling.
``ray_nodes``    one Ray actor per node owning that node's engines (multi-machine runs).
``tiny_models``  random-weight Llama checkpoints made locally (no downloads, no tokenizer).
``runnable``     ``RunnableTestbed``: ``backend=testbed`` for ``python -m warmserve.run`` (the runner's
                 protocol: replay, request log, timeline, utilisation), Ctrl-C safe.
``stubs``        a stub-engine testbed and a minimal launching policy (tests, router benchmark).

Run (CPU): ``python -m warmserve.run +experiment=sim_vs_real backend=testbed system=reactive out=...``.
"""
