# Generations per benchmark, judged per-benchmark JSON (judge id in every row, bootstrap CIs),
# and general capability through lm-eval.


# The win-rate prompts are answered in the same job (one model load, one interpreter start: on a
# CPU those cost more than the tiny model's generation).
rule generate:
    input:
        unpack(get_intervention),  # SCANS/Surgical: the hooks the checkpoint runs with
        model=get_eval_model,
        records=get_eval_records,
        prompts=WINRATE_PROMPTS if WINRATE_ON else [],
    output:
        [f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/generations/{b}.jsonl" for b in EVAL_BENCHMARKS],
        meta=f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/generations/meta.json",
        **({"helpfulness": f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/generations/helpfulness.jsonl"}
           if WINRATE_ON else {}),
    params:
        compute=COMPUTE_PARAMS,
        eval=GENERATION_PARAMS,  # decoding only: changing a judge or the bootstrap must not regenerate
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/seed{{seed}}/generate.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/seed{{seed}}/generate.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/eval.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/generate.py"


rule judge:
    input:
        generations=[f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/generations/{b}.jsonl" for b in EVAL_BENCHMARKS],
        records=get_eval_records,  # every record must have its generation
        meta=f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/generations/meta.json",  # weights identity, for provenance
        manifest=MANIFEST,
        **get_learned_judges(),  # learned_<judge>: a trained artefact's manifest.json
    output:
        [f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/eval/{b}.json" for b in EVAL_BENCHMARKS],
    params:
        benchmarks=EVAL_BENCHMARKS,
        # Resolved per benchmark (rules/common.smk): one benchmark's new judge changes these params, so the
        # judging jobs rerun (they judge every benchmark of a run: cheap, and LLM verdicts come from the cache).
        judges=BENCHMARK_JUDGES,
        secondary_judges=BENCHMARK_SECONDARY_JUDGES,
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
        **JUDGE_LLM_PARAMS,  # endpoint + cache dir, only when a benchmark's judge (or secondary) is an LLM judge
        **LEARNED_JUDGE_PARAMS,  # embedding cache dir, only when a learned judge judges
    log:
        f"{LOGS}/{{model}}/{{method}}/seed{{seed}}/judge.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/judge.py"


# Settings chosen off the evaluated prompts: a tune grid's instances answer and are judged on the tuning parts
# of tune.benchmarks only (the same scripts as generate and judge; target tune).
rule tune_generate:
    input:
        unpack(get_intervention),
        model=get_eval_model,
        records=get_tune_records,
    output:
        [f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/tuning/generations/{b}.jsonl" for b in TUNE_BENCHMARKS],
        meta=f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/tuning/generations/meta.json",
    params:
        compute=COMPUTE_PARAMS,
        eval=GENERATION_PARAMS,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/seed{{seed}}/tune_generate.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/seed{{seed}}/tune_generate.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/eval.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/generate.py"


rule tune_judge:
    input:
        generations=[f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/tuning/generations/{b}.jsonl" for b in TUNE_BENCHMARKS],
        records=get_tune_records,
        meta=f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/tuning/generations/meta.json",
        manifest=MANIFEST,
        **get_learned_judges(),
    output:
        [f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/tuning/eval/{b}.json" for b in TUNE_BENCHMARKS],
    params:
        benchmarks=TUNE_BENCHMARKS,
        judges=benchmark_judges(config, benchmarks=TUNE_BENCHMARKS),
        secondary_judges=benchmark_judges(config, "secondary_judges", TUNE_BENCHMARKS),
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
        **JUDGE_LLM_PARAMS,
        **LEARNED_JUDGE_PARAMS,
    log:
        f"{LOGS}/{{model}}/{{method}}/seed{{seed}}/tune_judge.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/judge.py"


rule capability:
    input:
        unpack(get_capability_registry),  # registry_record, registry_cache: only with kind: lm_eval tasks
        unpack(get_intervention),
        model=get_eval_model,
        data=get_capability_data,
        manifest=MANIFEST,
    output:
        f"{RESULTS}/{{model}}/{{method}}/seed{{seed}}/eval/capability.json",
    params:
        compute=COMPUTE_PARAMS,
        capability=CAPABILITY,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/seed{{seed}}/capability.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/seed{{seed}}/capability.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/eval.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/capability.py"


# The datasets of lm-eval registry tasks (MMLU, GSM8K, ARC, ...), downloaded from the HF hub with lm-eval
# building each task as the capability rule will; compute nodes then read them offline. A local rule:
# run it where there is internet (`snakemake --cores 1 stage_capability_data` on a login node).
if CAPABILITY_DATA:

    localrules:
        stage_capability_data,

    rule stage_capability_data:
        output:
            record=f"{CAPABILITY_DATA}.json",
            cache=directory(CAPABILITY_DATA),
        params:
            tasks=CAPABILITY_STAGE,  # lm-eval names only: a few-shot or metric change needs no new download
        log:
            f"logs/stage_capability_data/{CAPABILITY_DATA_KEY}.log",
        conda:
            "../envs/eval.yaml"
        resources:
            mem_mb=4000,
            runtime=120,
        script:
            "../scripts/stage_capability_data.py"


# Helpfulness: an AlpacaEval-style pairwise win rate of the responses to the win-rate prompt sets (rule
# generate) against winrate.reference, both orders judged (toy world: a local oracle judge over HTTP).
rule winrate:
    input:
        method=f"{RESULTS}/{{model}}/{{compared}}/seed{{seed}}/generations/helpfulness.jsonl",
        reference=get_winrate_reference,
        prompts=WINRATE_PROMPTS,
        manifest=MANIFEST,
    output:
        f"{RESULTS}/{{model}}/{{compared}}/seed{{seed}}/helpfulness/winrate.json",
    params:
        judge=WINRATE.get("judge", {}),
        reference=WINRATE_REFERENCE,
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
        cache_dir=f"{RESULTS}/cache/llm",
    log:
        f"{LOGS}/{{model}}/{{compared}}/seed{{seed}}/winrate.log",
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/winrate.py"


# Agreement of the string-match judges with the human labels of each labelled set under data.raw_dir
# (eval.judge_validation; by default XSTest's 2,250 completions), and their confusion matrices.
# A learned judge (eval.learned_judges.<judge>.train_sets) trained on human-labelled responses, with the
# leave-one-model-out table of the same recipe: agreement on models whose responses it never saw.
rule train_learned_judge:
    input:
        get_learned_judge_data,
    output:
        manifest=f"{RESULTS}/judges/{{judge}}/manifest.json",
        classifier=f"{RESULTS}/judges/{{judge}}/classifier.json",
        cv_json=f"{RESULTS}/judges/{{judge}}_cv.json",
        cv_md=report(f"{RESULTS}/judges/{{judge}}_cv.md", caption="../report/learned_judge_cv.rst", category="Judges"),
    params:
        sets=get_learned_judge_sets,
        raw_dir=RAW_DIR,
        embedding_cache=EMBEDDING_CACHE,
        reference=get_learned_judge_reference,
    wildcard_constraints:
        judge="|".join(LEARNED_TRAINED) or "NONE",
    log:
        f"{LOGS}/judges/{{judge}}.log",
    benchmark:
        f"{BENCH}/judges/{{judge}}.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/train_learned_judge.py"


rule judge_validation:
    input:
        get_judge_validation_data,
    output:
        csv=report(f"{RESULTS}/tables/judge_agreement.csv", caption="../report/judge_agreement.rst", category="Tables"),
        md=f"{RESULTS}/tables/judge_agreement.md",
        confusion_csv=f"{RESULTS}/tables/judge_confusion.csv",
        confusion_md=f"{RESULTS}/tables/judge_confusion.md",
    params:
        judges=VALIDATED_JUDGES,
        sets=VALIDATION_SETS,
        raw_dir=RAW_DIR,
    log:
        f"{LOGS}/report/judge_validation.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/judge_validation.py"


localrules:
    judge_validation,
