"""Result tables in DCR's layout plus outcomes and capability, as CSV and Markdown (rule tables).

Cells are means over seeds with intervals across seeds; the per-seed rows go to *_per_seed.csv.
"""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.tables import (
    capability_table, collect, judge_pair_table, main_table, outcome_table, summary_table, write_table,
)
from overrefusal.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    smk = snakemake  # noqa: F821
    df = collect(smk.input.evals)
    write_table(main_table(df), smk.output.main_csv, smk.output.main_md)
    write_table(main_table(df, per_seed=True), smk.output.main_seeds_csv, smk.output.main_seeds_md)
    write_table(outcome_table(df), smk.output.outcomes_csv, smk.output.outcomes_md)
    write_table(judge_pair_table(df), smk.output.judges_csv, smk.output.judges_md)
    boot = smk.params.bootstrap
    write_table(capability_table(smk.input.capability, bootstrap=boot), smk.output.cap_csv, smk.output.cap_md)
    cap_runs = capability_table(smk.input.capability, per_seed=True, bootstrap=boot)
    write_table(cap_runs, smk.output.cap_seeds_csv, smk.output.cap_seeds_md)
    write_table(summary_table(df, cap_runs, **smk.params.summary), smk.output.summary_csv, smk.output.summary_md)
    write_table(summary_table(df, cap_runs, per_seed=True, **smk.params.summary), smk.output.summary_seeds_csv,
                smk.output.summary_seeds_md)
