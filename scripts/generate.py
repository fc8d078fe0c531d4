"""Greedy generations for every benchmark, one file each (rule generate)."""
from pathlib import Path

from overrefusal.generate import generate
from overrefusal.io import write_json
from overrefusal.models.loading import load_model, load_tokenizer
from overrefusal.records import read_records
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    ev = smk.params.eval
    model, tok = load_model(smk.input.model), load_tokenizer(smk.input.model)  # loaded once for all benchmarks
    meta = {}
    for records_path, out in zip(smk.input.records, smk.output[: len(smk.input.records)]):
        bench = Path(records_path).stem
        meta[bench] = generate(smk.input.model, read_records(records_path), out, template=smk.params.template,
                               max_new_tokens=ev["max_new_tokens"], batch_size=ev["batch_size"], model=model,
                               tokenizer=tok, progress=False)
        log.info("%s: %d responses", bench, meta[bench]["n"])
    write_json(smk.output.meta, meta)
