"""Re-render the README's results blocks from this run's files (rule readme)."""
from pathlib import Path

from overrefusal.io import atomic_path
from overrefusal.report.readme import blocks, render
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    readme = Path(smk.params.readme)
    text = render(readme.read_text(encoding="utf-8"), readme.parent)
    with atomic_path(readme) as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text("".join(f"{p}\n" for p, _ in blocks(text)), encoding="utf-8")
    log.info("rendered %d README blocks", len(blocks(text)))
