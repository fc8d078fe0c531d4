"""Train a learned refusal judge and write its leave-one-model-out table (rule train_learned_judge)."""
from pathlib import Path

from overrefusal.io import sha256_file
from overrefusal.judges.learned import train_and_validate
from overrefusal.provenance import rule_provenance
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    prov = rule_provenance(smk, sets=smk.params.sets,
                           training_data={Path(p).name: sha256_file(p) for p in smk.input})
    cv = train_and_validate(smk.params.sets, smk.params.raw_dir, Path(smk.output.manifest).parent,
                            Path(smk.output.cv_json).parent, provenance=prov)
    if cv:
        ours = cv["candidates"][cv["chosen"]]
        log.info("%s: leave-one-model-out agreement mean %.3f, worst %.3f over %d models (%s)", smk.wildcards.judge,
                 ours["mean"], ours["min"], len(cv["models"]), cv["source"])
