# The DCR paper's inference-time baselines on another method's checkpoint (methods.<name>.apply_to, the
# paper: STL), once per seed: SCANS steering vectors and Surgical's false-refusal direction, fitted from
# the contrastive split (toxic and seemingly toxic prompts) and the general SFT prompts. Rules generate
# and capability then run that checkpoint with the intervention's hooks (input `intervention`).


rule intervention:
    input:
        model=get_intervened_model,
        contrastive=f"{RESULTS}/data/contrastive.jsonl",
        general=f"{RESULTS}/data/sft_general.jsonl",
        refusals=f"{RESULTS}/data/sft_safety.jsonl",  # the refusal tokens of Surgical's refusal score
        manifest=MANIFEST,
    output:
        vectors=f"{RESULTS}/{{model}}/{{intervention}}/seed{{seed}}/intervention/vectors.safetensors",
        report=f"{RESULTS}/{{model}}/{{intervention}}/seed{{seed}}/intervention/report.json",
    params:
        compute=COMPUTE_PARAMS,
        intervention=get_intervention_params,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/{{intervention}}/seed{{seed}}/intervention.log",
    benchmark:
        f"{BENCH}/{{model}}/{{intervention}}/seed{{seed}}/intervention.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/eval.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/intervention.py"
