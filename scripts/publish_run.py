"""Publish one run's results into results/published/<name>/runs/ (rule publish_run; overrefusal.run_store)."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.provenance import cpu_model, git_commit
from overrefusal.run_store import publish_run
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    p = smk.params.run
    run_dir = p["run_dir"]
    record = publish_run(run_dir, p["store"], p["files"], p["recipe"], benchmark_dir=p["benchmarks"],
                         provenance={"code": git_commit(Path(p["root"])), "machine": cpu_model(), "run_dir": run_dir})
    write_json(smk.output[0], {"store": p["store"], "recipe_sha256": record["recipe_sha256"],
                               "files": record["files"], "job_seconds": record.get("job_seconds", {})})
    log.info("published %s: %d files, recipe %s", run_dir, len(record["files"]), record["recipe_sha256"][:12])
