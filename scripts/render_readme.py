"""Preview the README and docs pages with this run's files in place of the published copies (rule readme).

The pages themselves are left as they are: they show results/published/, which only rule publish writes."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import atomic_path
from overrefusal.report.readme import blocks, preview
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    root = Path(smk.params.root)
    for page, out in zip(smk.params.pages, smk.output, strict=True):
        text = preview((root / page).read_text(encoding="utf-8"), root, smk.params.name)
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        log.info("%s: %d blocks, previewed in %s", page, len(blocks(text)), out)
