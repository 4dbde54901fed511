"""Run outputs: the request log, timeline and utilisation schemas, their writers,
summary statistics and the Perfetto/Chrome trace export (backend-neutral)."""
