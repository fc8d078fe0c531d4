# Reproduce TBR (arXiv 2503.17882) and DCR (arXiv 2603.03323): see README.md.
# The default config (config.yaml) is the offline toy world.
from snakemake.utils import min_version

min_version("9.0")

configfile: "config.yaml"

report: "report/workflow.rst"

include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/real_data.smk"
include: "rules/model.smk"
include: "rules/reflect.smk"
include: "rules/dcr.smk"
include: "rules/align.smk"
include: "rules/intervention.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/tracking.smk"
include: "rules/analysis.smk"


rule all:
    input:
        get_final_outputs(),
        get_real_data_outputs(),
    default_target: True


# Settings chosen on tuning parts, every tune grid's table (rules tune_generate, tune_judge, tune_table)
rule tune:
    input:
        get_tune_outputs(),


rule publish_tune:
    input:
        get_published_tune(),


localrules:
    all,
    tune,
    publish_tune,


# Local runs: script jobs fork from one interpreter that has imported torch and transformers once
# (overrefusal.warm_start; OVERREFUSAL_WARM_START=0 switches it off).
onstart:
    start_warm_start()


onsuccess:
    stop_warm_start()


onerror:
    stop_warm_start()
