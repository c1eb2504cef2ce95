"""Casewire's benchmark harness: `make bench` (about 4 minutes) or `make bench-quick` (under 1).

See bench/results/README.md for what it measures and how to read the results.
"""
