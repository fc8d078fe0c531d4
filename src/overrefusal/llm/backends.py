"""Backends of the local chat-completions server (:mod:`overrefusal.llm.server`): a transformers model
(:class:`HFBackend`, the toy world's external teacher) or a script (:class:`ScriptedBackend`, tests,
benches and the toy world's judges, whose scripts live in :mod:`overrefusal.toyworld.scripted`)."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class BackendError(RuntimeError):
    """The backend could not answer; the server replies 500 with this message."""


class RequestError(ValueError):
    """The request is malformed; the server replies 400 with this message."""


def _word_count(text: str) -> int:
    return len(text.split())


class ScriptedBackend:
    """Scripted completions for tests and benches.

    ``script`` is either a callable ``fn(messages, params) -> str`` or a list of strings handed out
    in arrival order (an exhausted list is a backend error, i.e. HTTP 500). Token counts are
    whitespace word counts; ``max_tokens`` truncates to that many words with ``finish_reason
    "length"``.
    """

    name = "scripted"

    def __init__(self, script: Callable[[list[dict[str, Any]], dict[str, Any]], str] | Sequence[str]):
        if callable(script):
            self._fn: Callable[[list[dict[str, Any]], dict[str, Any]], str] | None = script
            self._items: list[str] = []
        else:
            self._fn = None
            self._items = list(script)
        self._next = 0
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        if self._fn is not None:
            text = self._fn(messages, params)
        else:
            with self._lock:
                if self._next >= len(self._items):
                    raise BackendError(f"scripted backend exhausted after {len(self._items)} completions")
                text = self._items[self._next]
                self._next += 1
        if not isinstance(text, str):
            raise BackendError(f"scripted backend returned {type(text).__name__}, expected str")
        prompt_tokens = sum(_word_count(str(m.get("content") or "")) for m in messages)
        words = text.split()
        max_tokens = params.get("max_tokens")
        if max_tokens is not None and len(words) > max_tokens:
            return Completion(" ".join(words[:max_tokens]), prompt_tokens, int(max_tokens), "length")
        return Completion(text, prompt_tokens, len(words), "stop")


def echo_script(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Answer with the last user message, verbatim."""
    users = [m for m in messages if m.get("role") == "user"]
    return str(users[-1]["content"]) if users else ""



Script = Callable[[list[dict[str, Any]], dict[str, Any]], str]


def load_script(spec: str) -> Any:
    """The object a ``--scripted`` spec names: ``echo`` (the last user message) or ``module:function``.

    Scripts are named by string so that this layer knows no judge: the toy world's judges import the
    real judges they imitate, and the real judges reach the toy ones only through such a string.
    """
    if spec == "echo":
        return echo_script
    module_name, sep, attr = spec.partition(":")
    if not (sep and module_name and attr):
        raise ValueError(f"unknown script {spec!r}; give 'echo' or 'module:function'")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"script {spec!r} is not callable")
    return obj


class HFBackend:
    """Greedy generation with a local transformers causal LM (one request at a time).

    ``template="chat"`` renders messages with the tokenizer's chat template; ``template="alpaca"``
    uses the Safety-Tuned-LLaMAs Alpaca prompt (an optional system message, then one user turn).
    """

    name = "hf"

    def __init__(self, model_dir: str | os.PathLike[str], template: str = "chat", default_max_tokens: int = 256):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if template not in ("chat", "alpaca"):
            raise ValueError(f"unknown template {template!r}; allowed: chat, alpaca")
        self.model_dir = str(model_dir)
        self.template = template
        self.default_max_tokens = default_max_tokens
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{self.model_dir}: neither the generation config nor the tokenizer defines an EOS token")
        self.eos_ids: list[int] = [int(e) for e in (eos if isinstance(eos, list) else [eos])]
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self._lock = threading.Lock()

    def render(self, messages: list[dict[str, Any]]) -> str:
        if self.template == "chat":
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        from overrefusal.prompting import alpaca_prompt

        system = [str(m["content"]) for m in messages if m.get("role") == "system"]
        users = [m for m in messages if m.get("role") != "system"]
        if len(users) != 1 or users[0].get("role") != "user":
            raise RequestError("template 'alpaca' takes an optional system message and exactly one user message")
        instruction = "\n\n".join([*system, str(users[0]["content"])])
        return alpaca_prompt(instruction)

    def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        from transformers import GenerationConfig

        torch = self._torch
        prompt = self.render(messages)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        max_tokens = params.get("max_tokens") or self.default_max_tokens
        limit = getattr(self.model.config, "max_position_embeddings", None)
        prompt_len = int(enc["input_ids"].shape[1])
        if limit is not None and prompt_len + int(max_tokens) > int(limit):
            # As hosted APIs do: an over-long request is the caller's error, never an empty answer.
            raise RequestError(f"context length exceeded: {prompt_len} prompt tokens + max_tokens {max_tokens} "
                               f"> the model's {limit}")
        temperature = params.get("temperature")
        sample = temperature is not None and float(temperature) > 0
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": int(max_tokens),
            "do_sample": sample,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
        }
        if sample:
            gen_kwargs["temperature"] = float(temperature)
            gen_kwargs["top_p"] = float(params.get("top_p") if params.get("top_p") is not None else 1.0)
            gen_kwargs["top_k"] = 0
        config = GenerationConfig(**gen_kwargs)
        with self._lock, torch.no_grad():
            if sample:
                torch.manual_seed(int(params.get("seed") or 0))
            out = self.model.generate(**enc, generation_config=config)
        new = out[0, prompt_len:].tolist()
        finish = "length"
        for i, tok in enumerate(new):
            if tok in self.eos_ids:
                new = new[: i + 1]
                finish = "stop"
                break
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text, prompt_len, len(new), finish)
