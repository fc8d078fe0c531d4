"""Refusal probability (or log-odds) during DCR and SFT, one panel per method (rule figure_refusal_dynamics)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_json
from overrefusal.report.figures import refusal_dynamics
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    refusal_dynamics([read_json(p) for p in smk.input.tracking], [smk.output.png, smk.output.pdf],
                     scale=smk.params.scale)
