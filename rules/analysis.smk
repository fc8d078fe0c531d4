# The papers' analyses of why a method works, on every training seed's checkpoints (analysis.seeds) and
# the tracking probe sets: DCR's empirical NTK between prompt classes and its layer-wise separability
# of seemingly toxic and toxic activations, TBR's token attribution of the refusal log-odds.
# One job per (model, analysis) loads each seed's checkpoints in turn (one start-up, not one per seed);
# rule analysis_report draws the tables (means over seeds with t intervals) and figures.


rule analysis:
    input:
        unpack(get_probe_inputs),
        manifest=MANIFEST,
        checkpoints=get_analysis_checkpoints,
    output:
        f"{RESULTS}/{{model}}/analysis/{{analysis}}.json",
    params:
        settings=get_analysis_params,
        compute=COMPUTE_PARAMS,
        template=get_template,
    log:
        f"{LOGS}/{{model}}/analysis/{{analysis}}.log",
    benchmark:
        f"{BENCH}/{{model}}/analysis/{{analysis}}.tsv"
    threads: COMPUTE["threads"]
    conda:
        "../envs/analysis.yaml"
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    wildcard_constraints:
        analysis="|".join(ANALYSES),
    script:
        "../scripts/analysis.py"


rule analysis_report:
    input:
        get_analysis_jsons,
    output:
        csv=report(f"{RESULTS}/tables/{{analysis}}.csv", caption="../report/analysis.rst", category="Analyses",
                   subcategory="{analysis}"),
        md=f"{RESULTS}/tables/{{analysis}}.md",
        png=report(f"{RESULTS}/figures/{{analysis}}.png", caption="../report/analysis.rst",
                   category="Analyses", subcategory="{analysis}"),
        pdf=f"{RESULTS}/figures/{{analysis}}.pdf",
    log:
        f"{LOGS}/report/analysis_{{analysis}}.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    wildcard_constraints:
        analysis="|".join(ANALYSES),
    script:
        "../scripts/analysis_report.py"


localrules:
    analysis_report,
