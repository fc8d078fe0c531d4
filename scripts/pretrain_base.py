"""Pretrain the tiny base model from scratch (rule pretrain_base)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_jsonl, write_json
from overrefusal.models.loading import load_tokenizer
from overrefusal.models.pretrain import pretrain
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    p = snakemake.params.pretrain  # noqa: F821
    metrics = pretrain(
        read_jsonl(snakemake.input.corpus), load_tokenizer(snakemake.input.tokenizer), snakemake.output.model,  # noqa: F821
        arch=snakemake.params.arch, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],  # noqa: F821
        warmup=p["warmup"], seed=p["seed"], threads=snakemake.threads,  # noqa: F821
    )
    metrics["provenance"] = rule_provenance(snakemake, model=model_dir_provenance(snakemake.output.model))  # noqa: F821
    write_json(snakemake.output.metrics, metrics)  # noqa: F821
    log.info("pretrained in %.1f s, final loss %.3f", metrics["seconds"], metrics["loss_last"])
