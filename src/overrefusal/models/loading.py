"""Load any model directory (toy or hub snapshot) the same way, and fingerprint its weights."""

from __future__ import annotations

import hashlib
from pathlib import Path
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


def weights_sha256(model_dir: str) -> str:
    """A hash over every weight file: identifies the exact checkpoint in provenance records."""
    h = hashlib.sha256()
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
