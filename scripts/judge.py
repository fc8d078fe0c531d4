"""Judge every benchmark's generations into per-benchmark JSON with bootstrap CIs (rule judge)."""
from overrefusal.benchmarks import get_benchmark
from overrefusal.io import read_jsonl, write_json
from overrefusal.judges import get_judge
from overrefusal.provenance import provenance
from overrefusal.runtime import rule_context
from overrefusal.scoring import score_benchmark, validate_result

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    prov = provenance(smk.config, judges=smk.params.judges)
    for bench, gen_path, out in zip(smk.params.benchmarks, smk.input, smk.output):
        judge = get_judge(smk.params.judges[get_benchmark(bench).suite])
        result = score_benchmark(read_jsonl(gen_path), bench, judge, bootstrap=smk.params.bootstrap,
                                 reflection_tags=tuple(smk.params.tags))
        result["model"], result["method"] = smk.wildcards.model, smk.wildcards.method
        result["provenance"] = prov
        validate_result(result)
        write_json(out, result)
        log.info("%s: %s = %.3f [%.3f, %.3f] (judge %s)", bench, result["metric"], result["value"],
                 result["ci_low"], result["ci_high"], judge.id)
