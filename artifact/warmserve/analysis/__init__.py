"""Reading ``results/`` back for the notebooks: tidy frames, derived measures, figures and tables.

``results``     runs of an experiment as frames (``load_runs``, ``require_runs``), request/timeline readers
``capacity``    SLO attainment recomputed from request logs, capacity on a swept grid, bounded ratios
``headline``    the paper-vs-ours headline table and its generated reading
``timeline``    per-model load, forecast, instances and prewarmed replicas over time
``coldstart``   the cold-start TTFT split per start kind
``sensitivity`` the sensitivity runs with their swept value per dimension
``forecast``    forecaster error and fit-cost tables (oracle check)
``lineage``     which runs (git revisions, config hashes) each figure/table came from; mixed revisions refused
``labels``      readable system names, orders and colours
``plots``       figure builders;  ``figures``: style, provenance, saving figures and tables
"""
