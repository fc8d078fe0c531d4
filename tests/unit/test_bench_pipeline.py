"""bench_pipeline's account of where a toy run's time goes, from Snakemake's benchmark files."""

from __future__ import annotations

from pathlib import Path

from bench import suite
from bench.bench_pipeline import job_seconds, markdown

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_tsv(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t1\t1\t1\t1\t0\t0\t0\t1\n", encoding="utf-8")


def test_job_seconds_sums_per_rule_and_names_analyses(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks" / "toy"
    write_tsv(bench / "toy-llama" / "stl" / "seed1" / "sft.tsv", 40.0)
    write_tsv(bench / "toy-llama" / "stl" / "seed2" / "sft.tsv", 50.0)
    write_tsv(bench / "toy-llama" / "stl" / "seed1" / "generate.tsv", 20.5)
    write_tsv(bench / "toy-llama" / "analysis" / "entk.tsv", 70.0)
    table = job_seconds(tmp_path / "benchmarks")
    assert list(table) == ["sft", "analysis (entk)", "generate"]  # largest total first
    assert table["sft"] == {"jobs": 2, "seconds": 90.0, "mean_s": 45.0}
    assert table["generate"]["jobs"] == 1


def test_markdown_states_target_and_breakdown() -> None:
    r = {"full_run_s": 1357.2, "cores": 2, "jobs": 146, "warm_start_jobs": 0, "full_run_target_s": 600, "full_run_ok": False,
         "second_run_nothing_to_do": True, "second_run_s": 2.6, "dry_run_s": 2.61, "dry_run_target_s": 5,
         "job_seconds_by_rule": {"sft": {"jobs": 18, "seconds": 882.0, "mean_s": 49.0},
                                 "generate": {"jobs": 25, "seconds": 550.0, "mean_s": 22.0}},
         "machine": suite.machine_info()}
    md = markdown(r)
    assert "**1357 s** with 2 cores, 146 jobs, each in its own fresh interpreter (target ≤ 600 s: missed)" in md
    assert "nothing to be done (2.6 s)" in md and "add up to 1432 s" in md
    assert "| sft | 18 | 882 | 49.0 |" in md and md.rstrip().splitlines()[-1].startswith("Machine: ")
    assert "146 jobs, 80 of them in warm-start children (target" in markdown({**r, "warm_start_jobs": 80})


def test_warm_jobs_are_counted_from_the_logs(tmp_path: Path) -> None:
    from bench.bench_pipeline import warm_jobs
    from overrefusal.warm_start import USAGE_LINE

    (tmp_path / "a").mkdir()
    (tmp_path / "a/generate.log").write_text(f"x\n2026 overrefusal.warm_start INFO {USAGE_LINE} 417 MiB\n")
    (tmp_path / "a/sft.log").write_text("trained\n")
    (tmp_path / "judge.log").write_text(f"{USAGE_LINE} 12 MiB\n")
    assert warm_jobs(tmp_path) == 2
