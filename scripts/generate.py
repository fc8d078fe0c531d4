"""Greedy generations for every benchmark, one file each, and the win-rate responses (rule generate)."""
import contextlib
from pathlib import Path

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
    model, tok = load_model(smk.input.model, smk.params.compute), load_tokenizer(smk.input.model)  # loaded once for all benchmarks
    hooks, extra = contextlib.ExitStack(), {}
    # SCANS or Surgical: the checkpoint runs with its hooks (input.keys(): `in` on a Namedlist tests values)
    if "intervention" in smk.input.keys():  # noqa: SIM118
        hooks.enter_context(interventions.attached(model, smk.input.intervention))
        extra = interventions.fingerprint(smk.input.intervention)
    meta = {}
    for records_path, out in zip(smk.input.records, smk.output[: len(smk.input.records)]):
        bench = Path(records_path).stem
        meta[bench] = generate(smk.input.model, read_records(records_path), out, template=smk.params.template,
                               max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"], model=model,
                               tokenizer=tok, fingerprint_extra=extra, progress=False)
        log.info("%s: %d responses", bench, meta[bench]["n"])
    if "helpfulness" in smk.output.keys():
        records = generation_records(load_prompt_sets(smk.input.prompts))
        n = generate(smk.input.model, records, smk.output.helpfulness, template=smk.params.template,
                     max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"], model=model, tokenizer=tok,
                     fingerprint_extra=extra, progress=False)["n"]
        log.info("helpfulness: %d responses", n)
    hooks.close()
    write_json(smk.output.meta, meta)
