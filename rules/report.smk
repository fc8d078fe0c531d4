# Tables in DCR's layout (CSV + Markdown) and seaborn figures, from every judged JSON.


rule tables:
    input:
        evals=get_eval_jsons(),
        capability=get_capability_jsons(),
    output:
        main_csv=report(f"{RESULTS}/tables/main.csv", caption="../report/main_table.rst", category="Tables"),
        main_md=f"{RESULTS}/tables/main.md",
        cap_csv=report(f"{RESULTS}/tables/capability.csv", caption="../report/capability_table.rst", category="Tables"),
        cap_md=f"{RESULTS}/tables/capability.md",
    log:
        f"{LOGS}/report/tables.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/tables.py"


rule figure_compliance:
    input:
        evals=get_eval_jsons(),
    output:
        report(f"{RESULTS}/figures/compliance_by_method.png", caption="../report/compliance_by_method.rst", category="Figures"),
    log:
        f"{LOGS}/report/figure_compliance.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_compliance.py"


rule figure_safety_tradeoff:
    input:
        evals=get_eval_jsons(),
    output:
        report(f"{RESULTS}/figures/safety_vs_overrefusal.png", caption="../report/safety_vs_overrefusal.rst", category="Figures"),
    log:
        f"{LOGS}/report/figure_safety_tradeoff.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_safety_tradeoff.py"


rule winrate_table:
    input:
        get_winrate_jsons(),
    output:
        csv=report(f"{RESULTS}/tables/winrate.csv", caption="../report/winrate_table.rst", category="Tables"),
        md=f"{RESULTS}/tables/winrate.md",
    params:
        reference=WINRATE_REFERENCE,
    log:
        f"{LOGS}/report/winrate_table.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/winrate_table.py"


localrules:
    all,
    tables,
    winrate_table,
    figure_compliance,
    figure_safety_tradeoff,
