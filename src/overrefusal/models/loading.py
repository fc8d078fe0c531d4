"""Load any model directory (toy, hub snapshot or converted GGUF) the same way, on the configured
device and dtype (config ``compute``; its fingerprint: ``provenance``)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> str:
    """``auto``: CUDA when this process sees a GPU, else the CPU. ``cuda`` without a GPU is an error,
    not a silent CPU run."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device: cuda, but torch sees no GPU here (torch.cuda.is_available() is "
                           "False); use device: auto or cpu, or install a CUDA build of torch")
    return device


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it (float16 on one that does not), float32 on the CPU."""
    if dtype == "auto":
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DTYPES[dtype]


def resolve_compute(compute: dict[str, Any] | None) -> tuple[str, torch.dtype]:
    """(device, dtype) for a rule's ``compute`` params (``None``: the defaults, auto and auto)."""
    compute = compute or {}
    device = resolve_device(compute.get("device", "auto"))
    return device, resolve_dtype(compute.get("dtype", "auto"), device)


def load_tokenizer(model_dir: str) -> Any:
    tok = AutoTokenizer.from_pretrained(model_dir)
    # Decoder-only generation needs left padding; hub tokenizers often default to right.
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_dir: str, compute: dict[str, Any] | None, *, dtype: torch.dtype | None = None) -> Any:
    """The model on ``compute``'s device in its dtype (``dtype`` overrides it: training keeps float32
    master weights when every parameter trains)."""
    device, default_dtype = resolve_compute(compute)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or default_dtype)
    return model.to(device)
