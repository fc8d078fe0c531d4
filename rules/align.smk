# Safety SFT with TRL's SFTTrainer, one run per {model} x {method}: no-safety, STL, STL-aug,
# TBR (reflections before refusals on a proportion gamma) and DCR (STL from the DCR checkpoint).


rule sft:
    input:
        unpack(get_sft_inputs),
    output:
        model=directory(f"{RESULTS}/{{model}}/{{trained}}/model"),
        metrics=f"{RESULTS}/{{model}}/{{trained}}/sft_metrics.json",
    params:
        method=params_of,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{trained}}/sft.log",
    benchmark:
        f"{BENCH}/{{model}}/{{trained}}/sft.tsv"
    threads: 1
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/sft.py"
