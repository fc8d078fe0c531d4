"""Safety SFT for one {model} x {method} with TRL's SFTTrainer (rule sft), with refusal tracking."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_json, write_json
from overrefusal.methods import KINDS
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.records import read_records
from overrefusal.runtime import rule_context
from overrefusal.sft import build_examples, sft_settings, train_sft
from overrefusal.tracking import PROBE_SETS, RefusalTrackingCallback, build_tracker, disabled_json, kernel_tracking

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    p = smk.params.method
    t = smk.params.tracking
    sft = sft_settings(p["sft"])  # a bad sft key fails before any data or model is read
    # sft_n: the first n of a split, a seeded subset (splits are written in sample order)
    data = {Path(f).stem: read_records(f)[: p.get("sft_n", {}).get(Path(f).stem)] for f in smk.input.data}
    reflections, gamma = None, 0.0
    if KINDS[p["kind"]].reflections:
        reflections, gamma = read_json(smk.input.reflections)["reflections"], p["tbr"]["gamma"]
    examples, stats = build_examples(data, template=smk.params.template, reflections=reflections, gamma=gamma,
                                     seed=sft.seed)
    tracker, callbacks = None, []
    if t["enabled"]:
        tracker = build_tracker(smk.input.start, {s: getattr(smk.input, f"probe_{s}") for s in PROBE_SETS},
                                smk.input.refusals, template=smk.params.template, n_probe=t["n_probe"],
                                max_length=sft.max_length, batch_size=t["batch_size"],
                                kernel=kernel_tracking(t.get("kernel")))
        callbacks.append(RefusalTrackingCallback(tracker, t["every_steps"]))
        log.info("refusal tokens: %s", [(r["id"], r["token"]) for r in tracker.refusal.table])
    metrics = train_sft(smk.input.start, smk.output.model, examples, sft, compute=smk.params.compute,
                        callbacks=callbacks)
    prov = rule_provenance(smk, start_model=model_dir_provenance(smk.input.start),
                           model=model_dir_provenance(smk.output.model))
    write_json(smk.output.metrics, {**metrics, "method": p, "data": stats, "provenance": prov})
    ident = {"stage": "sft", "model": smk.wildcards.model, "method": smk.wildcards.trained,
             "seed": int(smk.wildcards.seed)}
    write_json(smk.output.tracking,
               tracker.to_json(**ident, every_steps=t["every_steps"], total_steps=metrics["global_step"],
                               extra={"resumed_from": metrics["resumed_from"]})
               if tracker is not None else disabled_json(**ident))
    log.info("%s: %d examples, %d steps, loss %.3f", p["kind"], metrics["n_examples"], metrics["global_step"],
             metrics["train_loss"])
