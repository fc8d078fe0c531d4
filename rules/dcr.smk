# DCR's contrastive refinement: Circle loss on the layer-l representation of seemingly toxic vs
# toxic prompts, forward truncated at l, later layers frozen, class-weighted sampling. The refusal
# log-odds are tracked with a full forward under no_grad (measurement only; rules/tracking.smk).


rule dcr_contrastive:
    input:
        unpack(get_tracking_inputs),
        manifest=MANIFEST,
        model=get_base_model,
        contrastive=f"{RESULTS}/data/contrastive.jsonl",
        general=f"{RESULTS}/data/sft_general.jsonl",  # read only by the dcr.lm_weight > 0 variant
    output:
        model=directory(f"{RESULTS}/{{model}}/{{dcr_method}}/seed{{seed}}/dcr/model"),
        metrics=f"{RESULTS}/{{model}}/{{dcr_method}}/seed{{seed}}/dcr/metrics.json",
        tracking=f"{RESULTS}/{{model}}/{{dcr_method}}/seed{{seed}}/dcr/tracking.json",
    params:
        compute=COMPUTE_PARAMS,
        dcr=get_dcr_params,
        template=get_template,
        tracking=TRACKING_PARAMS,
    log:
        f"{LOGS}/{{model}}/{{dcr_method}}/seed{{seed}}/dcr_contrastive.log",
    benchmark:
        f"{BENCH}/{{model}}/{{dcr_method}}/seed{{seed}}/dcr_contrastive.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/dcr_contrastive.py"
