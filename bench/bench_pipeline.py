"""Wall time of the toy world from a clean copy, of the no-op rerun, and of `snakemake -n`.

Targets (issue: pipeline spine): the full run <= 600 s on 2 cores, a second run does nothing, and
`snakemake -n` after a finished run <= 5 s. Setup (install.sh) is not included: time it separately.

    .venv/bin/python bench/bench_pipeline.py --out benchmarks/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake  # noqa: E402


def timed(work: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = snakemake(work, *args)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work = copy_workflow(base / "wf")
    full, _ = timed(work, "--cores", "all")
    rerun, out = timed(work, "--cores", "all")
    dry, dry_out = timed(work, "-n")
    result = {
        "cores": os.cpu_count(),
        "full_run_s": round(full, 1), "full_run_target_s": 600, "full_run_ok": full <= 600,
        "second_run_s": round(rerun, 1), "second_run_nothing_to_do": "Nothing to be done" in out,
        "dry_run_s": round(dry, 2), "dry_run_target_s": 5, "dry_run_ok": dry <= 5,
        "dry_run_jobs": jobs_in_dry_run(dry_out),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
