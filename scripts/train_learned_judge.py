"""Train a learned refusal judge and write its held-out table (rule train_learned_judge).

refusal_clf_v1: leave-one-model-out on the sets it trains on; refusal_clf_v2: leave-one-source-out."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import sha256_file
from overrefusal.judges import cross_source, learned
from overrefusal.provenance import rule_provenance
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    prov = rule_provenance(smk, sets=smk.params.sets,
                           training_data={Path(p).name: sha256_file(p) for p in smk.input})
    artefact, cv_dir = Path(smk.output.manifest).parent, Path(smk.output.cv_json).parent
    if smk.wildcards.judge == cross_source.JUDGE_ID:
        cv = cross_source.train_and_validate(smk.params.sets, smk.params.raw_dir, artefact, cv_dir, provenance=prov,
                                             cache_dir=smk.params.embedding_cache, reference=smk.params.reference)
        ours = cv["recipes"][cv["chosen"]]
        log.info("%s: leave-one-source-out worst %s %.3f, mean %.3f over %d sets", smk.wildcards.judge,
                 ours["worst_set"], ours["worst"], ours["mean"], len(cv["sets"]))
    else:
        cv = learned.train_and_validate(smk.params.sets, smk.params.raw_dir, artefact, cv_dir, provenance=prov)
        if cv:
            ours = cv["candidates"][cv["chosen"]]
            log.info("%s: leave-one-model-out agreement mean %.3f, worst %.3f over %d models (%s)",
                     smk.wildcards.judge, ours["mean"], ours["min"], len(cv["models"]), cv["source"])
