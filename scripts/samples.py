"""A seeded sample of judged generations beside the tables (rule samples)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import atomic_path
from overrefusal.report.samples import sample_rows, samples_markdown
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    rows = sample_rows(list(smk.input), n=smk.params.samples["n"], seed=smk.params.samples["seed"])
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text(samples_markdown(rows), encoding="utf-8")
    log.info("%d sampled responses", len(rows))
