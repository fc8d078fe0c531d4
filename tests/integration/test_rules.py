"""Every rule of the real workflow, run by Snakemake on a tiny world (tests/fixtures/tiny_config.yaml)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.integration.shared_run import TINY, R, TinyRun
from tests.pipeline import REPO, copy_workflow, jobs_in_dry_run, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = "seed3"  # tests/fixtures/tiny_config.yaml: seeds: [3]
# config.yaml's methods: base, 6 trained ones, and the interventions scans and surgical on stl's checkpoint.
EVALUATED = 9


@pytest.fixture(scope="module")
def tiny(tiny_run: TinyRun) -> Path:
    """The copy of the session's full tiny run (tests/integration/shared_run.py), shared with test_determinism."""
    return tiny_run.work


def _json(work: Path, rel: str) -> dict:
    return json.loads((work / R / rel).read_text())


def test_toy_world_manifest_matches_files(tiny: Path) -> None:
    from overrefusal.io import sha256_file

    manifest = _json(tiny, "data/manifest.json")
    for split, entry in manifest["files"].items():
        path = tiny / R / "data" / f"{split}.jsonl"
        assert sha256_file(path) == entry["sha256"], split
        assert sum(1 for line in path.open() if line.strip()) == entry["n"], split


def test_base_model_loads_like_a_hub_checkpoint(tiny: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base = tiny / R / "models/toy-llama/base"
    cfg = AutoConfig.from_pretrained(base)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 2
    AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    assert "<|assistant|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                      add_generation_prompt=True)


def test_reflections_internal_and_external(tiny: Path) -> None:
    n = _json(tiny, "data/manifest.json")["files"]["sft_safety"]["n"]
    internal = _json(tiny, "toy-llama/reflections/internal.json")
    external = _json(tiny, "reflections/external.json")
    assert len(internal["raw"]) == len(external["raw"]) == n
    assert external["usage"]["requests_sent"] == n  # real HTTP requests to the local teacher server
    assert sum(external["filter"].values()) == n


def test_external_reflections_rerun_pays_nothing(tiny: Path, tmp_path: Path) -> None:
    # In a copy (mtimes kept), so forcing this rule does not make the shared run stale.
    work = Path(shutil.copytree(tiny, tmp_path / "wf", symlinks=True))
    # Targets go first: --configfile and --forcerun take several values each.
    proc = snakemake(work, f"{R}/reflections/external.json", "--cores", "1", "--configfile", TINY,
                     "--forcerun", "reflections_external")
    assert proc.returncode == 0, proc.stderr[-3000:]
    usage = _json(work, "reflections/external.json")["usage"]
    assert usage["requests_sent"] == 0 and usage["cache_hits"] > 0


def test_dcr_and_sft_outputs(tiny: Path) -> None:
    dcr = _json(tiny, f"toy-llama/dcr_stl/{S}/dcr/metrics.json")
    assert dcr["layer"] == 0 and dcr["steps"] == 3 and dcr["seed"] == 3
    for method in ("no_safety", "stl", "stl_aug", "tbr_internal", "tbr_external", "dcr_stl"):
        m = _json(tiny, f"toy-llama/{method}/{S}/sft_metrics.json")
        assert m["global_step"] == 4 and m["method"]["sft"]["seed"] == 3, method
        assert (tiny / R / f"toy-llama/{method}/{S}/model/config.json").exists()
        assert not (tiny / R / f"toy-llama/{method}/{S}/model.checkpoints").exists()
    stl = _json(tiny, f"toy-llama/stl/{S}/sft_metrics.json")["data"]
    aug = _json(tiny, f"toy-llama/stl_aug/{S}/sft_metrics.json")["data"]
    assert set(aug["n_by_split"]) == set(stl["n_by_split"]) | {"sft_aug"}


def test_refusal_tracking_curves(tiny: Path) -> None:
    schema = json.loads((REPO / "src/overrefusal/schemas/refusal_tracking.schema.json").read_text())
    docs = {p.relative_to(tiny / R).as_posix(): json.loads(p.read_text()) for p in (tiny / R).glob("toy-llama/**/tracking.json")}
    assert len(docs) == 6 + 1  # every SFT run and DCR's contrastive stage
    for doc in docs.values():
        jsonschema.validate(doc, schema)
        assert doc["records"][0]["step"] == 0 and doc["records"][-1]["step"] == doc["total_steps"]
    # DCR's refined model is where its SFT starts: the curves join.
    end = [r["mean_logodds"] for r in docs[f"toy-llama/dcr_stl/{S}/dcr/tracking.json"]["records"] if r["step"] == 3]
    start = [r["mean_logodds"] for r in docs[f"toy-llama/dcr_stl/{S}/tracking.json"]["records"] if r["step"] == 0]
    assert end == pytest.approx(start, abs=1e-5)
    assert (tiny / R / "figures/refusal_dynamics.png").stat().st_size > 1000
    # the kernel curves: measured at step 0 and the last step of every run, drawn and tabulated
    for doc in docs.values():
        steps = [r["step"] for r in doc["kernel"]["records"]]
        assert steps[0] == 0 and steps[-1] == doc["total_steps"]
    assert (tiny / R / "figures/kernel_dynamics.pdf").read_bytes()[:5] == b"%PDF-"
    assert r"ST\|T change" in (tiny / R / "tables/kernel_dynamics.md").read_text()


def test_eval_jsons_and_capability_valid(tiny: Path) -> None:
    schema = json.loads((REPO / "src/overrefusal/schemas/benchmark_result.schema.json").read_text())
    cap_schema = json.loads((REPO / "src/overrefusal/schemas/capability.schema.json").read_text())
    evals = sorted((tiny / R).glob(f"toy-llama/*/{S}/eval/*.json"))
    assert len(evals) == EVALUATED * 13
    for p in evals:
        jsonschema.validate(json.loads(p.read_text()), cap_schema if p.name == "capability.json" else schema)


def _dry_run_jobs(work: Path, override: dict) -> dict[str, int]:
    extra = work / "override.yaml"
    extra.write_text(yaml.safe_dump(override))
    proc = snakemake(work, "-n", "--configfile", TINY, str(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return jobs_in_dry_run(proc.stdout)


def test_nothing_to_do_after_a_finished_run(tiny: Path) -> None:
    proc = snakemake(tiny, "-n", "--configfile", TINY)
    assert proc.returncode == 0 and jobs_in_dry_run(proc.stdout) == {}, proc.stdout[-2000:]


REPORT = {"tables": 1, "paper_tables": 1, "figure_compliance": 1, "figure_safety_tradeoff": 1, "samples": 1,
          "verdicts": 1, "all": 1}
TRACKING_FIG = {"figure_refusal_dynamics": 1, "figure_kernel_dynamics": 1}  # a retrained method: new curves
WINRATE = {"winrate": 1, "winrate_table": 1, "paper_tables": 1}  # per retrained method (tables: once)
INTERVENTION = {"intervention": 1, "intervention_table": 1}  # per refitted intervention (table: once)
COMPARED = EVALUATED - 1  # win rates: every method but the reference (stl)
# The analyses that read a retrained checkpoint (rule analysis per model and analysis, and its table): a TBR
# checkpoint is in separability and attribution, a DCR one (its stage too) also in the eNTK; every SFT run: all 3.
def analyses(n: int) -> dict[str, int]:
    return {"analysis": n, "analysis_report": n}


# One retrained method (TBR with either reflection source, DCR): its SFT, evaluation and win rate.
ONE_METHOD = {"sft": 1, "generate": 1, "judge": 1, "capability": 1, **REPORT, **WINRATE, **TRACKING_FIG}
ONE_TBR, ONE_DCR = {**ONE_METHOD, **analyses(2)}, {**ONE_METHOD, **analyses(3)}
# One refitted intervention: its evaluation and win rate, no training.
ONE_INTERVENTION = {**INTERVENTION, "generate": 1, "judge": 1, "capability": 1, **REPORT, **WINRATE}
# Every SFT run (6 methods), so the 2 interventions on stl's new checkpoint too: everything evaluated but base,
# and every win rate, base's included, as the reference (stl) is retrained.
EVERY_SFT = {"sft": 6, **INTERVENTION, "intervention": 2, "generate": EVALUATED - 1, "judge": EVALUATED - 1,
             "capability": EVALUATED - 1, **REPORT, **WINRATE, "winrate": COMPARED, **TRACKING_FIG, **analyses(3)}
# A new base model: every stage after it, the base method's own evaluation and both reflection sources.
FROM_BASE = {"pretrain_base": 1, "toy_teacher": 1, "reflections_internal": 1, "reflections_external": 1,
             "dcr_contrastive": 1, **EVERY_SFT, "generate": EVALUATED, "judge": EVALUATED, "capability": EVALUATED}

@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param({"dcr": {"layer": 1}}, {"dcr_contrastive": 1, **ONE_DCR}, id="dcr-layer"),
        pytest.param({"eval": {"judges": {"harmful": "xstest_strmatch_v1"}}}, {"judge": EVALUATED, **REPORT},
                     id="judge"),
        # one benchmark's own judge: the judging jobs (one per run, every benchmark) and the reports
        pytest.param({"eval": {"judges": {"orbench_hard": "xstest_strmatch_v1"}}}, {"judge": EVALUATED, **REPORT},
                     id="judge-one-benchmark"),
        # a benchmark key naming the judge its suite gives it anyway changes no resolved judge: nothing reruns
        pytest.param({"eval": {"judges": {"orbench_hard": "toy_outcome_v1"}}}, {}, id="judge-benchmark-key-no-change"),
        # judge validation runs only with data.raw_dir (null here): its settings rerun nothing
        pytest.param({"eval": {"judge_validation": {"judges": ["xstest_strmatch_v1"]}}}, {},
                     id="judge-validation-without-raw-dir"),
        # SFT's learning rate: every SFT run and what follows it, but neither DCR's stage nor the teacher
        pytest.param({"sft": {"lr": 5.0e-4}}, EVERY_SFT, id="sft-lr"),
        pytest.param({"tbr": {"gamma": 0.5}}, {"sft": 2, "generate": 2, "judge": 2, "capability": 2, **REPORT,
                                               **WINRATE, "winrate": 2, **TRACKING_FIG, **analyses(2)}, id="gamma"),
        # threads are not a param: no output depends on them
        pytest.param({"compute": {"threads": 2}}, {}, id="threads"),
        # the sample of responses is read by the samples rule alone
        pytest.param({"samples": {"n": 3}}, {"samples": 1, "all": 1}, id="samples"),
        # The toy world is one job (one seeded generator draws every split in turn, so a size shifts the splits
        # after it): every file is new, and so is everything after it.
        pytest.param({"data": {"toy": {"sft_aug": 6}}}, {"toy_world": 1, "train_tokenizer": 1, **FROM_BASE},
                     id="data-toy-size"),
        # pretraining: everything after the base model, not the data or the tokenizer
        pytest.param({"models": {"toy-llama": {"pretrain": {"steps": 10}}}}, FROM_BASE, id="pretrain-steps"),
        # the teacher: external reflections and the external-TBR method, not internal reflections
        pytest.param({"teacher": {"lr": 1.0e-3}}, {"toy_teacher": 1, "reflections_external": 1, **ONE_TBR},
                     id="teacher-lr"),
        # SFT settings the teacher trains with too (all but lr and epochs): it and external reflections rerun
        # with every SFT run, but not DCR's stage or internal reflections
        pytest.param({"sft": {"max_length": 96}}, {"toy_teacher": 1, "reflections_external": 1, **EVERY_SFT},
                     id="sft-max-length"),
        # the quality filter of both reflection sources: both TBR methods, not the teacher
        pytest.param({"tbr": {"min_kept": 0.1}},
                     {"reflections_internal": 1, "reflections_external": 1, **ONE_TBR, "sft": 2, "generate": 2,
                      "judge": 2, "capability": 2, "winrate": 2}, id="tbr-min-kept"),
        pytest.param({"tbr": {"internal": {"max_new_tokens": 10}}}, {"reflections_internal": 1, **ONE_TBR},
                     id="tbr-internal-tokens"),
        pytest.param({"tbr": {"external": {"max_tokens": 10}}}, {"reflections_external": 1, **ONE_TBR},
                     id="tbr-external-tokens"),
        # DCR's own settings: its stage and its SFT run only (other methods' SFT does not read the dcr section)
        pytest.param({"dcr": {"lr": 3.0e-4}}, {"dcr_contrastive": 1, **ONE_DCR}, id="dcr-lr"),
        # an intervention's own section: that intervention alone, not the other one or stl's checkpoint
        pytest.param({"scans": {"alpha": 2.0}}, ONE_INTERVENTION, id="scans-alpha"),
        pytest.param({"surgical": {"ablation_coeff": 0.5}}, ONE_INTERVENTION, id="surgical-ablation-coeff"),
        # Tracking is measured inside the training jobs (tracking.json is an output of sft and dcr_contrastive),
        # so every training job reruns and, its model rewritten, everything evaluated from it; not the base model.
        pytest.param({"tracking": {"every_steps": 2}}, {"dcr_contrastive": 1, **EVERY_SFT}, id="tracking-every-steps"),
        # the kernel curves are measured inside the training jobs too
        pytest.param({"tracking": {"kernel": {"top_k": 4}}}, {"dcr_contrastive": 1, **EVERY_SFT}, id="kernel-top-k"),
        # decoding: every generation (the win-rate prompts' too) and what follows, no training, no capability
        pytest.param({"eval": {"max_new_tokens": 6}},
                     {"generate": EVALUATED, "judge": EVALUATED, **REPORT, **WINRATE, "winrate": COMPARED},
                     id="eval-max-new-tokens"),
        # the bootstrap: the judged JSONs and win rates (their intervals), no generation
        pytest.param({"eval": {"bootstrap": {"seed": 1}}},
                     {"judge": EVALUATED, **REPORT, **WINRATE, "winrate": COMPARED}, id="bootstrap-seed"),
        # the LLM-judge endpoint is not a param while every judge is a string matcher
        pytest.param({"eval": {"llm_judge": {"model": "gpt-4"}}}, {}, id="llm-judge-unused"),
        # capability settings: the capability jobs and the tables, no generation or judging
        pytest.param({"capability": {"batch_size": 4}},
                     {"capability": EVALUATED, "tables": 1, "paper_tables": 1, "verdicts": 1, "all": 1}, id="capability-batch-size"),
        pytest.param({"capability": {"tasks": {"toy_arith": {"num_fewshot": 1}}}},
                     {"capability": EVALUATED, "tables": 1, "paper_tables": 1, "verdicts": 1, "all": 1}, id="capability-fewshot"),
        # an analysis's own settings: that analysis alone; the papers' values and the curves' scale: one table/figure
        pytest.param({"analysis": {"entk": {"top_k": 4}}}, {**analyses(1), "all": 1}, id="analysis-entk-top-k"),
        # the shared prompt count: separability and attribution; the eNTK has its own (analysis.entk.n_per_class)
        pytest.param({"analysis": {"n_per_class": 3}}, {**analyses(2), "all": 1}, id="analysis-n-per-class"),
        pytest.param({"paper_tables": {"partial": False}}, {"paper_tables": 1, "all": 1}, id="paper-tables-partial"),
        pytest.param({"tracking": {"plot_scale": "logodds"}}, {"figure_refusal_dynamics": 1, "all": 1},
                     id="plot-scale"),
        # win-rate settings: the win rates alone
        pytest.param({"winrate": {"judge": {"model": "another-oracle"}}}, {**WINRATE, "winrate": COMPARED, "all": 1},
                     id="winrate-judge"),
        # a new reference: stl is now compared (new job), no_safety is not, the others against new responses
        pytest.param({"winrate": {"reference": "no_safety"}}, {**WINRATE, "winrate": COMPARED, "all": 1},
                     id="winrate-reference"),
    ],
)
def test_a_config_change_reruns_only_what_depends_on_it(tiny: Path, override: dict, expected: dict) -> None:
    assert _dry_run_jobs(tiny, override) == expected


def test_editing_a_plot_script_reruns_only_that_plot(tiny: Path) -> None:
    script = tiny / "scripts" / "figure_compliance.py"
    original = script.read_text()
    try:
        script.write_text(original + "# a changed comment is a changed script\n")
        proc = snakemake(tiny, "-n", "--configfile", TINY)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert jobs_in_dry_run(proc.stdout) == {"figure_compliance": 1, "all": 1}
    finally:
        script.write_text(original)
    # Snakemake also goes by the script's mtime, so restoring the text still reruns the plot, and only it.
    proc = snakemake(tiny, "--cores", "1", "--configfile", TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert jobs_in_dry_run(snakemake(tiny, "-n", "--configfile", TINY).stdout) == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tbr": {"gamma": 1.5}}, "tbr.gamma: 1.5 is out of range (allowed 0..1)"),
        ({"dcr": {"layer": 5}}, "which has 2 decoder layers (allowed 0..1)"),
        ({"sft": {"learning_rate": 0.1}}, "unknown key(s) 'learning_rate'"),
        ({"methods": {"mine": {"kind": "magic"}}}, "valid values: base, no_safety, stl, stl_aug, tbr, dcr"),
    ],
    ids=["gamma-range", "layer-depth", "unknown-key", "unknown-kind"],
)
def test_bad_config_is_refused_before_any_job(tiny: Path, override: dict, message: str) -> None:
    extra = tiny / "bad.yaml"
    extra.write_text(yaml.safe_dump(override))
    proc = snakemake(tiny, "-n", "--configfile", TINY, str(extra))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_failed_job_leaves_no_output_and_names_file_and_line(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, f"{R}/data/manifest.json", "--cores", "1", "--configfile", TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    corpus = work / R / "data/pretrain.jsonl"
    n_lines = sum(1 for _ in corpus.open())
    with corpus.open("a") as fh:
        fh.write('{"text": "truncated\n')
    proc = snakemake(work, f"{R}/models/toy-llama/base", "--cores", "1", "--configfile", TINY)
    assert proc.returncode != 0
    # The first job reading the corpus (the tokenizer) fails; nothing downstream looks complete.
    for out in ("tokenizer", "base"):
        assert not (work / R / "models/toy-llama" / out).exists(), out
    assert not list((work / R / "models/toy-llama").glob(".*.tmp-*"))
    log = (work / "logs/tiny/toy-llama/train_tokenizer.log").read_text()
    assert f"pretrain.jsonl: line {n_lines + 1}: invalid JSON" in log
