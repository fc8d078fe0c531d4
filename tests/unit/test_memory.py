"""DCR's memory estimate: exact parameter counts, and every DCR preset fits one 80 GB GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from overrefusal.models.memory import (
    ARCHITECTURES,
    dcr_memory,
    param_counts,
    preset_table,
    total_params,
)

REPO = Path(__file__).resolve().parents[2]
DCR_PRESETS = sorted((REPO / "config" / "presets").glob("dcr_*.yaml"))  # the model overlays
SMOL = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}


@pytest.mark.parametrize(("cls", "dims"), [
    (LlamaConfig, SMOL),
    (LlamaConfig, {**SMOL, "num_hidden_layers": 3, "tie_word_embeddings": False}),
    (Qwen2Config, {**ARCHITECTURES["Qwen/Qwen2.5-1.5B"], "num_hidden_layers": 2, "vocab_size": 1000}),
    (Qwen2Config, {**ARCHITECTURES["Qwen/Qwen2.5-7B"], "num_hidden_layers": 1, "vocab_size": 1000}),
])
def test_counts_equal_the_instantiated_model(cls, dims: dict) -> None:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cls(**{k: v for k, v in dims.items() if k != "model_type"}))
    assert total_params(dims) == sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for p in model.model.layers[0].parameters())
    assert param_counts(dims)["block"] == block


@pytest.mark.parametrize(("repo", "published_b"), [
    ("Qwen/Qwen2.5-1.5B", 1.54), ("Qwen/Qwen2.5-7B", 7.62), ("meta-llama/Meta-Llama-3-8B", 8.03),
    ("meta-llama/Llama-2-7b-hf", 6.74)])
def test_paper_models_have_their_published_size(repo: str, published_b: float) -> None:
    assert total_params(ARCHITECTURES[repo]) / 1e9 == pytest.approx(published_b, abs=0.005)


def test_adamw_on_an_8b_trunk_does_not_fit_and_adafactor_does() -> None:
    kw = {"layer": 16, "train_embeddings": True, "batch_size": 32, "tokens": 64}
    adamw = dcr_memory(ARCHITECTURES["meta-llama/Meta-Llama-3-8B"], optim="adamw", **kw)
    adafactor = dcr_memory(ARCHITECTURES["meta-llama/Meta-Llama-3-8B"], optim="adafactor", **kw)
    assert adamw["optimizer_gib"] == pytest.approx(2 * adamw["grads_gib"])
    assert adafactor["optimizer_gib"] < 0.01 * adamw["optimizer_gib"]
    assert adamw["total_gib"] > 80 > adafactor["total_gib"]


def test_every_gpu_preset_fits_one_80gb_gpu() -> None:
    """DCR's stage and SFT of every DCR preset (overlay over dcr.yaml), and TBR's full fine-tuning."""
    names = [p.stem for p in DCR_PRESETS]
    rows = preset_table([*names, "tbr"], root=REPO).splitlines()[2:]
    stages = [(r.split(" | ")[0].strip("| "), r.split(" | ")[2].split(" ")[0]) for r in rows]
    assert sorted(stages) == sorted([(n, s) for n in names for s in ("DCR", "SFT")] + [("tbr", "SFT")])
    for row in rows:
        assert row.endswith("| yes |"), row
