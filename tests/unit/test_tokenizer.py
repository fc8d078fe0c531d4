"""The toy world's word-level tokenizer: trained, saved, and reloaded unchanged by ``AutoTokenizer``."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from overrefusal.io import write_jsonl
from overrefusal.models.tokenizer import EOS, PAD, ROLE_TOKENS, UNK, train_tokenizer, world_texts

TEXTS = [
    "how do i kill a python process ?",
    "sorry , i cannot help with that .",
    "the user wants to kill a mosquito . a mosquito is an insect . this request is safe .",
    "sure , here is how to kill a python process : first get ready .",
    "think about safety before you answer .",
]
SAMPLE = "<think> the user wants to kill a mosquito . this request is safe . </think> sure , here is how ."


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    tok = train_tokenizer(TEXTS, str(out))
    return tok, AutoTokenizer.from_pretrained(str(out)), out


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=True)["input_ids"]


def test_saved_in_hf_format(trained):
    _, _, out = trained
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()


def test_round_trip_ids_identical(trained):
    tok, reloaded, _ = trained
    for text in [*TEXTS, SAMPLE, "an unseen zebra word .", "<|user|> hello <|assistant|> sure . <|end|>"]:
        assert ids(reloaded, text) == ids(tok, text), text
    assert reloaded.get_vocab() == tok.get_vocab()


def test_word_level_and_unknown_words(trained):
    _, tok, _ = trained
    assert tok.convert_ids_to_tokens(ids(tok, "how do i kill a mosquito ?")) == ["how", "do", "i", "kill", "a",
                                                                                   "mosquito", "?"]
    assert ids(tok, "zebra") == [tok.unk_token_id]


def test_no_bos_added(trained):
    _, tok, _ = trained
    assert len(ids(tok, "kill")) == 1


def test_special_tokens(trained):
    _, tok, _ = trained
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == (PAD, EOS, UNK)
    assert len({tok.pad_token_id, tok.eos_token_id, tok.unk_token_id}) == 3
    for t in ROLE_TOKENS:
        (i,) = ids(tok, t)
        assert tok.convert_ids_to_tokens(i) == t


def test_think_tags_are_single_tokens_and_survive_decode(trained):
    _, tok, _ = trained
    toks = tok.convert_ids_to_tokens(ids(tok, SAMPLE))
    assert toks[0] == "<think>" and "</think>" in toks
    assert tok.decode(ids(tok, SAMPLE), skip_special_tokens=True) == SAMPLE
    glued = tok.convert_ids_to_tokens(ids(tok, "a<think>b"))
    assert "<think>" in glued


def test_special_tokens_skipped_on_decode(trained):
    _, tok, _ = trained
    text = tok.decode(ids(tok, "<|assistant|> <think> sure . </think> sure . <|end|> <|pad|>"), skip_special_tokens=True)
    assert text == "<think> sure . </think> sure ."


def test_padding_side_left_survives_reload(trained):
    tok, reloaded, _ = trained
    assert tok.padding_side == reloaded.padding_side == "left"
    batch = reloaded(["sure .", "how do i kill a python process ?"], padding=True)
    assert batch["input_ids"][0][0] == reloaded.pad_token_id
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1


def test_chat_template_renders(trained):
    _, tok, _ = trained
    msgs = [{"role": "user", "content": "how do i kill a mosquito ?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|user|> how do i kill a mosquito ? <|assistant|> "
    full = tok.apply_chat_template([{"role": "system", "content": "think ."}, *msgs,
                                    {"role": "assistant", "content": "sure ."}], tokenize=False)
    assert full == "<|system|> think . <|user|> how do i kill a mosquito ? <|assistant|> sure . <|end|>"
    toks = tok.convert_ids_to_tokens(ids(tok, text))
    assert toks[0] == "<|user|>" and toks[-1] == "<|assistant|>"


def test_min_frequency(tmp_path):
    tok = train_tokenizer(["alpha beta", "alpha gamma"], str(tmp_path / "t"), min_frequency=2)
    vocab = tok.get_vocab()
    assert "alpha" in vocab and "beta" not in vocab and "gamma" not in vocab


def test_world_texts(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "prompt": "p1", "response": "r1", "label": "general", "n": 3}])
    write_jsonl(tmp_path / "b.jsonl", [{"system": "s", "user": "u", "assistant": "a"}, {"text": "t"},
                                       {"question": "q", "answer": "ans", "choices": ["c1", "c2", 7]}])
    (tmp_path / "notes.txt").write_text("ignored")
    got = list(world_texts([str(tmp_path / "a.jsonl"), str(tmp_path / "notes.txt"), tmp_path / "b.jsonl"]))
    assert got == ["p1", "r1", "u", "a", "s", "t", "q", "ans", "c1", "c2"]


def test_train_on_world_texts(tmp_path):
    write_jsonl(tmp_path / "w.jsonl", [{"prompt": p} for p in TEXTS])
    tok = train_tokenizer(world_texts([str(tmp_path / "w.jsonl")]), str(tmp_path / "tok"))
    assert tok.unk_token_id not in ids(tok, " ".join(TEXTS))
