"""Judge every benchmark's generations into per-benchmark JSON with bootstrap CIs (rule judge)."""
import contextlib
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_jsonl, write_json
from overrefusal.judges import get_judge, is_llm_judge
from overrefusal.judges.llm import endpoint_summary, judge_client
from overrefusal.provenance import model_provenance, rule_provenance
from overrefusal.runtime import rule_context
from overrefusal.scoring import require_all_rows, score_benchmark, validate_result

with rule_context(snakemake) as log, contextlib.ExitStack() as stack:  # noqa: F821
    smk = snakemake  # noqa: F821
    # LLM judges: params carry the endpoint only when a benchmark's judge is one. For base_url: local a
    # scripted judge is served over HTTP for this job. A judge that stays down raises (cache kept).
    llm = smk.params.get("llm_judge")
    client = stack.enter_context(judge_client(llm, smk.params.cache_dir)) if llm else None
    # Both maps are benchmark -> judge id, resolved by overrefusal.config.benchmark_judges in the workflow.
    secondary = smk.params.get("secondary_judges") or {}
    # Learned judges load the artefact their input names (input learned_<judge>: its manifest.json).
    learned = {k.removeprefix("learned_"): Path(v).parent for k, v in smk.input.items() if k.startswith("learned_")}
    # Their embeddings are kept by response hash, so rejudging (another threshold, a new table) encodes nothing.
    cache = smk.params.get("embedding_cache")
    judges = {n: get_judge(n, client=client) if is_llm_judge(n) else
              get_judge(n, artefact=learned[n], embedding_cache=cache) if n in learned else get_judge(n)
              for n in {*smk.params.judges.values(), *secondary.values()}}
    # The workflow directory (not the package install location) names the code; the generation
    # meta.json (weights sha256) and the data manifest come from the jobs that made the inputs.
    prov = rule_provenance(smk, judges=smk.params.judges)
    if learned:
        prov["learned_judges"] = {n: judges[n].info() for n in sorted(learned) if n in judges}
    if llm:
        prov["llm_judge"] = endpoint_summary(llm)
    for bench, gen_path, rec_path, out in zip(smk.params.benchmarks, smk.input.generations, smk.input.records,
                                              smk.output, strict=True):
        judge = judges[smk.params.judges[bench]]
        extra = [judges[secondary[bench]]] if secondary.get(bench) else []
        generations = read_jsonl(gen_path)
        require_all_rows(generations, read_jsonl(rec_path), gen_path)
        result = score_benchmark(generations, bench, judge, bootstrap=smk.params.bootstrap,
                                 reflection_tags=tuple(smk.params.tags), secondary=extra)
        result["model"], result["method"] = smk.wildcards.model, smk.wildcards.method
        result["seed"] = int(smk.wildcards.seed)
        result["provenance"] = {**prov, "judge_id": judge.id, "model": model_provenance(smk.input.meta, bench)}
        validate_result(result)
        write_json(out, result)
        log.info("%s: %s = %s [%s, %s] (judge %s, %d judge errors)", bench, result["metric"], result["value"],
                 result["ci_low"], result["ci_high"], judge.id, result["n_judge_errors"])
    if client is not None:
        log.info("LLM judge client: %s", client.stats())
