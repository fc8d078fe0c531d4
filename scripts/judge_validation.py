"""Agreement of the string-match judges with the human labels of each labelled set (rule judge_validation)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.judge_validation import CONFUSION_COLUMNS, run_validation, to_markdown, write_table
from overrefusal.judges import get_judge
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    result = run_validation([get_judge(n) for n in smk.params.judges], smk.params.raw_dir, smk.params.sets)
    write_table(result.agreement, smk.output.csv)
    write_table(result.agreement, smk.output.md)
    write_table(result.confusion, smk.output.confusion_csv, CONFUSION_COLUMNS)
    write_table(result.confusion, smk.output.confusion_md, CONFUSION_COLUMNS)
    log.info("judge agreement with the human labels of %s:\n%s", ", ".join(smk.params.sets), to_markdown(
        [r for r in result.agreement if r["model"] == r["subgroup"] == "all"]))
