"""Benchmarks putting otelkit side by side with its peers (``make bench``; never in ``make test``).

Each script runs as ``python -m bench.<name> [--quick]``, prints a table and ends with one
JSON line carrying its figures and targets; ``python -m bench.run_all`` runs them all.
"""
