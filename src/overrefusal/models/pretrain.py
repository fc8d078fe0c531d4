"""Pretrain a tiny Llama-architecture model from scratch on the toy corpus.

A plain PyTorch loop rather than ``Trainer``: this stage only stands in for the hub checkpoint a
paper preset downloads, and the loop keeps it fast and bit-reproducible on a CPU.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ..io import atomic_dir


def corpus_texts(rows: list[dict[str, Any]], tokenizer: Any) -> list[str]:
    """Render corpus rows: dialogues through the chat template, plain text documents as is."""
    out = []
    for r in rows:
        if "user" in r:
            msgs = [{"role": "system", "content": r["system"]}] if r.get("system") else []
            msgs += [{"role": "user", "content": r["user"]}, {"role": "assistant", "content": r["assistant"]}]
            out.append(tokenizer.apply_chat_template(msgs, tokenize=False))
        else:
            out.append(f"{r['text']} {tokenizer.eos_token}")
    return out


def build_model(tokenizer: Any, arch: dict[str, Any], seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=arch["hidden_size"], num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"], num_key_value_heads=arch["num_heads"],
        intermediate_size=arch["intermediate_size"], max_position_embeddings=arch["max_position_embeddings"],
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def pretrain(
    rows: list[dict[str, Any]], tokenizer: Any, out_dir: str, *, arch: dict[str, Any], steps: int, batch_size: int,
    lr: float, warmup: int, seed: int, threads: int = 0,
) -> dict[str, Any]:
    """Train a fresh model on ``rows`` and save model + tokenizer to ``out_dir``; return metrics."""
    if threads:
        torch.set_num_threads(threads)
    rng = random.Random(seed)
    model = build_model(tokenizer, arch, seed)
    texts = corpus_texts(rows, tokenizer)
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    too_long = sum(len(e) > arch["max_position_embeddings"] for e in enc)
    enc = [e[: arch["max_position_embeddings"]] for e in enc]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    # Length-bucketed batches: a window of documents adjacent in length order (ties shuffled), so a
    # batch is padded to about its own length rather than to the longest of 32 random documents.
    # The corpus mixes 10-token facts with 80-token dialogues; random batches spent ~60% of their
    # compute on padding.
    order = sorted(range(len(enc)), key=lambda i: (len(enc[i]), rng.random()))
    if batch_size > len(order):
        raise ValueError(f"batch_size {batch_size} exceeds the corpus ({len(order)} documents)")
    pad = tokenizer.pad_token_id
    losses: list[float] = []
    t0 = time.time()
    model.train()
    for step in range(steps):
        start = rng.randrange(len(order) - batch_size + 1)
        batch = [enc[i] for i in order[start : start + batch_size]]
        width = max(len(b) for b in batch)
        ids = torch.full((batch_size, width), pad, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, b in enumerate(batch):  # right padding is fine for teacher-forced training
            ids[i, : len(b)] = torch.tensor(b)
            mask[i, : len(b)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    seconds = time.time() - t0
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "n_params": n_params,
        "threads": torch.get_num_threads(), "batching": "length_bucketed",
        "n_documents": len(texts), "n_truncated": too_long, "seconds": round(seconds, 2),
        "loss_first": losses[0], "loss_last": sum(losses[-50:]) / min(50, len(losses)),
        "loss_curve": [round(x, 4) for x in losses[:: max(1, steps // 100)]],
    }
