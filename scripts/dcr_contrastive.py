"""DCR's contrastive refinement stage (rule dcr_contrastive), with refusal tracking."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.dcr import DCRConfig, train_dcr
from overrefusal.io import write_json
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.models.loading import load_tokenizer
from overrefusal.prompting import render_dialogue
from overrefusal.records import read_records, user_text
from overrefusal.runtime import rule_context
from overrefusal.tracking import PROBE_SETS, DCRTrack, build_tracker, disabled_json, kernel_tracking

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    cfg = DCRConfig.from_params(smk.params.dcr)
    t = smk.params.tracking
    rows = read_records(smk.input.contrastive)
    seemingly = [r["prompt"] for r in rows if r["label"] == "seemingly_toxic"]
    toxic = [r["prompt"] for r in rows if r["label"] == "toxic"]
    lm_texts = []
    if cfg.lm_weight > 0:  # the LM-regularised variant reads the general SFT data
        tok = load_tokenizer(smk.input.model)
        lm_texts = [render_dialogue(tok, user_text(r), r["response"], smk.params.template)
                    for r in read_records(smk.input.general)]
    tracker, track = None, None
    if t["enabled"]:
        tracker = build_tracker(smk.input.model, {s: getattr(smk.input, f"probe_{s}") for s in PROBE_SETS},
                                smk.input.refusals, template=smk.params.template, n_probe=t["n_probe"],
                                max_length=cfg.max_length, batch_size=t["batch_size"],
                                kernel=kernel_tracking(t.get("kernel")))
        track = DCRTrack(tracker, t["every_steps"])
    metrics = train_dcr(smk.input.model, smk.output.model, seemingly, toxic, cfg, template=smk.params.template,
                        lm_texts=lm_texts, compute=smk.params.compute, track=track)
    metrics["provenance"] = rule_provenance(smk, start_model=model_dir_provenance(smk.input.model),
                                            model=model_dir_provenance(smk.output.model))
    write_json(smk.output.metrics, metrics)
    ident = {"stage": "dcr", "model": smk.wildcards.model, "method": smk.wildcards.dcr_method,
             "seed": int(smk.wildcards.seed)}
    write_json(smk.output.tracking,
               tracker.to_json(**ident, every_steps=t["every_steps"], total_steps=cfg.steps,
                               extra={"layer": cfg.layer})
               if tracker is not None else disabled_json(**ident))
    log.info("DCR layer %d: between-class cosine %.3f -> %.3f", cfg.layer,
             metrics["similarity_before"]["between"], metrics["similarity_after"]["between"])
