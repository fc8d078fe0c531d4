"""Compliance per over-refusal benchmark and Safety, per method (rule figure_compliance)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.figures import compliance_by_method
from overrefusal.report.tables import collect
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    compliance_by_method(collect(snakemake.input.evals), [snakemake.output.png, snakemake.output.pdf])  # noqa: F821
