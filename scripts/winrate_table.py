"""Win rate of every method against the reference, as CSV and Markdown (rule winrate_table)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.tables import winrate_table, write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    write_table(winrate_table(smk.input), smk.output.csv, smk.output.md)
