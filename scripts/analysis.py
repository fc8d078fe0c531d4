"""One analysis (eNTK, separability or token attribution) of every checkpoint it compares, on every analysed
training seed (rule analysis)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal import analysis
from overrefusal.io import read_jsonl, write_json
from overrefusal.models.loading import load_model, load_tokenizer
from overrefusal.provenance import model_dir_provenance, rule_provenance
from overrefusal.runtime import rule_context
from overrefusal.tracking import PROBE_SETS, load_probe_set, refusal_phrases, refusal_token_ids

# isort: split
import torch  # after the package: a warm-start server takes the job over before torch loads

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    s = smk.params.settings
    kind, labels, seeds = s["kind"], s["labels"], s["seeds"]
    files = {name: getattr(smk.input, f"probe_{name}") for name in PROBE_SETS}
    key = "analysis.entk.n_per_class" if kind == "entk" else "analysis.n_per_class"  # the eNTK has its own
    sets = {name: load_probe_set(name, path, s["n_per_class"], key).texts for name, path in files.items()}
    # Trigger words from the whole probe files, not only the prompts analysed.
    everything = {name: load_probe_set(name, path, None).texts for name, path in files.items()}
    triggers = analysis.trigger_words(s["triggers"], everything, s["n_triggers"]) if kind == "attribution" else []
    refusals = [r["response"] for r in read_jsonl(smk.input.refusals) if r.get("response")]
    # JSON keys are written sorted: `labels` and `seeds` keep the order.
    out = {"analysis": kind, "model": smk.wildcards.model, "labels": labels, "seeds": seeds, "settings": s,
           "probe_files": files, "triggers": triggers, "checkpoints": {label: {} for label in labels}}
    sources = {}
    for (label, seed), path in zip(s["runs"], smk.input.checkpoints, strict=True):  # rules/common.smk: analysis_runs
        tok = load_tokenizer(path)
        # The kernel's derivatives need float32 at least (bf16 finite differences are noise).
        model = load_model(path, smk.params.compute, dtype=torch.float32 if kind == "entk" else None).eval()
        refusal = refusal_token_ids(tok, refusal_phrases(refusals))
        torch.manual_seed(seed)
        result = analysis.run(kind, model, tok, smk.params.template, sets, {**s, "seed": seed},
                              refusal_ids=refusal.ids, triggers=triggers)
        out["checkpoints"][label][str(seed)] = result
        sources[f"{label}@seed{seed}"] = model_dir_provenance(path)
        log.info("%s on %s, seed %d: %.1f s", kind, label, seed, result.get("seconds", 0.0))
        del model
    out["provenance"] = rule_provenance(smk, checkpoints=sources)
    write_json(smk.output[0], out)
