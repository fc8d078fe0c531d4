"""General capability through lm-eval's Python API (rule capability): local task files, and registry
tasks read offline from the datasets cache that rule stage_capability_data filled."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal import interventions
from overrefusal.capability import run_capability
from overrefusal.io import read_json, write_json
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    cap = smk.params.capability
    paths = {Path(p).stem: p for p in smk.input.data}
    tasks = {name: spec if spec["kind"] == "lm_eval" else {**spec, "path": paths[name]}
             for name, spec in cap["tasks"].items()}
    record = getattr(smk.input, "registry_record", None)  # only when a kind: lm_eval task is configured
    path = getattr(smk.input, "intervention", None)  # SCANS or Surgical: lm-eval runs under its hooks
    hooks = (lambda model: interventions.attached(model, path)) if path else None
    result = run_capability(smk.input.model, tasks, template=smk.params.template, batch_size=cap["batch_size"],
                            compute=smk.params.compute, cache_dir=getattr(smk.input, "registry_cache", None),
                            hooks=hooks)
    staged = {"capability_data": read_json(record)} if record else {}
    if path:
        staged["intervention"] = interventions.fingerprint(path)
    result["provenance"] = rule_provenance(smk, model=model_dir_provenance(smk.input.model), **staged)
    write_json(smk.output[0], result)
    log.info("capability: %s", {t: r["metrics"] for t, r in result["tasks"].items()})
