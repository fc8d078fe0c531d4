"""Tiny checkpoints of the paper models' architectures (Qwen2.5 = qwen2, LLaMA-3 = llama).

Same model classes, chat-template style and special tokens as the real repos, at a few thousand
parameters and with a byte-level BPE tokenizer trained here, so the hub code path (fetch, chat
template, LoRA on q/v, DCR's truncated forward) runs on CPU without the real weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

# Qwen2.5-Instruct's template, shortened (no tools), with its default system prompt.
QWEN_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaMA-3-Instruct's template.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CORPUS = [
    "how do i kill a python process", "i'm sorry, but i can't help with that request.",
    "here is how to do it: first, open the terminal.", "what is the capital of france? paris.",
    "think about safety before you answer.", "<think> this request is harmless. </think>",
] * 20


def _tokenizer(kind: str) -> PreTrainedTokenizerFast:
    special = (["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if kind == "qwen2"
               else ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if kind == "qwen2":
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                       chat_template=QWEN_TEMPLATE)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_TEMPLATE)


def save_tiny_checkpoint(out: Path, kind: str = "qwen2", *, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised ``kind`` checkpoint with tokenizer and chat template to ``out``."""
    tok = _tokenizer(kind)
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    elif kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, bos_token_id=tok.bos_token_id))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def checkpoint_files(d: Path) -> dict[str, bytes]:
    """A checkpoint's files as {relative path: bytes}, to publish on the fake hub."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
