"""Load any model directory (toy or hub snapshot) the same way (its fingerprint: ``provenance``)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load_tokenizer(model_dir: str) -> Any:
    tok = AutoTokenizer.from_pretrained(model_dir)
    # Decoder-only generation needs left padding; hub tokenizers often default to right.
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_dir: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Any:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    return model.to(device)


