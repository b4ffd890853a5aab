"""Benchmarks that compare Dockyard with the reference tools side by side (see README.md).

:mod:`bench.harness` runs and reports; each other module is one benchmark, run as
``python -m bench.<name>``. Benchmarks report medians and ratios and never assert.
"""
