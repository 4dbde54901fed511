"""What a *runnable* backend implements beyond the seam (read this to add a backend).

The seam (``warmserve.control.seam.Backend``) is what a policy sees. The runner
(``warmserve.run.execute``) additionally needs to feed a workload in and get
the run's records out. A backend is Hydra-instantiated from
``configs/backend/<name>.yaml`` (its ``_target_`` plus its own keys) with these
keyword arguments added by the runner (``_partial_`` so the objects arrive as
they are, not converted to OmegaConf nodes)::

    backend = hydra.utils.instantiate(cfg.backend, _partial_=True)(
        models=models,        # dict[str, ModelSpec], served name -> spec, config order
        cluster=cluster_cfg,  # DictConfig: name, nodes, gpus_per_node
        hardware=hw_cfg,      # DictConfig: the resolved configs/hardware/<name>.yaml
        features=features,    # warmserve.control.features.BackendFeatures
        seed=seed,            # int; a backend must be deterministic for a seed
    )

Then the runner builds the policy and the ``Controller(backend, policy,
list(models))`` and calls, in order::

    info = backend.replay(workload, controller, until_s, on_start=..., progress=...)
    requests  = backend.request_log()    # metrics.schema.REQUEST_COLUMNS except "system"
    timeline  = backend.timeline()       # metrics.schema.TIMELINE_COLUMNS
    util      = backend.utilization(interval_s)   # metrics.schema.UTILIZATION_COLUMNS

``replay`` contract:

* ``workload``: DataFrame with the workload columns of docs/design.md §4 (``request_id,
  arrival_s, model, input_tokens, output_tokens``), sorted by ``arrival_s``,
  already sliced to what is replayed; every model is in ``models`` (the runner
  checked).
* It calls ``controller.start()`` once at t=0 (before the first arrival), then
  ``on_start()`` if given (the runner schedules its forecast recording there
  with ``backend.clock.call_later``), delivers each request with
  ``controller.on_arrival`` at its ``arrival_s``, and reports every event of
  the ``EventSink`` protocol.
* It returns when every request has ended or the clock reaches ``until_s``
  (= replay length + the drain period). Then it calls ``controller.stop()``;
  requests still waiting at the front door (``controller.pending_requests()``)
  or inside an instance become ``timeout`` rows. No request is ever missing
  from ``request_log()``.
* ``progress(t_s)`` may be called now and then with the current replay time.
* It returns ``ReplayInfo`` (facts for ``run.json``).

The same holds for the policy: ``instantiate(cfg.system.policy,
_partial_=True)(inputs=PolicyInputs(...))``.

A backend also exposes ``describe() -> dict`` (``simulated``, hardware profile
name, anything a reader of ``run.json`` needs to judge the numbers).

This contract is prose, not a ``Protocol``: the runner gets its backend from
``hydra.utils.instantiate`` (typed ``Any``), so a Protocol here would be checked
by nothing; the end-to-end run tests of each backend are what enforce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReplayInfo:
    end_s: float  # clock time when the replay stopped
    requests: int  # requests delivered
    unfinished: int  # requests that became timeout rows because the replay ended
    events: int = 0  # backend-defined work count (the twin: heap events processed)
    extra: dict[str, Any] = field(default_factory=dict)
