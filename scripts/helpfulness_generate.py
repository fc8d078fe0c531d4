"""Greedy responses to the win-rate prompt sets, for the pairwise win rate (rule helpfulness_generate)."""
from overrefusal.generate import generate
from overrefusal.runtime import rule_context
from overrefusal.winrate import generation_records, load_prompt_sets

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    records = generation_records(load_prompt_sets(smk.input.prompts))
    meta = generate(smk.input.model, records, smk.output[0], template=smk.params.template,
                    max_new_tokens=smk.params.eval["max_new_tokens"], batch_size=smk.params.eval["batch_size"],
                    progress=False)
    log.info("helpfulness: %d responses from %s", meta["n"], smk.input.model)
