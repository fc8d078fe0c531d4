"""DCR's kernel curves during DCR and SFT, one panel per method, and their first/last-step table
(rule figure_kernel_dynamics)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_json
from overrefusal.report.analyses import kernel_dynamics_table
from overrefusal.report.figures import kernel_dynamics
from overrefusal.report.tables import write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    docs = [read_json(p) for p in smk.input.tracking]
    kernel_dynamics(docs, [smk.output.png, smk.output.pdf])
    write_table(kernel_dynamics_table(docs), smk.output.csv, smk.output.md, digits=3)
