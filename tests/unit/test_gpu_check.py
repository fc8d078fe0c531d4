"""bench/gpu_check.py on the CPU: its committed architectures, its tiny run of every preset's stages, and its
refusal to start a model the device cannot hold. The real run needs a GPU (docs/gpu_check.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from bench import gpu_check
from overrefusal.config import merge_config, preset_files
from overrefusal.models.memory import ARCHITECTURES, dcr_memory, generation_memory, sft_memory, total_params

REPO = Path(__file__).resolve().parents[2]
MODELS = ["qwen2.5-1.5b", "llama-2-7b", "qwen2.5-7b", "llama-3-8b"]  # smallest first


# ---- the committed config.json files are the architectures the estimate counts ----


@pytest.mark.parametrize("repo_id", sorted(ARCHITECTURES))
def test_committed_config_matches_architectures(repo_id: str) -> None:
    path = gpu_check.config_dir(repo_id) / "config.json"
    committed = json.loads(path.read_text())
    dims = ARCHITECTURES[repo_id]
    assert {k: committed.get(k) for k in dims} == dims, path
    # Fields that would change the parameter count or the attention shapes, absent from ARCHITECTURES
    assert "head_dim" not in committed and committed.get("attention_bias", False) is False
    assert committed.get("mlp_bias", False) is False and committed.get("use_sliding_window", False) is False


@pytest.mark.parametrize("repo_id", sorted(ARCHITECTURES))
def test_committed_config_builds_the_counted_model(repo_id: str) -> None:
    config = AutoConfig.from_pretrained(str(gpu_check.config_dir(repo_id)))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == total_params(ARCHITECTURES[repo_id])


def test_every_committed_config_is_an_architecture_and_every_preset_model_has_one() -> None:
    committed = {p.parent.name for p in gpu_check.CONFIG_DIR.glob("*/config.json")}
    assert committed == {r.split("/")[-1] for r in ARCHITECTURES}
    plans = gpu_check.plan_models()
    assert [p.model for p in plans] == MODELS
    assert all(p.repo_id in ARCHITECTURES for p in plans)


def test_preset_loading_equals_the_package_merge() -> None:
    """gpu_check reads presets through overrefusal.presets, as Snakemake merges --configfile layers."""
    import yaml

    for name in gpu_check.PRESETS:
        cfg = yaml.safe_load((REPO / "config.yaml").read_text())
        for f in preset_files(name):
            merge_config(cfg, yaml.safe_load((REPO / f).read_text()))
        assert gpu_check.load_preset(name)[0] == cfg


def test_presets_module_needs_no_jsonschema() -> None:
    """The GPU image has no jsonschema: reading presets must not import the config validator."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['jsonschema'] = None; from overrefusal import presets; "
            "import overrefusal.models.memory; print(presets.preset_files('dcr_qwen2.5-7b'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "config/presets/dcr.yaml" in out.stdout


def test_plans_carry_the_presets_settings_and_the_estimates() -> None:
    by_model = {p.model: p for p in gpu_check.plan_models()}
    q7 = by_model["qwen2.5-7b"]
    assert q7.dcr is not None and (q7.dcr["layer"], q7.dcr["optim"], q7.dcr["batch_size"]) == (14, "adafactor", 32)
    assert q7.contrastive == (250, 500) and q7.sft["lora"]["enabled"] and q7.eval["max_new_tokens"] == 256
    assert q7.estimates["dcr"] == dcr_memory(ARCHITECTURES["Qwen/Qwen2.5-7B"], layer=14, optim="adafactor",
                                             train_embeddings=True, batch_size=32, tokens=q7.dcr["max_length"])
    tbr = by_model["llama-2-7b"]
    assert tbr.dcr is None and "dcr" not in tbr.estimates  # TBR's preset runs no DCR method
    assert not tbr.sft["lora"]["enabled"] and tbr.sft["optim"] == "adafactor" and tbr.sft["gradient_checkpointing"]
    assert tbr.estimates["sft"] == sft_memory(ARCHITECTURES["meta-llama/Llama-2-7b-hf"], tbr.sft)
    # every preset fits the 80 GB card the real run is sized for
    assert all(e["total_gib"] < 80e9 / 2**30 for p in by_model.values() for e in p.estimates.values())


def test_tiny_configs_keep_the_family() -> None:
    for plan in gpu_check.plan_models(tiny=True):
        real = json.loads(plan.config_path.read_text())
        arch = plan.arch
        assert arch["model_type"] == real["model_type"]
        assert arch["tie_word_embeddings"] == real["tie_word_embeddings"]
        assert (arch["num_attention_heads"] // arch["num_key_value_heads"]
                == real["num_attention_heads"] // real["num_key_value_heads"])
        assert arch["num_hidden_layers"] == gpu_check.TINY_LAYERS
        if plan.dcr is not None:
            assert 0 < plan.dcr["layer"] < gpu_check.TINY_LAYERS - 1  # a middle block stays a middle block


def test_generation_estimate_counts_the_kv_cache_exactly() -> None:
    arch = {**ARCHITECTURES["Qwen/Qwen2.5-7B"], **gpu_check.tiny_overrides(ARCHITECTURES["Qwen/Qwen2.5-7B"])}
    config = AutoConfig.for_model(**arch)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    batch, prompt = 3, 5
    with torch.inference_mode():
        cache = model(input_ids=torch.ones(batch, prompt, dtype=torch.long), use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    est = generation_memory(arch, batch_size=batch, prompt_tokens=prompt, new_tokens=0, dtype_bytes=2)
    assert est["kv_cache_gib"] * 2**30 == held


# ---- the tiny run: every preset's model, every stage, the same code path as on the GPU ----


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check"
    # bfloat16: the GPU's dtype for LoRA's frozen base and for generation, so that path runs here too
    code = gpu_check.main(["--tiny", "--device", "cpu", "--dtype", "bfloat16", "--steps", "1", "--warmup", "1",
                           "--threads", "1", "--out", str(out)])
    return code, json.loads(out.with_name("gpu_check.json").read_text()), out.with_name("gpu_check.md").read_text()


def test_tiny_run_measures_every_stage(tiny_run: tuple[int, dict[str, Any], str]) -> None:
    code, result, _ = tiny_run
    assert code == 0
    assert result["tiny"] is True and result["meets_target"] is None  # tiny CPU numbers judge nothing
    assert [m["model"] for m in result["models"]] == MODELS
    for m in result["models"]:
        assert m["status"] == "ok"
        stages = {s["stage"]: s for s in m["stages"]}
        assert list(stages) == list(gpu_check.STAGES)
        if m["preset"] == "tbr":
            assert stages.pop("dcr")["status"] == "not run"
        for name, s in stages.items():
            assert s["status"] == "ok", (m["model"], name, s.get("error"), s.get("traceback"))
            assert s["peak_gib"] >= 0 and s["estimate_gib"] > 0 and s["seconds_per_step"] > 0
            assert s["estimate"]["total_gib"] == s["estimate_gib"]
            assert s["left_allocated_gib"] is None  # CUDA alone counts what is left
        if "dcr" in stages:  # the trained set is the one the estimate counts: blocks 0..ℓ and the embeddings
            assert stages["dcr"]["loss_finite"] and len(stages["dcr"]["step_seconds"]) == 2
            assert stages["dcr"]["trained_params"] == round(stages["dcr"]["estimate"]["trained_b"] * 1e9)
        assert stages["sft"]["loss_finite"]
        assert stages["sft"]["trained_params"] == round(stages["sft"]["estimate"]["trained_b"] * 1e9)
        assert stages["generation"]["new_tokens"] == gpu_check.TINY_CAPS["eval"]["max_new_tokens"]
    lora = next(s for s in result["models"][0]["stages"] if s["stage"] == "sft")
    assert lora["dtype"] == "bfloat16 frozen, float32 trained"


def test_tiny_run_writes_the_table(tiny_run: tuple[int, dict[str, Any], str]) -> None:
    _, result, md = tiny_run
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    assert len(rows) == 3 * len(MODELS)
    assert "peak RSS added (MiB)" in md and "Tiny configs" in md and result["command"] in md
    assert sum("not run: the preset enables no DCR method" in r for r in rows) == 1


# ---- refusing a model the device cannot hold ----


def test_refuses_to_start_a_model_that_does_not_fit(tmp_path: Path) -> None:
    plan = gpu_check.plan_models(tiny=True)[0]
    need = max(e["total_gib"] for e in plan.estimates.values())
    with pytest.raises(gpu_check.DoesNotFit, match=rf"estimate of {need:.2f} GiB exceeds the device's memory, 0\.00"):
        gpu_check.check_fits(plan, 0.001, "test device", gpu_check.STAGES)
    gpu_check.check_fits(plan, need * 1.01, "test device", gpu_check.STAGES)

    out = tmp_path / "gpu_check"
    code = gpu_check.main(["--tiny", "--device", "cpu", "--device-memory-gib", "0.0001", "--out", str(out)])
    assert code == 2
    result = json.loads(out.with_name("gpu_check.json").read_text())
    [first] = result["models"]  # stopped before building anything
    assert first["status"] == "refused" and "estimate of" in first["reason"] and first["stages"] == []
    assert result["device"]["memory_source"] == "--device-memory-gib"


def test_skip_unfit_records_the_reason_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check"
    code = gpu_check.main(["--tiny", "--device", "cpu", "--device-memory-gib", "0.0001", "--skip-unfit",
                           "--out", str(out)])
    assert code == 0
    result = json.loads(out.with_name("gpu_check.json").read_text())
    assert [m["status"] for m in result["models"]] == ["skipped"] * len(MODELS)
    assert all("exceeds the device's memory" in m["reason"] for m in result["models"])
    assert "skipped: " in out.with_name("gpu_check.md").read_text()


def test_plan_prints_the_estimates_and_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu_check"
    assert gpu_check.main(["--plan", "--device", "cpu", "--dtype", "bfloat16", "--device-memory-gib", "80",
                           "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [ln for ln in printed.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    assert len(rows) == 3 * len(MODELS) - 1  # TBR has no DCR stage
    assert all(r.endswith("| yes |") for r in rows) and not list(tmp_path.iterdir())
