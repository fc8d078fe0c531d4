"""General capability through lm-eval's Python API on local task files (rule capability)."""
from pathlib import Path

from overrefusal.capability import run_capability
from overrefusal.io import write_json
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    cap = smk.params.capability
    paths = {Path(p).stem: p for p in smk.input.data}
    tasks = {name: {**spec, "path": paths[name]} for name, spec in cap["tasks"].items()}
    result = run_capability(smk.input.model, tasks, template=smk.params.template, batch_size=cap["batch_size"])
    result["provenance"] = rule_provenance(smk, model=model_dir_provenance(smk.input.model))
    write_json(smk.output[0], result)
    log.info("capability: %s", {t: r["metrics"] for t, r in result["tasks"].items()})
