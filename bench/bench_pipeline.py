"""Wall time of the toy world from a clean copy, of the no-op rerun, and of `snakemake -n`.

Targets (issue: pipeline spine): the full run <= 600 s on 2 cores, a second run does nothing, and
`snakemake -n` after a finished run <= 5 s. Setup (install.sh) is not included: time it separately.
Where the time goes comes from the run's own ``benchmark:`` files: job wall times summed per rule (a
job's wall time includes its interpreter and library start-up, which a job in a warm-start child skips:
overrefusal.warm_start). The Markdown beside the JSON is what the README shows. ``--cold`` runs every job in
its own fresh interpreter (``OVERREFUSAL_WARM_START=0``), the run to compare with.

    .venv/bin/python bench/bench_pipeline.py --out results/bench/pipeline.json
    .venv/bin/python bench/bench_pipeline.py --cold --out results/bench/pipeline_cold.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.suite import machine_info, machine_line  # noqa: E402
from overrefusal.warm_start import SWITCH, USAGE_LINE  # noqa: E402
from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake  # noqa: E402


def timed(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = snakemake(work, *args, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def job_seconds(bench_dir: Path) -> dict[str, dict[str, float]]:
    """Wall seconds per rule from Snakemake's benchmark files (column ``s``), largest total first. A file is
    named after its rule, except the analyses' (``analysis/<name>.tsv``)."""
    by_rule: dict[str, list[float]] = {}
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rule = f"analysis ({tsv.stem})" if tsv.parent.name == "analysis" else tsv.stem
        with tsv.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        by_rule.setdefault(rule, []).extend(float(r["s"]) for r in rows)
    table = {rule: {"jobs": len(v), "seconds": round(sum(v), 1), "mean_s": round(sum(v) / len(v), 1)}
             for rule, v in by_rule.items()}
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["seconds"]))


def warm_jobs(log_dir: Path) -> int:
    """Jobs that ran in a warm-start child (their log ends with the child's usage line)."""
    return sum(USAGE_LINE in p.read_text(errors="replace") for p in log_dir.rglob("*.log"))


def markdown(r: dict[str, Any]) -> str:
    total = sum(v["seconds"] for v in r["job_seconds_by_rule"].values())
    start = (f"{r['warm_start_jobs']} of them in warm-start children" if r["warm_start_jobs"]
             else "each in its own fresh interpreter")
    head = (f"Full run from a clean copy: **{r['full_run_s']:.0f} s** with {r['cores']} cores, {r['jobs']} jobs, {start} "
            f"(target ≤ {r['full_run_target_s']} s: {'met' if r['full_run_ok'] else 'missed'}); second run: "
            f"{'nothing to be done' if r['second_run_nothing_to_do'] else 'jobs rerun'} ({r['second_run_s']:.1f} s); "
            f"`snakemake -n` {r['dry_run_s']:.1f} s (target ≤ {r['dry_run_target_s']} s). Job wall times add up to "
            f"{total:.0f} s:")
    lines = [head, "", "| rule | jobs | seconds, all jobs | seconds per job |", "|---|---:|---:|---:|"]
    lines += [f"| {rule} | {v['jobs']} | {v['seconds']:.0f} | {v['mean_s']:.1f} |"
              for rule, v in r["job_seconds_by_rule"].items()]
    lines += ["", machine_line(r["machine"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    ap.add_argument("--cold", action="store_true", help=f"no warm start ({SWITCH}=0)")
    args = ap.parse_args()
    env = {SWITCH: "0"} if args.cold else {SWITCH: "1"}
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work = copy_workflow(base / "wf")
    jobs = jobs_in_dry_run(snakemake(work, "-n").stdout)
    full, _ = timed(work, "--cores", "all", env=env)
    rerun, out = timed(work, "--cores", "all", env=env)
    dry, dry_out = timed(work, "-n", env=env)
    result = {
        "cores": os.cpu_count(),
        "full_run_s": round(full, 1), "full_run_target_s": 600, "full_run_ok": full <= 600,
        "jobs": sum(jobs.values()), "jobs_by_rule": jobs, "warm_start_jobs": warm_jobs(work / "logs"),
        "second_run_s": round(rerun, 1), "second_run_nothing_to_do": "Nothing to be done" in out,
        "dry_run_s": round(dry, 2), "dry_run_target_s": 5, "dry_run_ok": dry <= 5,
        "dry_run_jobs": jobs_in_dry_run(dry_out),
        "job_seconds_by_rule": job_seconds(work / "benchmarks"),
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
