# Real public data (data.source: real): staging of every source (local mirror data.raw_dir, or a
# pinned, checksummed download), evaluation sets, the curated paper splits with leakage checks, and
# the data card. Output names are the toy world's, so every downstream rule works unchanged.
# Nothing below is defined for the toy world (data.source: toy).
import sys as _sys

from overrefusal.data.plan import missing_message

# REAL, REAL_PLAN and the input functions live in rules/common.smk.
if REAL is not None:
    if REAL_PLAN["missing"]:
        print(missing_message(REAL_PLAN), file=_sys.stderr)

    localrules:
        stage_real_source,
        stage_real_data,

    wildcard_constraints:
        real_source="|".join(REAL_PLAN["stage"]),

    rule stage_real_data:
        """Stage every source the run needs (run this on a login node when downloads are on)."""
        input:
            [staged_json(s) for s in REAL_PLAN["stage"]],

    rule stage_real_source:
        input:
            get_stage_inputs,
        output:
            f"{RESULTS}/data/staged/{{real_source}}.json",
        params:
            raw_dir=config["data"].get("raw_dir"),
            stage=REAL_STAGE,
        log:
            f"{LOGS}/data/stage_{{real_source}}.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=1000,
            runtime=60,
        script:
            "../scripts/stage_real_source.py"

    rule real_eval_set:
        input:
            staged=get_eval_staged,
        output:
            records=f"{RESULTS}/data/eval/{{benchmark}}.jsonl",
            report=f"{RESULTS}/data/reports/eval_{{benchmark}}.json",
        wildcard_constraints:
            benchmark="|".join(REAL_UNTUNED) or "NONE",
        params:
            real=REAL_EVAL,
        log:
            f"{LOGS}/data/eval_{{benchmark}}.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/real_eval_set.py"

    rule real_tuned_eval_set:
        """A benchmark with data.real.tuning: its tuning part and the evaluation part it leaves (runs before
        real_splits, and so before any model job)."""
        input:
            staged=get_eval_staged,
            others=get_other_staged,
        output:
            records=f"{RESULTS}/data/eval/{{benchmark}}.jsonl",
            tuning=f"{RESULTS}/data/tuning/{{benchmark}}.jsonl",
            report=f"{RESULTS}/data/reports/eval_{{benchmark}}.json",
        wildcard_constraints:
            benchmark="|".join(REAL_TUNED) or "NONE",
        params:
            real=get_tuned_eval_params,
            # the other evaluated benchmarks, whose prompts stay out of this tuning part
            others=get_other_evaluated,
        log:
            f"{LOGS}/data/eval_{{benchmark}}.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/real_eval_set.py"

    rule real_splits:
        input:
            unpack(get_real_split_inputs),
        output:
            [f"{RESULTS}/data/{s}.jsonl" for s in SPLITS],
            f"{RESULTS}/data/pretrain.jsonl",
            f"{RESULTS}/data/general_heldout.jsonl",
            [f"{RESULTS}/data/capability/{t}.jsonl" for t in list(REAL.get("capability", {})) + REAL_TOY_CAPABILITY],
            manifest=MANIFEST,
            leakage_csv=f"{RESULTS}/tables/leakage.csv",
            leakage_md=f"{RESULTS}/tables/leakage.md",
            leakage_json=f"{RESULTS}/data/leakage.json",
        params:
            real=REAL,
            plan=REAL_PLAN,
            unchecked=REAL_UNCHECKED,
            toy=config["data"]["toy"] if REAL_TOY_CAPABILITY else {},
            toy_capability=REAL_TOY_CAPABILITY,
        log:
            f"{LOGS}/data/real_splits.log",
        benchmark:
            f"{BENCH}/data/real_splits.tsv"
        threads: 2
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../scripts/real_splits.py"

    rule real_data_card:
        input:
            unpack(get_real_card_inputs),
        output:
            md=f"{RESULTS}/data/data_card.md",
            json=f"{RESULTS}/data/data_card.json",
        log:
            f"{LOGS}/data/real_data_card.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/real_data_card.py"
