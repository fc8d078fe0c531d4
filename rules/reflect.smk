# TBR safety reflections: internal (the model itself, few-shot) or external (a teacher over an
# OpenAI-compatible API, cached and retried; in the toy world a local server runs the toy teacher).


rule reflections_internal:
    input:
        model=get_base_model,
        safety=f"{RESULTS}/data/sft_safety.jsonl",
        shots=f"{RESULTS}/data/reflection_fewshot.jsonl",
    output:
        reflections=f"{RESULTS}/{{model}}/reflections/internal.json",
    params:
        compute=COMPUTE_PARAMS,
        tbr=get_reflection_params("internal"),
        template=get_template,
    log:
        f"{LOGS}/{{model}}/reflections_internal.log",
    benchmark:
        f"{BENCH}/{{model}}/reflections_internal.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/reflections_internal.py"


rule reflections_external:
    input:
        unpack(get_external_teacher),
        safety=f"{RESULTS}/data/sft_safety.jsonl",
        shots=f"{RESULTS}/data/reflection_fewshot.jsonl",
    output:
        reflections=f"{RESULTS}/reflections/external.json",
    params:
        tbr=get_reflection_params("external"),
        cache_dir=f"{RESULTS}/cache/llm",
    log:
        f"{LOGS}/reflections_external.log",
    benchmark:
        f"{BENCH}/reflections_external.tsv"
    threads: 1
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/reflections_external.py"
