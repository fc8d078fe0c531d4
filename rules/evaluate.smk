# Generations per benchmark, judged per-benchmark JSON (judge id in every row, bootstrap CIs),
# and general capability through lm-eval.


rule generate:
    input:
        model=get_eval_model,
        records=get_eval_records,
    output:
        [f"{RESULTS}/{{model}}/{{method}}/generations/{b}.jsonl" for b in EVAL_BENCHMARKS],
        meta=f"{RESULTS}/{{model}}/{{method}}/generations/meta.json",
    params:
        eval=GENERATION_PARAMS,  # decoding only: changing a judge or the bootstrap must not regenerate
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/generate.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/generate.tsv"
    threads: 1
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
        generations=[f"{RESULTS}/{{model}}/{{method}}/generations/{b}.jsonl" for b in EVAL_BENCHMARKS],
        meta=f"{RESULTS}/{{model}}/{{method}}/generations/meta.json",  # weights identity, for provenance
        manifest=MANIFEST,
    output:
        [f"{RESULTS}/{{model}}/{{method}}/eval/{b}.json" for b in EVAL_BENCHMARKS],
    params:
        benchmarks=EVAL_BENCHMARKS,
        judges=config["eval"]["judges"],
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
        **JUDGE_LLM_PARAMS,  # endpoint + cache dir, only when eval.judges names an LLM judge
    log:
        f"{LOGS}/{{model}}/{{method}}/judge.log",
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
        model=get_eval_model,
        data=get_capability_data,
        manifest=MANIFEST,
    output:
        f"{RESULTS}/{{model}}/{{method}}/eval/capability.json",
    params:
        capability=CAPABILITY,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/capability.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/capability.tsv"
    threads: 1
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


# Helpfulness: responses to the win-rate prompt sets, then an AlpacaEval-style pairwise win rate
# against winrate.reference with both orders judged (toy world: a local oracle judge over HTTP).
rule helpfulness_generate:
    input:
        model=get_eval_model,
        prompts=WINRATE_PROMPTS,
    output:
        f"{RESULTS}/{{model}}/{{method}}/generations/helpfulness.jsonl",
    params:
        eval=GENERATION_PARAMS,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{method}}/helpfulness_generate.log",
    benchmark:
        f"{BENCH}/{{model}}/{{method}}/helpfulness_generate.tsv"
    threads: 1
    conda:
        "../envs/eval.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/helpfulness_generate.py"


rule winrate:
    input:
        method=f"{RESULTS}/{{model}}/{{compared}}/generations/helpfulness.jsonl",
        reference=f"{RESULTS}/{{model}}/{WINRATE_REFERENCE}/generations/helpfulness.jsonl",
        prompts=WINRATE_PROMPTS,
        manifest=MANIFEST,
    output:
        f"{RESULTS}/{{model}}/{{compared}}/helpfulness/winrate.json",
    params:
        judge=WINRATE.get("judge", {}),
        reference=WINRATE_REFERENCE,
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
        cache_dir=f"{RESULTS}/cache/llm",
    log:
        f"{LOGS}/{{model}}/{{compared}}/winrate.log",
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/winrate.py"


# Agreement of the string-match judges with XSTest's 2,250 human-labelled completions (data.raw_dir).
rule judge_validation:
    input:
        get_judge_validation_data,
    output:
        csv=report(f"{RESULTS}/tables/judge_agreement.csv", caption="../report/judge_agreement.rst", category="Tables"),
        md=f"{RESULTS}/tables/judge_agreement.md",
    params:
        judges=list(VALIDATED_JUDGES),
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
