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


# DCR's kernel curves: the normalised eNTK between the probe sets over the same training steps (tracking.kernel).
rule figure_kernel_dynamics:
    input:
        tracking=get_tracking_jsons(),
    output:
        png=report(f"{RESULTS}/figures/kernel_dynamics.png", caption="../report/kernel_dynamics.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/kernel_dynamics.pdf",
        csv=report(f"{RESULTS}/tables/kernel_dynamics.csv", caption="../report/kernel_dynamics.rst", category="Tables"),
        md=f"{RESULTS}/tables/kernel_dynamics.md",
    log:
        f"{LOGS}/report/figure_kernel_dynamics.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_kernel_dynamics.py"


localrules:
    figure_kernel_dynamics,
