"""Safety against mean over-refusal compliance, one point per method (rule figure_safety_tradeoff)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.figures import safety_vs_overrefusal
from overrefusal.report.tables import collect
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    safety_vs_overrefusal(collect(snakemake.input.evals), [snakemake.output.png, snakemake.output.pdf])  # noqa: F821
