"""Throughput benchmarks on the embedded broker (``make bench``); not part of the package."""
