"""What a system needs a backend to provide, besides the seam's verbs.

A system config (``configs/system/<name>.yaml``) has a ``features:`` block; the
runner turns it into ``BackendFeatures`` and passes it to the backend's
constructor. The policy decides *what* to do; these flags decide what the
backend's mechanisms make it *cost* (they change how starts are classified
and timed, never which commands are legal), except ``keep_weights_on_stop``,
which the policy carries into its stop commands (below)::

    name: static
    policy:
      _target_: warmserve.control.static.StaticPolicy   # built with inputs=PolicyInputs(...)
      ...
    features:
      worker_pool: false          # universal workers / pre-started engines exist
      memory_switching: false     # resident weights become an instance by mapping (no copy)
      host_cache: false           # ServerlessLLM-style DRAM checkpoint cache per node
      keep_weights_on_stop: false # every stop keeps the weights as a prewarmed replica

Meaning, as both backends implement it:

* ``worker_pool``: no process start or CUDA context creation on a start; a
  start that must still load weights is a ``worker`` start (else ``cold``).
* ``memory_switching``: a start on exactly the GPUs of a resident (or loading)
  replica of the same model reuses it: a ``prewarmed`` start that pays only
  the mapping and KV allocation (the published CUDA-VMM mechanism). Without
  it a resident replica cannot be adopted and is evicted like any other.
* ``host_cache``: loads read a checkpoint from the node's DRAM cache when it
  is there (capacity from the hardware profile, LRU), else from NVMe and then
  keep it in the cache.
* ``keep_weights_on_stop``: the system's stops keep the weights as a
  prewarmed replica (the published system's implicit keep-alive). This one is
  decided by the *policy*, which reads it from ``PolicyInputs.features`` and
  puts it in every ``StopInstance(keep_weights=...)`` it issues; backends
  honour only the verb's argument, so the flag has one home.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from warmserve.errors import InputError


@dataclass(frozen=True, slots=True)
class BackendFeatures:
    worker_pool: bool = False
    memory_switching: bool = False
    host_cache: bool = False
    keep_weights_on_stop: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> BackendFeatures:
        """Validate a ``features:`` block (unknown keys and non-booleans are input errors)."""
        if cfg is None:
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, bool] = {}
        for key, val in dict(cfg).items():
            if key not in known:
                raise InputError(f"system.features.{key}: unknown feature; known: {sorted(known)}")
            if not isinstance(val, bool):
                raise InputError(f"system.features.{key}: must be true or false, got {val!r}")
            values[key] = val
        return cls(**values)

    def as_dict(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
