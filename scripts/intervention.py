"""Fit SCANS steering vectors or Surgical's false-refusal direction on a checkpoint (rule intervention)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal import interventions
from overrefusal.io import read_jsonl, write_json
from overrefusal.models.loading import load_model, load_tokenizer
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.runtime import rule_context
from overrefusal.tracking import refusal_phrases, refusal_token_ids

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    p = smk.params.intervention
    tok = load_tokenizer(smk.input.model)
    model = load_model(smk.input.model, smk.params.compute).eval()
    pools = interventions.pools_from_files(smk.input.contrastive, smk.input.general)
    refusals = [r["response"] for r in read_jsonl(smk.input.refusals) if r.get("response")]
    refusal = refusal_token_ids(tok, refusal_phrases(refusals))
    try:
        tensors, settings, report = interventions.fit(p["kind"], model, tok, pools, p["settings"],
                                                      template=smk.params.template, refusal_ids=refusal.ids)
    except interventions.SelectionError as exc:
        log.error("%s\nselection report: %s", exc, exc.report)
        raise
    report.update(kind=p["kind"], pool_sizes={k: len(v) for k, v in pools.items()},
                  refusal_tokens=refusal.table,
                  provenance=rule_provenance(smk, model=model_dir_provenance(smk.input.model)))
    interventions.save(smk.output.vectors, p["kind"], tensors, settings)
    write_json(smk.output.report, report)
    log.info("%s fitted: %s", p["kind"], settings)
