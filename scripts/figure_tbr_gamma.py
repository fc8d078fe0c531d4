"""TBR's γ sweep: the claims against the reflected proportion, per reflection source (rule figure_tbr_gamma)."""
import pandas as pd

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.figures import sweep_figure
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    table = pd.read_csv(smk.input[0])
    tbr = pd.DataFrame([{"method": m, **v} for m, v in smk.params.methods.items()])
    rows = table.merge(tbr, on="method")
    sweep_figure(rows, "gamma", [smk.output.png, smk.output.pdf], series="reflection",
                 refs=table[table["method"].isin(["stl", "no_safety"])], xlabel="γ (share of refusals reflected)")
