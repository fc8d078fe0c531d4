"""``PYTHONPATH=src python -m bench [--out-dir DIR] [--only NAME ...] [--quick]``: run the bench suite."""

from __future__ import annotations

from bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
