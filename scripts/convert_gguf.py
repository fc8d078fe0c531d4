"""Convert a GGUF model file into a transformers checkpoint (rule convert_gguf)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.models.gguf import convert_gguf
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    record = convert_gguf(smk.params.spec, smk.output.model, key=f"models.{smk.wildcards.gguf_model}")
    write_json(smk.output.record, record)
    log.info("converted %s (%s, gguf sha256 %s)", record.get("file") or record.get("path"), record["architecture"],
             record["gguf_sha256"])
