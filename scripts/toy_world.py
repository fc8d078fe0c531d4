"""Generate the toy world's splits (rule toy_world)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.runtime import rule_context
from overrefusal.toyworld.files import write_world

with rule_context(snakemake) as log:  # noqa: F821 - injected by Snakemake
    manifest = write_world(snakemake.params.toy, snakemake.output.manifest)  # noqa: F821
    log.info("wrote %d files", len(manifest["files"]))
