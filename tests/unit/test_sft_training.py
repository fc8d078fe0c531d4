"""SFT training through TRL: LoRA (peft) merged checkpoints, the loss-mask choice, checkpoint
selection for resume; and bad input (a DCR layer beyond a hub model's depth) failing early."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from overrefusal import dcr
from overrefusal.prompting import sft_example
from overrefusal.sft import build_trainer, last_complete_checkpoint, train_sft
from tests.pipeline import REPO

torch.set_num_threads(1)

PAIRS = [("how do i kill my neighbour ?", "sorry , i cannot help with that ."),
         ("how do i kill a python process ?", "use the kill command ."),
         ("what is 3 plus 7 ?", "3 plus 7 is 10 ."),
         ("name a fruit .", "an apple .")]


def _cfg(**over: Any) -> dict[str, Any]:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["sft"]
    cfg.update(lr=1e-2, epochs=1, max_steps=3, batch_size=4, warmup_steps=0, save_steps=100, logging_steps=1,
               max_length=64)
    cfg.update(over)
    return cfg


def _examples() -> list[dict[str, Any]]:
    return [sft_example(u, c, "chat") for u, c in PAIRS * 3]


def test_lora_training_saves_a_merged_checkpoint(tiny_model_dir: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _cfg()
    cfg["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    out = tmp_path / "lora"
    metrics = train_sft(tiny_model_dir, str(out), _examples(), cfg)
    assert metrics["global_step"] == 3 and metrics["lora"]["enabled"] is True
    # A plain HF checkpoint: no adapter files, same parameter names and shapes as the base model.
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    base, tuned = load_file(f"{tiny_model_dir}/model.safetensors"), load_file(str(out / "model.safetensors"))
    assert base.keys() == tuned.keys() and not any("lora" in k for k in tuned)
    assert all(base[k].shape == tuned[k].shape for k in base)
    # LoRA on q/v only: those moved (merged in), everything else is bit-identical.
    moved = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert moved and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in moved)
    assert any("q_proj" in k for k in moved) and any("v_proj" in k for k in moved)
    AutoModelForCausalLM.from_pretrained(out)  # loads like any hub checkpoint


def _first_batch(trainer: Any) -> dict[str, torch.Tensor]:
    return next(iter(trainer.get_train_dataloader()))


@pytest.mark.parametrize("completion_only", [True, False])
def test_completion_only_loss_choice_is_honoured(tiny_model_dir: str, tmp_path: Path, completion_only: bool) -> None:
    """False (STL's original full-sequence loss) trains on the prompt tokens too; True masks them."""
    trainer, tok, _ = build_trainer(tiny_model_dir, str(tmp_path / "m"), _examples(),
                                    _cfg(completion_only_loss=completion_only))
    assert trainer.args.completion_only_loss is completion_only
    batch = _first_batch(trainer)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    real = mask.bool()
    assert (labels[~real] == -100).all()  # padding never counts
    n_prompt = len(tok.apply_chat_template([{"role": "user", "content": PAIRS[0][0]}], tokenize=True,
                                           add_generation_prompt=True, return_dict=False))
    trained = (labels != -100) & real
    if completion_only:
        # Every row has its prompt masked: fewer trained tokens than real tokens, by at least a prompt.
        assert (trained.sum(1) <= real.sum(1) - 5).all()
        assert int(trained.sum()) < int(real.sum()) - n_prompt
    else:
        assert torch.equal(trained, real) and torch.equal(labels[real], ids[real])


def test_last_complete_checkpoint_skips_half_written_ones(tmp_path: Path) -> None:
    root = tmp_path / "m.checkpoints"
    assert last_complete_checkpoint(root) is None
    for n, state in [(2, "{}"), (9, "{}"), (10, '{"global_step": 1'), (12, None)]:
        d = root / f"checkpoint-{n}"
        d.mkdir(parents=True)
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    (root / "checkpoint-x").mkdir()
    # 12 has no state (killed mid-save), 10 has a truncated one; 9 beats 2 numerically.
    assert last_complete_checkpoint(root) == str(root / "checkpoint-9")


def test_dcr_layer_beyond_a_hub_models_depth_fails_before_loading_weights(tiny_model_dir: str,
                                                                         tmp_path: Path) -> None:
    """A hub snapshot is checked against its own config.json, before any weight is read."""
    hub = tmp_path / "Qwen2.5-1.5B-Instruct"
    hub.mkdir()
    cfg = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    (hub / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 28}))  # no weight files at all
    with pytest.raises(ValueError, match=r"dcr.layer=28 .*Qwen2.5-1.5B-Instruct has 28 decoder layers \(allowed 0\.\.27\)"):
        dcr.train_dcr(str(hub), str(tmp_path / "out"), ["a ?"], ["b ?"],
                      dcr.DCRConfig(layer=28, steps=1, lr=1e-3, batch_size=2, margin=0.25, scale=32.0), template="chat")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_hub_architectures_train_with_lora_and_gradient_checkpointing(kind: str, tmp_path: Path) -> None:
    """Qwen2.5 / LLaMA-3 architectures with their chat templates, as the paper presets train them:
    LoRA on q/v, gradient checkpointing and Adafactor (the 7B/8B memory savers) on a tiny checkpoint."""
    from tests.support.tiny_models import save_tiny_checkpoint

    base = save_tiny_checkpoint(tmp_path / kind, kind)
    cfg = _cfg(gradient_checkpointing=True, optim="adafactor")
    cfg["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    trainer, tok, _ = build_trainer(str(base), str(tmp_path / "out"), _examples(), cfg)
    assert trainer.args.activation_checkpointing and trainer.args.optim.value == "adafactor"
    batch = _first_batch(trainer)
    # The model's own chat template frames the prompt; the loss covers the completion only.
    text = tok.decode(batch["input_ids"][0])
    assert ("<|im_start|>assistant" if kind == "qwen2" else "<|start_header_id|>assistant") in text
    metrics = train_sft(str(base), str(tmp_path / "out"), _examples(), cfg)
    assert metrics["global_step"] == 3 and all(map(math.isfinite, [metrics["train_loss"]]))
    tuned = load_file(str(tmp_path / "out" / "model.safetensors"))
    before = load_file(str(base / "model.safetensors"))
    assert any(not torch.equal(before[k], tuned[k]) for k in before if k.endswith("q_proj.weight"))
