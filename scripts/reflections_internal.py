"""TBR internal reflections: the model being aligned reasons about each safety prompt (rule reflections_internal)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.records import read_records
from overrefusal.reflect import filter_reflections, internal_reflections
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    tbr = smk.params.tbr
    raw = internal_reflections(smk.input.model, read_records(smk.input.safety), read_records(smk.input.shots), tbr,
                               smk.params.template, f"{smk.output.reflections}.raw.jsonl",
                               compute=smk.params.compute)
    kept, counts = filter_reflections(raw, tbr)
    write_json(smk.output.reflections, {"source": "internal", "model": smk.input.model, "filter": counts,
                                        "raw": raw, "reflections": kept})
    log.info("reflections kept: %s", counts)
