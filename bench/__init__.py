"""Speed and memory benchmarks; each ``bench_*.py`` runs on its own, ``python -m bench`` runs the suite."""
