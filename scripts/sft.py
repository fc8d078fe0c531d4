"""Safety SFT for one {model} x {method} with TRL's SFTTrainer (rule sft)."""
from pathlib import Path

from overrefusal.io import read_json, write_json
from overrefusal.records import read_records
from overrefusal.runtime import rule_context
from overrefusal.sft import build_examples, train_sft

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    p = smk.params.method
    data = {Path(f).stem: read_records(f) for f in smk.input.data}
    reflections, gamma = None, 0.0
    if p["kind"] == "tbr":
        reflections, gamma = read_json(smk.input.reflections)["reflections"], p["tbr"]["gamma"]
    examples, stats = build_examples(data, template=smk.params.template, reflections=reflections, gamma=gamma,
                                     seed=p["sft"]["seed"])
    metrics = train_sft(smk.input.start, smk.output.model, examples, p["sft"])
    write_json(smk.output.metrics, {**metrics, "method": p, "data": stats})
    log.info("%s: %d examples, %d steps, loss %.3f", p["kind"], metrics["n_examples"], metrics["global_step"],
             metrics["train_loss"])
