"""GPU memory of DCR's contrastive stage on a decoder (Llama / Qwen2 family), before any GPU is booked.

DCR loads the whole model in float32 (its updates vanish in bf16, see ``dcr.train_dcr``), trains the
input embeddings (``dcr.train_embeddings``) and blocks 0..ℓ, and runs the forward only up to block ℓ.
So the stage holds: every weight in float32, a float32 gradient for each trained weight, the optimiser's
state for each trained weight, and the activations the truncated forward keeps for backward.

Parameter counts come from the architecture's dimensions (``config.json`` fields), so a preset's
estimate needs no download; :data:`ARCHITECTURES` holds those of the paper models, as published in
their config.json files. ``python -m overrefusal.models.memory dcr_qwen2.5-7b tbr`` prints those presets' table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..methods import KINDS

GIB = 1024**3
# config.json dimensions of the paper presets' models (hub repos named in config/presets/*.yaml).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-1.5B": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
                          "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                          "vocab_size": 151936, "tie_word_embeddings": True},
    "Qwen/Qwen2.5-7B": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "vocab_size": 152064, "tie_word_embeddings": False},
    "meta-llama/Meta-Llama-3-8B": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                                   "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                                   "vocab_size": 128256, "tie_word_embeddings": False},
    "meta-llama/Llama-2-7b-hf": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                                 "vocab_size": 32000, "tie_word_embeddings": False},
}
# Bytes of optimiser state per trained parameter: AdamW keeps two float32 moments; Adafactor keeps a
# row and a column factor per matrix (counted exactly in :func:`optimizer_bytes`).
ADAMW_STATE_BYTES = 8


def param_counts(cfg: dict[str, Any]) -> dict[str, int]:
    """Parameters of the input embeddings, one decoder block, the final norm and an untied LM head."""
    h, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    hd = int(cfg.get("head_dim") or h // heads)
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if cfg.get("model_type") == "qwen2":  # q, k and v projections carry biases
        attn += heads * hd + 2 * kv * hd
    block = attn + 3 * h * inter + 2 * h  # gate, up, down; two RMSNorms
    embed = int(cfg["vocab_size"]) * h
    return {"embed": embed, "block": block, "norm": h, "lm_head": 0 if cfg.get("tie_word_embeddings") else embed,
            "layers": int(cfg["num_hidden_layers"])}


def total_params(cfg: dict[str, Any]) -> int:
    c = param_counts(cfg)
    return c["embed"] + c["layers"] * c["block"] + c["norm"] + c["lm_head"]


def optimizer_bytes(cfg: dict[str, Any], trained: int, optim: str, layer: int, train_embeddings: bool) -> int:
    if optim == "adamw":
        return ADAMW_STATE_BYTES * trained
    # Adafactor: per matrix (r x c) one row and one column second-moment vector, float32; no first moment.
    h = int(cfg["hidden_size"])
    per_block = sum(r + c for r, c in _module_shapes(cfg).values()) + 2 * h  # norms keep a full second moment
    emb = int(cfg["vocab_size"]) + h if train_embeddings else 0
    return 4 * ((layer + 1) * per_block + emb)


def dcr_memory(cfg: dict[str, Any], *, layer: int, optim: str, train_embeddings: bool, batch_size: int,
               tokens: int) -> dict[str, float]:
    """GiB held by DCR's stage: float32 weights, gradients and optimiser state of the trained trunk, and
    the truncated forward's saved activations, taken as 4 bytes x tokens x (10 hidden + 3 intermediate)
    per block (inputs of every matmul, norm and activation function; attention scores are not kept by
    the fused SDPA kernel)."""
    c = param_counts(cfg)
    trained = (layer + 1) * c["block"] + (c["embed"] if train_embeddings else 0)
    weights = 4 * total_params(cfg)
    grads = 4 * trained
    state = optimizer_bytes(cfg, trained, optim, layer, train_embeddings)
    h, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    acts = 4 * batch_size * tokens * (10 * h + 3 * inter) * (layer + 1)
    out = {"params_b": total_params(cfg) / 1e9, "trained_b": trained / 1e9, "weights_gib": weights / GIB,
           "grads_gib": grads / GIB, "optimizer_gib": state / GIB, "activations_gib": acts / GIB}
    out["total_gib"] = out["weights_gib"] + out["grads_gib"] + out["optimizer_gib"] + out["activations_gib"]
    return out


def _module_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(out, in) of each projection in one block, by its Hugging Face module name."""
    h, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    hd = int(cfg.get("head_dim") or h // heads)
    return {"q_proj": (heads * hd, h), "k_proj": (kv * hd, h), "v_proj": (kv * hd, h), "o_proj": (h, heads * hd),
            "gate_proj": (inter, h), "up_proj": (inter, h), "down_proj": (h, inter)}


def sft_memory(cfg: dict[str, Any], sft: dict[str, Any]) -> dict[str, float]:
    """GiB held by SFT's weights, gradients, optimiser state and saved activations. Full fine-tuning keeps
    float32 master weights; under LoRA the frozen base is held in bfloat16 and only the adapters (float32)
    train. Activations: one batch of ``max_length`` tokens, 2 bytes under bf16 autocast (else 4), every
    block's :func:`dcr_memory` activations, or with gradient checkpointing each block's input plus one
    block's activations."""
    total = total_params(cfg)
    lora = sft.get("lora") or {}
    if lora.get("enabled"):
        shapes = _module_shapes(cfg)
        trained = int(cfg["num_hidden_layers"]) * sum(lora["r"] * (o + i) for m, (o, i) in shapes.items()
                                                      if m in lora["target_modules"])
        weights = 2 * total + 4 * trained
    else:
        trained, weights = total, 4 * total
    state = ADAMW_STATE_BYTES * trained if sft.get("optim", "adamw_torch_fused").startswith("adamw") else 0
    h, inter, layers = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(cfg["num_hidden_layers"])
    per_token = (2 if sft.get("bf16") or lora.get("enabled") else 4) * int(sft["batch_size"]) * int(sft["max_length"])
    block_acts = per_token * (10 * h + 3 * inter)
    acts = layers * per_token * h + block_acts if sft.get("gradient_checkpointing") else layers * block_acts
    out = {"params_b": total / 1e9, "trained_b": trained / 1e9, "weights_gib": weights / GIB,
           "grads_gib": 4 * trained / GIB, "optimizer_gib": state / GIB, "activations_gib": acts / GIB}
    out["total_gib"] = out["weights_gib"] + out["grads_gib"] + out["optimizer_gib"] + out["activations_gib"]
    return out


def generation_memory(cfg: dict[str, Any], *, batch_size: int, prompt_tokens: int, new_tokens: int,
                      dtype_bytes: int = 2) -> dict[str, float]:
    """GiB held by one greedy generation batch (no gradients): the weights in the compute dtype
    (``dtype_bytes``: 2 for bfloat16), the KV cache at its final length (keys and values, kv heads x head
    dim per token and block), the prefill's transient, taken as one block's activations over the prompt
    counted as in :func:`dcr_memory`, and the last position's logits (``generate`` keeps only that one)
    in the compute dtype plus greedy search's float32 copy."""
    h, inter, layers = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    hd = int(cfg.get("head_dim") or h // heads)
    weights = dtype_bytes * total_params(cfg)
    cache = dtype_bytes * 2 * layers * kv * hd * batch_size * (prompt_tokens + new_tokens)
    prefill = dtype_bytes * batch_size * prompt_tokens * (10 * h + 3 * inter)
    logits = (dtype_bytes + 4) * batch_size * int(cfg["vocab_size"])
    out = {"params_b": total_params(cfg) / 1e9, "weights_gib": weights / GIB, "kv_cache_gib": cache / GIB,
           "activations_gib": prefill / GIB, "logits_gib": logits / GIB}
    out["total_gib"] = out["weights_gib"] + out["kv_cache_gib"] + out["activations_gib"] + out["logits_gib"]
    return out


def preset_table(presets: Sequence[str], *, root: Path, tokens: int = 64, gpu_gib: float = 80.0) -> str:
    """Markdown: each preset's DCR stage and SFT memory against one ``gpu_gib`` GB GPU (hub models in
    ARCHITECTURES). A preset is config.yaml under ``root`` with its files (``presets.preset_files``) merged
    over it, as ``--configfile`` does."""
    from ..presets import load_preset

    rows = [("| preset | model | stage | trained (B) | optimiser | weights | grads | optimiser state | activations "
             f"| total (GiB) | fits {gpu_gib:g} GB |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    limit = gpu_gib * 1e9 / GIB
    for name in presets:
        cfg, own = load_preset(name, root)
        dcr, sft = cfg["dcr"], cfg["sft"]
        uses_dcr = any(KINDS[m["kind"]].dcr and m.get("enabled", True) for m in cfg["methods"].values())
        for spec in (own.get("models") or {}).values():  # the preset's own models, not config.yaml's toy one
            arch = ARCHITECTURES.get(spec.get("repo_id", ""))
            if arch is None or spec.get("enabled") is False:
                continue
            stages = []
            if uses_dcr:
                stages.append((f"DCR ℓ={dcr['layer']}", dcr["optim"],
                               dcr_memory(arch, layer=dcr["layer"], optim=dcr["optim"],
                                          train_embeddings=dcr["train_embeddings"], batch_size=dcr["batch_size"],
                                          tokens=tokens)))
            kind = "SFT LoRA" if sft["lora"]["enabled"] else "SFT full"
            stages.append((kind, sft["optim"], sft_memory(arch, sft)))
            for stage, optim, m in stages:
                rows.append(f"| {name} | {spec['repo_id']} | {stage} | {m['trained_b']:.3f} | {optim} | "
                            f"{m['weights_gib']:.1f} | {m['grads_gib']:.1f} | {m['optimizer_gib']:.1f} | "
                            f"{m['activations_gib']:.1f} | {m['total_gib']:.1f} | "
                            f"{'yes' if m['total_gib'] < limit else 'no'} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", help="preset names, e.g. dcr_qwen2.5-7b tbr")
    ap.add_argument("--tokens", type=int, default=64, help="padded prompt length of a DCR batch")
    ap.add_argument("--root", type=Path, default=Path("."), help="the workflow directory")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    table = preset_table(args.presets, root=args.root, tokens=args.tokens)
    if args.out:
        args.out.write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
