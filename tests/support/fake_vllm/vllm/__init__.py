"""A stand-in for the ``vllm`` package, for tests on machines without CUDA: the same names and call shapes that
``overrefusal.generate`` uses (``LLM(model=..., seed=..., dtype=..., max_model_len=..., **engine_args)``,
``LLM.generate([{"prompt_token_ids": [...]}], SamplingParams, use_tqdm=False)``, outputs with ``.text`` and
``.token_ids``), answered by transformers greedy decoding one prompt at a time, so its text must equal the hf
backend's. Every engine built appends its keyword arguments, as JSON, to the file named by
``FAKE_VLLM_LOG`` (when set), so a test can count engines and check what reached vLLM."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

__version__ = "0.0.0+fake"


@dataclass
class SamplingParams:
    temperature: float = 1.0
    max_tokens: int = 16
    skip_special_tokens: bool = True
    seed: int | None = None


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int] = field(default_factory=list)


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log = os.environ.get("FAKE_VLLM_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"model": model, **kwargs}, sort_keys=True) + "\n")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, torch_dtype=getattr(torch, kwargs.get("dtype",
                                                                                                        "float32")))
        self.model.eval()

    def generate(self, prompts: list[dict[str, list[int]]], params: SamplingParams, use_tqdm: bool = True
                 ) -> list[RequestOutput]:
        import torch

        assert params.temperature == 0.0, "the project decodes greedily"
        out = []
        for p in prompts:
            ids = torch.tensor([p["prompt_token_ids"]])
            with torch.no_grad():
                gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                                          max_new_tokens=params.max_tokens,
                                          pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            out.append(RequestOutput([CompletionOutput(
                self.tokenizer.decode(new, skip_special_tokens=params.skip_special_tokens), new)]))
        return out
