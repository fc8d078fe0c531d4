"""The GPU presets' memory estimate for DCR's stage and SFT (rule memory_estimate)."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import atomic_path
from overrefusal.models.memory import preset_table
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    table = preset_table(smk.params.presets, root=Path(smk.input.base).parent)
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text(table, encoding="utf-8")
    log.info("%d rows", len(table.splitlines()) - 2)
