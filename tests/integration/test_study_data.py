"""The study overlay (config/presets/smol_study.yaml): its data jobs, and its data built on the mirror."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from overrefusal.data import SOURCES, stage_source
from overrefusal.data.plan import plan, source_of
from overrefusal.data.splits import build_splits, write_eval_set
from overrefusal.data.text import normalise
from overrefusal.judge_validation import default_data_dir
from overrefusal.records import read_records
from tests.pipeline import copy_workflow, jobs_in_dry_run, preset_config, snakemake

pytestmark = pytest.mark.integration
DATA = default_data_dir()
needs_mirror = pytest.mark.skipif(DATA is None or not Path(DATA).is_dir(),
                                  reason="no local data mirror (set OVERREFUSAL_DATA_DIR or provide ../shared/data)")
STUDY = ["config/presets/smol.yaml", "config/presets/smol_study.yaml"]


@needs_mirror
def test_study_dry_run_cuts_the_tuning_parts_before_the_splits_and_tunes_on_them_alone(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    repo = Path(__file__).resolve().parents[2]
    # smol.yaml's judge reference, and the validated judge the study judges with (both committed)
    for d in ("results/judges/refusal_clf_v1", "results/published/smol/judges/refusal_clf_v2"):
        shutil.copytree(repo / d, wf / d, dirs_exist_ok=True)
    r = snakemake(wf, "-n", "results/smol-study/data/data_card.md", "tune", "--configfile", *STUDY,
                  "--config", f"data={{raw_dir: {Path(DATA).resolve()}}}", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = jobs_in_dry_run(r.stdout)
    assert jobs.get("real_tuned_eval_set") == 4  # XSTest-safe, CoCoNot contrast, OKTest, AdvBench
    assert jobs.get("real_eval_set") == 7 and jobs.get("real_splits") == 1 and jobs.get("real_data_card") == 1
    for b in ("xstest_safe", "coconot_contrast", "oktest", "advbench"):
        assert f"results/smol-study/data/tuning/{b}.jsonl" in r.stdout
    # five grids, seed 0 only: STL's mix (6 settings), DCR (5), TBR's gamma (2), and SCANS (3) and Surgical (2)
    # fitted on the study's own STL checkpoint, which is trained for them; every setting answers and is judged on
    # the tuning parts only
    assert (jobs.get("sft"), jobs.get("dcr_contrastive"), jobs.get("intervention")) == (6 + 5 + 2 + 1, 5, 3 + 2)
    assert (jobs.get("tune_generate"), jobs.get("tune_judge"), jobs.get("tune_table")) == (18, 18, 5)
    assert "train_learned_judge" not in jobs and "generate" not in jobs and "judge" not in jobs
    assert "results/smol-study/smollm2-135m/tune_stl-mix_s100-g300/seed0/tuning/eval/advbench.json" in r.stdout


@needs_mirror
def test_study_data_holds_no_evaluated_prompt_in_the_contrastive_split(tmp_path):
    cfg = preset_config("smol", "smol_study")
    real, benches = cfg["data"]["real"], cfg["eval"]["benchmarks"]
    p = plan(real, str(DATA), benches)
    staged = {s: stage_source(SOURCES[s], raw_dir=str(DATA), download_dir=None) for s in p["stage"]
              if s not in p["missing"]}
    paths = {}
    for s, st in staged.items():
        paths[s] = tmp_path / "staged" / f"{s}.json"
        paths[s].parent.mkdir(parents=True, exist_ok=True)
        paths[s].write_text(json.dumps(st))
    evals, tuning, written = {}, {}, {}
    for b in benches:
        evals[b] = str(tmp_path / "eval" / f"{b}.jsonl")
        over = {k: real[k] for k in ("xstest_heldout", "harmbench_functional", "eval_subset") if k in real}
        if b in real["tuning"]:  # what rule real_tuned_eval_set passes (rules/common.smk, get_tuned_eval_params)
            tuning[b] = str(tmp_path / "tuning" / f"{b}.jsonl")
            over.update(tuning={b: real["tuning"][b]}, leakage={"near_threshold": real["leakage"]["near_threshold"]})
        # and, for a tuned benchmark, every other evaluated benchmark's source (get_other_evaluated)
        others = {o: staged[p["benchmarks"][o]] for o in benches if o != b} if b in tuning else None
        written[b] = write_eval_set(b, staged[p["benchmarks"][b]], over, evals[b], str(tmp_path / f"{b}.json"),
                                    tuning.get(b), others=others)
    assert written == {"xstest_safe": 150, "coconot_contrast": 303, "oktest": 240, "orbench_hard": 500, "phtest": 500,
                       "xstest_unsafe": 200, "advbench": 100, "harmbench": 100, "jailbreakbench": 100,
                       "maliciousinstruct": 100, "strongreject": 100}
    split_staged = {s: str(paths[s]) for s in {source_of(x["source"])[0] for x in p["splits"].values()}
                    | set(p["capability"])}
    manifest = build_splits({"real": real, "plan": p, "tuning_files": tuning}, split_staged, evals,
                            str(tmp_path / "data"), str(tmp_path / "leak.csv"), str(tmp_path / "leak.md"),
                            str(tmp_path / "leak.json"), str(tmp_path / "data" / "manifest.json"), workers=2)
    evaluated = {normalise(r["prompt"]) for b in benches for r in read_records(evals[b])}
    contrast = read_records(tmp_path / "data" / "contrastive.jsonl")
    seemingly = [r for r in contrast if r["label"] == "seemingly_toxic"]
    assert len(seemingly) == 100 and not {normalise(r["prompt"]) for r in contrast} & evaluated
    assert manifest["notes"]["from_tuning_part"] == {"contrastive_seemingly": {"benchmark": "xstest_safe",
                                                                              "n_part": 100}}
