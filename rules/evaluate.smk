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
        eval=config["eval"],
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
        [f"{RESULTS}/{{model}}/{{method}}/generations/{b}.jsonl" for b in EVAL_BENCHMARKS],
    output:
        [f"{RESULTS}/{{model}}/{{method}}/eval/{b}.json" for b in EVAL_BENCHMARKS],
    params:
        benchmarks=EVAL_BENCHMARKS,
        judges=config["eval"]["judges"],
        bootstrap=config["eval"]["bootstrap"],
        tags=[config["tbr"]["open_tag"], config["tbr"]["close_tag"]],
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
        model=get_eval_model,
        data=get_capability_data,
    output:
        f"{RESULTS}/{{model}}/{{method}}/eval/capability.json",
    params:
        capability=config["capability"],
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
