"""Greedy generations for every benchmark, one file each, and the win-rate responses (rule generate)."""
import contextlib
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal import interventions
from overrefusal.generate import generate
from overrefusal.io import write_json
from overrefusal.models.loading import load_model, load_tokenizer
from overrefusal.records import read_records
from overrefusal.runtime import rule_context
from overrefusal.winrate import generation_records, load_prompt_sets

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    ev = smk.params.eval
    # SCANS and Surgical (input.keys(): `in` on a Namedlist tests values) run with hooks on the transformers
    # model, so they generate with hf whatever eval.backend says; meta.json records the engine of every job.
    hooked = "intervention" in smk.input.keys()  # noqa: SIM118
    backend = "hf" if hooked else ev.get("backend", "hf")
    if backend != ev.get("backend", "hf"):
        log.info("eval.backend %s: this checkpoint runs with intervention hooks, so it generates with hf",
                 ev["backend"])
    engine = {"backend": backend, "compute": smk.params.compute,
              **({"engine_args": ev.get("vllm") or {}} if backend == "vllm" else {})}
    tok = load_tokenizer(smk.input.model)
    # loaded once for all benchmarks (vLLM keeps one engine per process, in overrefusal.generate)
    model = load_model(smk.input.model, smk.params.compute) if backend == "hf" else None
    hooks, extra = contextlib.ExitStack(), {}
    if hooked:
        hooks.enter_context(interventions.attached(model, smk.input.intervention))
        extra = interventions.fingerprint(smk.input.intervention)
    meta = {}
    for records_path, out in zip(smk.input.records, smk.output[: len(smk.input.records)]):
        bench = Path(records_path).stem
        meta[bench] = generate(smk.input.model, read_records(records_path), out, template=smk.params.template,
                               max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"], model=model,
                               tokenizer=tok, fingerprint_extra=extra, progress=False, **engine)
        log.info("%s: %d responses (%s)", bench, meta[bench]["n"], backend)
    if "helpfulness" in smk.output.keys():
        records = generation_records(load_prompt_sets(smk.input.prompts))
        n = generate(smk.input.model, records, smk.output.helpfulness, template=smk.params.template,
                     max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"], model=model, tokenizer=tok,
                     fingerprint_extra=extra, progress=False, **engine)["n"]
        log.info("helpfulness: %d responses", n)
    hooks.close()
    write_json(smk.output.meta, meta)
