"""Download lm-eval registry tasks' datasets (rule stage_capability_data, a local rule: it needs internet)."""
import os

# The one rule that reads capability data online. huggingface_hub and datasets read these when imported,
# so they are set before anything imports them (rule_context would otherwise default them to offline).
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_DATASETS_OFFLINE"] = "0"

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.capability import stage_registry_tasks
from overrefusal.io import write_json
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    record = stage_registry_tasks(smk.params.tasks, smk.output.cache)
    write_json(smk.output.record, record)
    for name, task in record["tasks"].items():
        docs = sum(sub["n_eval_docs"] for sub in task["subtasks"].values())
        log.info("staged %s: %d lm-eval task(s), %d evaluation documents", name, len(task["subtasks"]), docs)
