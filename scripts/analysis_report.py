"""Table and figure of one analysis over every model (rule analysis_report)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_json
from overrefusal.report.analyses import FIGURES, TABLES
from overrefusal.report.tables import write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    kind = smk.wildcards.analysis
    docs = [read_json(p) for p in smk.input]
    write_table(TABLES[kind](docs), smk.output.csv, smk.output.md, digits=3)
    FIGURES[kind](docs, [smk.output.png, smk.output.pdf])
