"""Agreement of the string-match judges with XSTest's human labels (rule judge_validation)."""
from overrefusal.judge_validation import to_markdown, validate_judges, write_table
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    rows = validate_judges(smk.params.judges, smk.params.raw_dir)
    write_table(rows, smk.output.csv)
    write_table(rows, smk.output.md)
    log.info("judge agreement with XSTest human labels:\n%s", to_markdown(rows))
