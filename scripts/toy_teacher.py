"""Teach the toy world's external teacher (GPT-4's role) to write safety reflections (rule toy_teacher)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.records import read_records
from overrefusal.reflect import teacher_examples
from overrefusal.runtime import rule_context
from overrefusal.sft import train_sft

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    cfg = {**smk.params.sft, "lr": smk.params.teacher["lr"], "epochs": smk.params.teacher["epochs"]}
    metrics = train_sft(smk.input.base, smk.output.model, teacher_examples(read_records(smk.input.data), smk.params.system_prompt), cfg,
                        compute=smk.params.compute)
    metrics["provenance"] = rule_provenance(smk, start_model=model_dir_provenance(smk.input.base),
                                            model=model_dir_provenance(smk.output.model))
    write_json(smk.output.metrics, metrics)
    log.info("teacher trained: %d examples, loss %.3f", metrics["n_examples"], metrics["train_loss"])
