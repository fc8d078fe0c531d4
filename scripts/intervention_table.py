"""What each SCANS and Surgical fit decided, per seed, as CSV and Markdown (rule intervention_table)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.tables import intervention_table, write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    write_table(intervention_table(smk.input), smk.output.csv, smk.output.md, digits=3)
