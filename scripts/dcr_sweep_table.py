"""DCR's sweep: each setting's claims (answered, toxic refusal, capability, recovery) over seeds, and the
one-knob ℓ sweep as a figure (rule dcr_sweep)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.figures import note_figure, sweep_figure, sweep_rows
from overrefusal.report.tables import sweep_table, write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    table, runs = sweep_table(smk.input.evals, smk.input.capability, smk.params.settings, smk.params.defaults,
                              smk.params.summary, dcr_metrics=smk.input.dcr)
    write_table(table, smk.output.csv, smk.output.md)
    write_table(runs, smk.output.seeds_csv, smk.output.seeds_md)
    layer = sweep_rows(table, "layer", smk.params.defaults)
    outs = [smk.output.layer_png, smk.output.layer_pdf]
    if layer["layer"].nunique() >= 2:
        sweep_figure(layer, "layer", outs, refs=table[table["method"].isin(["stl", "no_safety"])],
                     xlabel="DCR layer ℓ (other settings default)")
    else:  # settings that vary other knobs too say nothing about ℓ alone
        note_figure("dcr_sweep.settings holds fewer than two settings that differ from dcr: in layer alone", outs)
