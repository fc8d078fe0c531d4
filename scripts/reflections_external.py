"""TBR external reflections from an OpenAI-compatible teacher, cached and retried (rule reflections_external)."""
import contextlib

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import write_json
from overrefusal.llm import ChatClient
from overrefusal.llm.launcher import local_server
from overrefusal.provenance import weights_sha256
from overrefusal.records import read_records
from overrefusal.reflect import external_reflections, filter_reflections
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    tbr, ext = smk.params.tbr, smk.params.tbr["external"]
    local = ext["base_url"] == "local"
    server = (local_server(smk.input.teacher, model_name=ext["model"], threads=smk.threads,
                           log_path=f"{smk.log[0]}.server") if local else contextlib.nullcontext(None))
    with server as url:
        # A local teacher's cache is keyed by its weights too: retraining it must not reuse answers.
        client = ChatClient.from_config(ext, smk.params.cache_dir, base_url=url,
                                        cache_namespace=weights_sha256(smk.input.teacher) if local else None)
        params = {"max_tokens": ext["max_tokens"], "temperature": ext["temperature"]}
        raw = external_reflections(client, read_records(smk.input.safety), read_records(smk.input.shots),
                                   num_shots=ext["num_shots"], system_prompt=ext.get("system_prompt", ""), params=params)
        stats = client.stats()
    kept, counts = filter_reflections(raw, tbr)
    write_json(smk.output.reflections, {"source": "external", "endpoint": "local" if local else ext["base_url"],
                                        "model": ext["model"], "filter": counts, "usage": stats, "raw": raw,
                                        "reflections": kept})
    log.info("reflections kept: %s; client: %s", counts, stats)
