"""Write one evaluation benchmark from its staged source (rule real_eval_set)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.data.splits import write_eval_set
from overrefusal.io import read_json
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    others = {b: read_json(path) for b, path in (smk.params.get("others") or {}).items()}
    n = write_eval_set(smk.wildcards.benchmark, read_json(smk.input.staged), smk.params.real, smk.output.records,
                       smk.output.report, getattr(smk.output, "tuning", None), others=others)
    log.info("%s: %d records", smk.wildcards.benchmark, n)
