"""Fetch a pinned hub snapshot (rule fetch_model, a local rule: it needs internet)."""
import os

os.environ["HF_HUB_OFFLINE"] = "0"  # this rule is the one place that goes online; set before the import

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.models.hub import fetch_hub_model
from overrefusal.runtime import rule_context

smk = snakemake  # noqa: F821 - injected by Snakemake
with rule_context(smk) as log:
    record = fetch_hub_model(smk.params.spec, smk.output.model, key=f"models.{smk.wildcards.hub_model}")
    write_json(smk.output.record, record)
    log.info("fetched %s@%s: %d file(s)", record["repo_id"], record["revision"], len(record["files"]))
