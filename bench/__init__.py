"""Benchmarks: ``python -m bench NAME``. Each prints a table of ratios measured side by side in one
run (absolute times on shared machines are noise) and writes JSON to ``bench/results/NAME.json``."""
