"""AlpacaEval-style win rate of one method against the reference, both orders judged (rule winrate)."""
from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_jsonl, sha256_file, write_json
from overrefusal.provenance import rule_provenance
from overrefusal.runtime import rule_context
from overrefusal.winrate import judge_summary, load_prompt_sets, pair_outputs, win_rate, winrate_client

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    prompts = load_prompt_sets(smk.input.prompts)
    pairs = pair_outputs(prompts, read_jsonl(smk.input.method), read_jsonl(smk.input.reference),
                         tuple(smk.params.tags))
    with winrate_client(smk.params.judge, smk.params.cache_dir, prompts) as client:
        result = win_rate(client, pairs, bootstrap=smk.params.bootstrap)  # raises if the judge stays down
        stats = client.stats()
    result = {"model": smk.wildcards.model, "method": smk.wildcards.compared, "seed": int(smk.wildcards.seed),
              "reference": smk.params.reference,
              "judge": judge_summary(smk.params.judge), **result,
              "provenance": rule_provenance(smk, generations_sha256={
                  "method": sha256_file(smk.input.method), "reference": sha256_file(smk.input.reference)})}
    write_json(smk.output[0], result)
    log.info("win rate of %s vs %s: %s [%s, %s] over %d prompts (%d identical, %d judge errors); client: %s",
             smk.wildcards.compared, smk.params.reference, result["win_rate"], result["ci_low"], result["ci_high"],
             result["n"], result["n_identical"], result["n_judge_errors"], stats)
