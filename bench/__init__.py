"""Casewire's benchmark harness: `make bench` (about 9 minutes) or `make bench-quick` (under 2).

See bench/results/README.md for what it measures and how to read the results.
"""
