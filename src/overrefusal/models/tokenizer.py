"""A word-level tokenizer for the toy world, trained with ``tokenizers`` and saved in HF format.

Word level keeps sequences short (a toy prompt is ~15 tokens), which is what lets a model trained
from scratch on two CPU cores reach the behaviour we study within minutes.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<|pad|>", "<|end|>", "<|unk|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# Reflection markers are ordinary (non-special) tokens so that decoding keeps them.
THINK_TOKENS = ["<think>", "</think>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + ' ' }}"
    "{% if message['role'] == 'assistant' %}{{ '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], out_dir: str, *, min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """Train a WordLevel tokenizer on ``texts`` and save it (with its chat template) to ``out_dir``."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, EOS, UNK, *ROLE_TOKENS], min_frequency=min_frequency)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, single_word=False, normalized=False) for t in THINK_TOKENS])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left",
        chat_template=CHAT_TEMPLATE, model_max_length=256,
    )
    hf.save_pretrained(out_dir)
    return hf


TEXT_FIELDS = ("prompt", "response", "user", "assistant", "system", "text", "question", "answer")


def world_texts(paths: Iterable[str]) -> Iterable[str]:
    """Every string a data file holds, so the word-level vocabulary covers the whole world."""
    from ..io import read_jsonl

    for path in paths:
        if not str(path).endswith(".jsonl"):
            continue
        for row in read_jsonl(path):
            for field in TEXT_FIELDS:
                if isinstance(row.get(field), str):
                    yield row[field]
            yield from (c for c in row.get("choices", []) if isinstance(c, str))
