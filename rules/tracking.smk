# Refusal-probability curves: the refusal probability (or log-odds) at the last prompt position on three probe sets
# (seemingly toxic, toxic, general), logged during DCR's contrastive stage and safety SFT by rules
# dcr_contrastive and sft (tracking.json next to their models; inputs from get_tracking_inputs in
# rules/common.smk), drawn one panel per method.


rule figure_refusal_dynamics:
    input:
        tracking=get_tracking_jsons(),
    output:
        png=report(f"{RESULTS}/figures/refusal_dynamics.png", caption="../report/refusal_dynamics.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/refusal_dynamics.pdf",
    params:
        scale=TRACKING["plot_scale"],
    log:
        f"{LOGS}/report/figure_refusal_dynamics.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_refusal_dynamics.py"


localrules:
    figure_refusal_dynamics,
