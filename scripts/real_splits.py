"""Build the curated training splits from real data and check leakage (rule real_splits)."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.data.splits import build_splits
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    staged = {Path(p).stem: p for p in smk.input.staged}
    evals = {Path(p).stem: p for p in smk.input.evals}
    tuning = {Path(p).stem: p for p in getattr(smk.input, "tuning", [])}
    manifest = build_splits({"real": smk.params.real, "plan": smk.params.plan, "toy": smk.params.toy,
                             "toy_capability": smk.params.toy_capability, "tuning_files": tuning}, staged, evals,
                            str(Path(smk.output.manifest).parent), smk.output.leakage_csv, smk.output.leakage_md,
                            smk.output.leakage_json, smk.output.manifest, workers=smk.threads)
    log.info("wrote %d files; unchecked benchmarks (source missing): %s", len(manifest["files"]),
             smk.params.unchecked or "none")
