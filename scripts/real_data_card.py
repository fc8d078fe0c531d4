"""Write the run's data card, Markdown + JSON (rule real_data_card)."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.data.card import write_card
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    staged = {Path(p).stem: p for p in smk.input.staged}
    reports = {Path(p).stem.removeprefix("eval_"): p for p in smk.input.reports}
    write_card(smk.input.manifest, staged, reports, smk.output.md, smk.output.json)
    log.info("data card: %d sources", len(staged))
