"""Per method: recovery of STL's drop, toxic refusal and capability against STL, and a verdict (rule verdicts)."""
import pandas as pd

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import atomic_path
from overrefusal.report.verdicts import tradeoff_figure, verdict_markdown, verdict_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    runs = pd.read_csv(smk.input.summary)
    table, ph = verdict_table(runs, smk.params.methods, **smk.params.refs)
    with atomic_path(smk.output.csv) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")
    with atomic_path(smk.output.md) as tmp:
        tmp.write_text(verdict_markdown(table, ph), encoding="utf-8")
    tradeoff_figure(runs, [smk.output.png, smk.output.pdf])
