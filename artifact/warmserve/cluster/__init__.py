"""The cluster's books and rules, shared by both backends (the twin, ``warmserve.sim``, and the testbed).

``ledger``  per-GPU memory by category, refusing oversubscription; ``HostBook`` for pinned host memory
``book``    ``ClusterBook``: replicas added, adopted and evicted, GPUs claimed and released, KV lent
``rules``   the command checks (GPU sets, colocation, one model per GPU), KV sizes, the start kind

It reads and writes the seam's state types (``warmserve.control.seam``) and imports nothing else of
the package, so both backends can build on it without importing each other.
"""
