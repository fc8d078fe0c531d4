# Safety SFT with TRL's SFTTrainer, one run per {model} x {method}: no-safety, STL, STL-aug,
# TBR (reflections before refusals on a proportion gamma) and DCR (STL from the DCR checkpoint).
# Refusal log-odds on three probe sets are tracked during training (tracking.json; rules/tracking.smk).
# Checkpoints go to the sibling <model>.checkpoints, which a killed job leaves behind: the rerun
# (--rerun-incomplete) resumes from the newest complete one.


rule sft:
    input:
        unpack(get_sft_inputs),
        unpack(get_tracking_inputs),
        manifest=MANIFEST,
    output:
        model=directory(f"{RESULTS}/{{model}}/{{trained}}/seed{{seed}}/model"),
        metrics=f"{RESULTS}/{{model}}/{{trained}}/seed{{seed}}/sft_metrics.json",
        tracking=f"{RESULTS}/{{model}}/{{trained}}/seed{{seed}}/tracking.json",
    params:
        compute=COMPUTE_PARAMS,
        method=get_sft_params,
        template=get_template,
        tracking=TRACKING_PARAMS,
    log:
        f"{LOGS}/{{model}}/{{trained}}/seed{{seed}}/sft.log",
    benchmark:
        f"{BENCH}/{{model}}/{{trained}}/seed{{seed}}/sft.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/sft.py"
