"""DCR's contrastive refinement stage (rule dcr_contrastive)."""
from overrefusal.dcr import train_dcr
from overrefusal.io import write_json
from overrefusal.records import read_records
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    d = smk.params.method["dcr"]
    rows = read_records(smk.input.contrastive)
    seemingly = [r["prompt"] for r in rows if r["label"] == "seemingly_toxic"]
    toxic = [r["prompt"] for r in rows if r["label"] == "toxic"]
    metrics = train_dcr(smk.input.model, smk.output.model, seemingly, toxic, template=smk.params.template,
                        layer=d["layer"], steps=d["steps"], lr=d["lr"], batch_size=d["batch_size"],
                        margin=d["margin"], scale=d["scale"], pooling=d["pooling"], seed=d["seed"])
    write_json(smk.output.metrics, metrics)
    log.info("DCR layer %d: between-class cosine %.3f -> %.3f", d["layer"],
             metrics["similarity_before"]["between"], metrics["similarity_after"]["between"])
