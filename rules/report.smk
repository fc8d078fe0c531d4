# Tables in DCR's layout (CSV + Markdown; means over seeds, per-seed rows beside them) and seaborn
# figures, from every judged JSON.
from overrefusal.benchmarks import safety_caption

# What Safety averages: the harmful-suite entries of eval.benchmarks. A param of every rule whose output
# shows Safety, so that its caption (report/*.rst) names the sets of this run, not of another.
SAFETY_SETS = safety_caption(EVAL_BENCHMARKS)


rule tables:
    input:
        evals=get_eval_jsons(),
        capability=get_capability_jsons(),
    output:
        main_csv=report(f"{RESULTS}/tables/main.csv", caption="../report/main_table.rst", category="Tables"),
        main_md=f"{RESULTS}/tables/main.md",
        main_seeds_csv=f"{RESULTS}/tables/main_per_seed.csv",
        main_seeds_md=f"{RESULTS}/tables/main_per_seed.md",
        outcomes_csv=f"{RESULTS}/tables/outcomes.csv",
        outcomes_md=f"{RESULTS}/tables/outcomes.md",
        judges_csv=f"{RESULTS}/tables/judge_pairs.csv",
        judges_md=f"{RESULTS}/tables/judge_pairs.md",
        cap_csv=report(f"{RESULTS}/tables/capability.csv", caption="../report/capability_table.rst", category="Tables"),
        cap_md=f"{RESULTS}/tables/capability.md",
        cap_seeds_csv=f"{RESULTS}/tables/capability_per_seed.csv",
        cap_seeds_md=f"{RESULTS}/tables/capability_per_seed.md",
        summary_csv=report(f"{RESULTS}/tables/summary.csv", caption="../report/summary_table.rst", category="Tables"),
        summary_md=f"{RESULTS}/tables/summary.md",
        summary_seeds_csv=f"{RESULTS}/tables/summary_per_seed.csv",
        summary_seeds_md=f"{RESULTS}/tables/summary_per_seed.md",
    params:
        summary=SUMMARY_REFS,
        bootstrap=config["eval"]["bootstrap"],  # a single run's capability interval, over its questions
        safety=SAFETY_SETS,
    log:
        f"{LOGS}/report/tables.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/tables.py"


# The answer per method: recovery of STL's drop, toxic refusal and capability against STL, paired by seed, a
# verdict each, and whether STL's over-refusal is strong enough for any of it to mean something.
rule verdicts:
    input:
        summary=f"{RESULTS}/tables/summary_per_seed.csv",
    output:
        csv=f"{RESULTS}/tables/verdicts.csv",
        md=report(f"{RESULTS}/tables/verdicts.md", caption="../report/verdicts.rst", category="Tables"),
        png=report(f"{RESULTS}/figures/tradeoff_per_seed.png", caption="../report/verdicts.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/tradeoff_per_seed.pdf",
    params:
        methods=VERDICT_METHODS,
        refs=SUMMARY_REFS,
    log:
        f"{LOGS}/report/verdicts.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/verdicts.py"


localrules:
    verdicts,


# What SCANS and Surgical decided on each seed's checkpoint (their report.json files).
rule intervention_table:
    input:
        get_intervention_reports(),
    output:
        csv=report(f"{RESULTS}/tables/interventions.csv", caption="../report/interventions_table.rst", category="Tables"),
        md=f"{RESULTS}/tables/interventions.md",
    log:
        f"{LOGS}/report/intervention_table.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/intervention_table.py"


localrules:
    intervention_table,


rule figure_compliance:
    input:
        evals=get_eval_jsons(),
    output:
        png=report(f"{RESULTS}/figures/compliance_by_method.png", caption="../report/compliance_by_method.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/compliance_by_method.pdf",
    params:
        safety=SAFETY_SETS,
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
        png=report(f"{RESULTS}/figures/safety_vs_overrefusal.png", caption="../report/safety_vs_overrefusal.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/safety_vs_overrefusal.pdf",
    params:
        safety=SAFETY_SETS,
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


# Each paper table of config/paper_values.yaml (paper_tables.values) in its paper's layout: this run's cells
# (mean over seeds with interval) beside the paper's values and the delta, as CSV, Markdown and LaTeX.
rule paper_tables:
    input:
        main=f"{RESULTS}/tables/main.csv",
        capability=f"{RESULTS}/tables/capability.csv",
        winrate=[f"{RESULTS}/tables/winrate.csv"] if WINRATE_ON else [],
        values=PAPER_VALUES_FILE,
    output:
        [report(f"{RESULTS}/tables/paper/{tid}.md", caption="../report/paper_table.rst", category="Paper tables")
         if ext == "md" else f"{RESULTS}/tables/paper/{tid}.{ext}"
         for tid in PAPER_TABLES for ext in ("csv", "md", "tex")],
    params:
        tables=list(PAPER_TABLES),
        method_kinds={m: config["methods"][m]["kind"] for m in METHODS},
        partial=config["paper_tables"]["partial"],
        safety=SAFETY_SETS,
    log:
        f"{LOGS}/report/paper_tables.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/paper_tables.py"


localrules:
    paper_tables,


# TBR's γ sweep (the proportion of safety refusals given a reflection): the claims against γ, one line per
# reflection source, from the TBR method instances (e.g. tbr_external_g05: {kind: tbr, gamma: 0.5}).
rule figure_tbr_gamma:
    input:
        f"{RESULTS}/tables/summary.csv",
    output:
        png=report(f"{RESULTS}/figures/tbr_gamma.png", caption="../report/sweep.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/tbr_gamma.pdf",
    params:
        methods=TBR_GAMMAS,
    log:
        f"{LOGS}/report/figure_tbr_gamma.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_tbr_gamma.py"


localrules:
    figure_tbr_gamma,


# DCR's hyperparameter sweep (`snakemake --cores all dcr_sweep`): every dcr_sweep.settings entry as a
# DCR method over every seed, judged like the main run, one row each beside STL and no-safety.
rule dcr_sweep:
    input:
        unpack(get_sweep_inputs),
    output:
        csv=f"{RESULTS}/tables/dcr_sweep.csv",
        md=f"{RESULTS}/tables/dcr_sweep.md",
        seeds_csv=f"{RESULTS}/tables/dcr_sweep_per_seed.csv",
        seeds_md=f"{RESULTS}/tables/dcr_sweep_per_seed.md",
        layer_png=report(f"{RESULTS}/figures/dcr_sweep_layer.png", caption="../report/sweep.rst", category="Figures"),
        layer_pdf=f"{RESULTS}/figures/dcr_sweep_layer.pdf",
    params:
        settings={f"dcrsweep_{k}": v for k, v in SWEEP.items()},
        defaults={k: config["dcr"][k] for k in ("layer", "steps", "lr", "batch_size", "margin", "scale", "pooling",
                                                 "train_embeddings", "lm_weight")},
        summary=SUMMARY_REFS,
    log:
        f"{LOGS}/report/dcr_sweep.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/dcr_sweep_table.py"


# Settings chosen on tuning parts (`snakemake --cores all tune`): one table per tune grid, every setting and
# seed judged on the tuning parts of tune.benchmarks, never on an evaluated prompt.
rule tune_table:
    input:
        unpack(get_tune_inputs),
    output:
        csv=f"{RESULTS}/tuning/{{grid}}.csv",
        md=f"{RESULTS}/tuning/{{grid}}.md",
    params:
        settings=get_tune_settings,
    log:
        f"{LOGS}/report/tune_{{grid}}.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/tune_table.py"


localrules:
    tune_table,
    dcr_sweep,
    tables,
    winrate_table,
    figure_compliance,
    figure_safety_tradeoff,


# A seeded sample of judged generations per method and benchmark, first seed only, beside the tables.
rule samples:
    input:
        get_sample_jsons,
    output:
        f"{RESULTS}/samples.md",
    params:
        samples=config["samples"],
    log:
        f"{LOGS}/report/samples.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/samples.py"


localrules:
    samples,


# The pages' blocks (<!-- results: <path> --> ... <!-- /results -->, README.md and docs/*.md) show the committed
# copies in results/published/<name>/, which no run writes (overrefusal.report.readme). `snakemake readme` previews
# the pages with this run's files, under results/<name>/readme/, and touches no tracked file; `snakemake publish`
# is the one target that does: it copies this run's tables and figures there and renders the pages from them.
from overrefusal.report.readme import PUBLISHED, pages as readme_pages, run_files as readme_run_files

if config["name"] == Path(PUBLISHED).name:
    raise ValueError(f"name: {config['name']!r} is taken by {PUBLISHED}/, the committed copies; choose another name")

README_PAGES = [p.relative_to(workflow.basedir).as_posix() for p in readme_pages(Path(workflow.basedir)) if p.is_file()]
# What the pages show of this run, less the sweep's table, a target of its own: the preview keeps its
# published body unless this tree holds a sweep.
README_FILES = [f for f in readme_run_files(Path(workflow.basedir), config["name"])
                if f not in set(rules.dcr_sweep.output)]


rule readme:
    input:
        README_FILES,
    output:
        [f"{RESULTS}/readme/{page}" for page in README_PAGES],
    params:
        root=workflow.basedir,
        pages=README_PAGES,
        name=config["name"],
    log:
        f"{LOGS}/report/readme.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/render_readme.py"


rule publish:
    input:
        get_final_outputs(),
    output:
        f"{RESULTS}/published.txt",
    params:
        root=workflow.basedir,
        pages=README_PAGES,
        name=config["name"],
    log:
        f"{LOGS}/report/publish.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/publish.py"


# One tune grid's table (`snakemake --cores all publish_tune` for every grid): settings are chosen, and committed,
# before the study's runs exist, and grid by grid, since the DCR and intervention grids run on the STL that the
# stl-mix grid chose (`.../published_tune/<grid>.txt` publishes one).
rule publish_tune_grid:
    input:
        get_tune_grid_tables,
    output:
        f"{RESULTS}/published_tune/{{grid}}.txt",
    params:
        root=workflow.basedir,
        pages=README_PAGES,
        name=config["name"],
        parts=get_tune_grid_parts,
        record=get_tune_grid_record,
    log:
        f"{LOGS}/report/publish_tune_{{grid}}.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/publish.py"


# A run in parts (docs/study.md, "Parts"): `snakemake ... results/<name>/parts/seed<k>-<i>.json` makes the runs
# of method group i (handover.parts) on seed k and publishes each into results/published/<name>/runs/, for
# committing; with handover.reuse on, later parts and the final tables read them from there.
rule publish_run:
    input:
        get_publish_run_inputs,
    output:
        f"{RESULTS}/published_runs/{{model}}/{{method}}/seed{{seed}}.json",
    params:
        run=get_publish_run_params,
    log:
        f"{LOGS}/report/publish_run_{{model}}_{{method}}_seed{{seed}}.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    wildcard_constraints:
        method="|".join(METHODS),
    script:
        "../scripts/publish_run.py"


rule part:
    input:
        get_part_inputs,
    output:
        f"{RESULTS}/parts/{{part}}.json",
    params:
        runs=get_part_params,
        published=f"{PUBLISHED_ROOT}/parts",
    log:
        f"{LOGS}/report/part_{{part}}.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    wildcard_constraints:
        part="|".join(PARTS) or "NONE",
    script:
        "../scripts/part.py"


localrules:
    readme,
    publish,
    publish_tune_grid,
    publish_run,
    part,


# GPU memory of DCR's stage and of SFT for every GPU preset (docs/cluster.md, "Memory"): parameter counts from the
# models' config.json dimensions, no download. Not part of `all`: `snakemake --cores 1 memory_estimate`.
from overrefusal.config import preset_files

MEMORY_PRESETS = ["dcr_llama3-8b", "dcr_qwen2.5-1.5b", "dcr_qwen2.5-7b", "tbr"]
rule memory_estimate:
    input:
        files=sorted({f for name in MEMORY_PRESETS for f in preset_files(name)}),
        base="config.yaml",  # the file, not this run's (merged) config
    output:
        "results/memory/presets.md",
    params:
        presets=MEMORY_PRESETS,
    log:
        "logs/memory/presets.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/memory_estimate.py"


localrules:
    memory_estimate,
