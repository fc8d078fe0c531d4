"""Train the toy world's word-level tokenizer on every text the world contains (rule train_tokenizer)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.models.tokenizer import train_tokenizer, world_texts
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    tok = train_tokenizer(world_texts(snakemake.input), snakemake.output[0])  # noqa: F821
    log.info("vocabulary: %d tokens", len(tok))
