"""Supervised fine-tuning for every method through TRL's ``SFTTrainer``.

Every TRL default that differs across versions is set explicitly from the config (lr,
``bf16``, gradient checkpointing, ``completion_only_loss``, max length), so results do not drift
with a TRL upgrade. Training writes checkpoints next to the output and resumes from the last one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .io import atomic_dir
from .prompting import Template, sft_example
from .records import user_text
from .stage_settings import SFTConfig


def with_reflection(reflection: str, refusal: str) -> str:
    return f"{reflection} {refusal}"


def build_examples(
    data: dict[str, list[dict[str, Any]]], *, template: Template, reflections: dict[str, str] | None = None,
    gamma: float = 0.0, seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """TRL prompt-completion examples from curated splits.

    With ``reflections`` (TBR), a proportion ``gamma`` of the safety examples, chosen with a seeded
    RNG, get their reflection prepended to the refusal. Safety examples without a usable reflection
    keep the plain refusal and are counted.
    """
    rng = random.Random(seed)
    examples: list[dict[str, Any]] = []
    stats = {"n_by_split": {}, "n_reflected": 0, "n_missing_reflection": 0}
    for split, rows in data.items():
        stats["n_by_split"][split] = len(rows)
        chosen: set[str] = set()
        if reflections is not None and split == "sft_safety":
            ids = sorted(r["id"] for r in rows)
            chosen = set(rng.sample(ids, round(gamma * len(ids))))
        for r in rows:
            completion = r["response"]
            if r["id"] in chosen:
                refl = reflections.get(r["id"]) if reflections else None
                if refl:
                    completion = with_reflection(refl, completion)
                    stats["n_reflected"] += 1
                else:
                    stats["n_missing_reflection"] += 1
            examples.append(sft_example(user_text(r), completion, template, ""))
    rng.shuffle(examples)
    return examples, stats


def last_complete_checkpoint(ckpt_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` (written last by the Trainer) parses.

    ``transformers``' ``get_last_checkpoint`` takes the highest N even if a kill interrupted its
    save; resuming from such a half-written checkpoint fails, so we step back to the newest one
    the Trainer finished.
    """
    root = Path(ckpt_dir)
    if not root.is_dir():
        return None
    found = []
    for d in root.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d))
    for _, d in sorted(found, reverse=True):
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(d)
    return None


def sft_settings(cfg: SFTConfig | Mapping[str, Any]) -> SFTConfig:
    """The ``sft`` section checked: an unknown, missing or out-of-range key fails here, named ``sft.<key>``."""
    return cfg if isinstance(cfg, SFTConfig) else SFTConfig.from_params(cfg)


def build_trainer(model_dir: str, out_dir: str, examples: list[dict[str, Any]], cfg: SFTConfig | Mapping[str, Any],
                  *, compute: dict[str, Any] | None = None, callbacks: list[Any] | None = None
                  ) -> tuple[Any, Any, Path]:
    """The configured ``SFTTrainer`` (and tokenizer, checkpoint dir) that :func:`train_sft` runs."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig as TrainerConfig
    from trl import SFTTrainer

    from .models.loading import load_model, load_tokenizer, resolve_compute

    cfg = sft_settings(cfg)
    ckpt_dir = Path(f"{out_dir}.checkpoints")
    tok = load_tokenizer(model_dir)
    lora = cfg.lora
    device, _ = resolve_compute(compute)
    # Full fine-tuning keeps float32 master weights (bf16 is then autocast, sft.bf16); under LoRA the base
    # is frozen and is held in the compute dtype (bfloat16 on a GPU: half the memory of a 7B/8B base).
    model = load_model(model_dir, compute, dtype=None if lora.enabled else torch.float32)
    peft_config = None
    if lora.enabled:
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=lora.target_modules, task_type="CAUSAL_LM")
    args = TrainerConfig(
        output_dir=str(ckpt_dir),
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=cfg.completion_only_loss,
        packing=False,
        bf16=cfg.bf16,
        # Off unless asked (7B/8B full fine-tuning). Non-reentrant checkpointing also works with LoRA,
        # where the frozen embeddings' outputs carry no grad for a reentrant recompute to follow.
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False},
        optim=cfg.optim,  # pinned by the config (transformers 5's default: adamw_torch_fused)
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tok, peft_config=peft_config, callbacks=callbacks)
    return trainer, tok, ckpt_dir


def train_sft(model_dir: str, out_dir: str, examples: list[dict[str, Any]], cfg: SFTConfig | Mapping[str, Any],
              *, threads: int = 0, compute: dict[str, Any] | None = None,
              callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``model_dir`` on ``examples``; save the (merged) model and tokenizer to ``out_dir``.

    ``callbacks`` are ``transformers.TrainerCallback`` instances (e.g. refusal-probability
    tracking); they must only read the model. Checkpoints go to ``<out_dir>.checkpoints`` (a
    sibling, so Snakemake's removal of a failed job's outputs leaves them alone); a rerun resumes
    from the newest complete one, and the directory is removed once the model is saved.
    """
    cfg = sft_settings(cfg)  # before threads or weights: a bad key fails first
    if threads:
        torch.set_num_threads(threads)
    trainer, tok, ckpt_dir = build_trainer(model_dir, out_dir, examples, cfg, compute=compute, callbacks=callbacks)
    last = last_complete_checkpoint(ckpt_dir)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.time() - t0
    trained = trainer.model
    if cfg.lora.enabled:
        trained = trained.merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        trained.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "n_examples": len(examples), "global_step": trainer.state.global_step, "resumed_from": last,
        "train_loss": result.training_loss, "seconds": round(seconds, 2),
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in logs],
        "completion_only_loss": cfg.completion_only_loss, "lora": asdict(cfg.lora),
    }
