"""Reading ``results/`` back for notebooks: run summaries as tidy frames, figure helpers."""
