"""Result tables in DCR's layout plus capability, as CSV and Markdown (rule tables)."""
from overrefusal.report.tables import capability_table, collect, main_table, write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    write_table(main_table(collect(smk.input.evals)), smk.output.main_csv, smk.output.main_md)
    write_table(capability_table(smk.input.capability), smk.output.cap_csv, smk.output.cap_md)
