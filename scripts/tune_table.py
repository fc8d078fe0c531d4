"""One tune grid's table: each setting and seed on the tuning parts (rule tune_table)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.tables import write_table
from overrefusal.report.tuning import tune_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    write_table(tune_table(smk.input.evals, smk.input.sft, smk.params.settings), smk.output.csv, smk.output.md)
