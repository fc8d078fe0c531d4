"""Each paper table in its paper's layout beside the paper's values (rule paper_tables)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.report.paper_tables import load_paper_values, paper_layout, read_ours, write_paper_table
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    tables = load_paper_values(smk.input.values)
    ours = {"main": smk.input.main, "capability": smk.input.capability,
            "winrate": smk.input.winrate[0] if smk.input.winrate else None}
    for tid in smk.params.tables:
        table = tables[tid]
        df, missing = paper_layout(table, read_ours(ours[table.source]), smk.params.method_kinds,
                                   partial=smk.params.partial)
        out = [p for p in smk.output if f"/paper/{tid}." in p]
        by_ext = {p.rsplit(".", 1)[1]: p for p in out}
        write_paper_table(table, df, missing, by_ext["csv"], by_ext["md"], by_ext["tex"], safety=smk.params.safety)
        log.info("%s: %d rows, %d missing cells%s", tid, len(df), len(missing), " (PARTIAL)" if missing else "")
