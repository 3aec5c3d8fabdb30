"""Offline tools: synthetic traffic (simulate, outage, the live demo feed), replay of
a file through the worker's own pipeline, and the reports built on it (evaluate).
Nothing here runs inside a production worker."""
