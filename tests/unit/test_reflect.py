"""TBR reflections: the quality filter, the internal (self-written) prompt and the teacher's messages."""

from __future__ import annotations

from typing import Any

import pytest

from overrefusal.prompting import alpaca_prompt
from overrefusal.reflect import clean_reflection, filter_reflections, internal_prompt, teacher_examples, teacher_messages

OPEN, CLOSE = "<think>", "</think>"
FMT = {"open_tag": OPEN, "close_tag": CLOSE, "min_kept": 0.0}
SYSTEM = "think about safety before you answer ."


def shot(i: int, response: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"shot-{i}", "prompt": f"shot request {i} ?", "label": "toxic", "category": "c", "source": "t",
            "licence": "MIT", "response": response, **extra}


SHOTS = [shot(0, f"{OPEN} the user wants to kill my boss . this request is harmful . {CLOSE}"),
         shot(1, f"{OPEN} a mosquito is an insect . this request is safe . {CLOSE}", input="in my garden")]


# --------------------------------------------------------------------------- clean_reflection


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{OPEN} the user wants to kill a mosquito . this request is safe . {CLOSE}",
         f"{OPEN} the user wants to kill a mosquito . this request is safe . {CLOSE}"),
        (f"  {OPEN}the user wants to kill a mosquito .{CLOSE} sure , here is how .  ",
         f"{OPEN} the user wants to kill a mosquito . {CLOSE}"),
        (f"a mosquito is an insect . {CLOSE}", f"{OPEN} a mosquito is an insect . {CLOSE}"),  # open tag was in the prompt
        (f"{OPEN}\n  one {CLOSE} two {CLOSE}", f"{OPEN} one {CLOSE}"),  # only up to the first close tag
    ],
)
def test_clean_reflection_ok_normalised(text, expected):
    assert clean_reflection(text, OPEN, CLOSE) == (expected, "ok")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{OPEN} the user wants to kill a mosquito . this request", "unfinished"),
        ("", "unfinished"),
        (f"{OPEN} {CLOSE}", "empty"),
        (f"{OPEN}\n \t{CLOSE} sure .", "empty"),
        (CLOSE, "empty"),
        (f"{OPEN} sorry , i cannot help {CLOSE}", "refusal_only"),
        (f"{OPEN} Sorry, I cannot help with that. {CLOSE}", "refusal_only"),
        (f"{OPEN} i cannot assist with this request . {CLOSE} sorry .", "refusal_only"),
        (f"{OPEN} As an AI, I will not. {CLOSE}", "refusal_only"),
    ],
)
def test_clean_reflection_rejects(text, reason):
    assert clean_reflection(text, OPEN, CLOSE) == (None, reason)


def test_clean_reflection_is_idempotent():
    refl, why = clean_reflection(f"{OPEN} body text . {CLOSE} answer", OPEN, CLOSE)
    assert why == "ok"
    assert clean_reflection(refl, OPEN, CLOSE) == (refl, "ok")


def test_clean_reflection_custom_tags():
    assert clean_reflection("[R] why it is fine [/R] sure", "[R]", "[/R]") == ("[R] why it is fine [/R]", "ok")
    assert clean_reflection(f"{OPEN} body {CLOSE}", "[R]", "[/R]") == (None, "unfinished")


def test_filter_reflections_keeps_ok_and_counts_the_rest():
    raw = {
        "a": f"{OPEN} a mosquito is an insect . {CLOSE} sure .",
        "b": f"{OPEN} the user wants",
        "c": f"{OPEN} {CLOSE}",
        "d": f"{OPEN} sorry , i cannot help {CLOSE}",
        "e": f"{OPEN} my boss is a person . this request is harmful . {CLOSE}",
    }
    kept, counts = filter_reflections(raw, FMT)
    assert kept == {"a": f"{OPEN} a mosquito is an insect . {CLOSE}",
                    "e": f"{OPEN} my boss is a person . this request is harmful . {CLOSE}"}
    assert counts == {"ok": 2, "unfinished": 1, "empty": 1, "refusal_only": 1}
    assert sum(counts.values()) == len(raw)
    assert filter_reflections(raw, {**FMT, "min_kept": 0.4}) == (kept, counts)  # exactly 2/5 kept: enough


def test_filter_reflections_fails_below_min_kept():
    raw = {"a": f"{OPEN} a mosquito is an insect . {CLOSE}", "b": f"{OPEN} sorry , i cannot {CLOSE}",
           "c": f"{OPEN} unfinished"}
    with pytest.raises(ValueError) as info:
        filter_reflections(raw, {**FMT, "min_kept": 0.8})
    msg = str(info.value)
    assert "1 of 3" in msg and "min_kept" in msg and "80%" in msg
    assert "refusal_only" in msg  # says why they were dropped


def test_filter_reflections_empty():
    assert filter_reflections({}, {**FMT, "min_kept": 1.0}) == ({}, {"ok": 0, "unfinished": 0, "empty": 0, "refusal_only": 0})


# --------------------------------------------------------------------------- prompts


def test_internal_prompt_chat(tiny_tokenizer):
    prompt = "how do i kill a python process ?"
    text = internal_prompt(tiny_tokenizer, SHOTS, prompt, SYSTEM, "chat", OPEN)
    assert text.endswith(f"<|assistant|>{OPEN}")
    assert SYSTEM in text
    # worked examples come first, as earlier turns, then the request
    pos = [text.index(s) for s in (SYSTEM, "shot request 0 ?", SHOTS[0]["response"], "shot request 1 ?\n\nin my garden",
                                   SHOTS[1]["response"], prompt)]
    assert pos == sorted(pos)
    expected = tiny_tokenizer.apply_chat_template(teacher_messages(SHOTS, prompt, SYSTEM), tokenize=False,
                                                  add_generation_prompt=True)
    assert text == expected + OPEN


def test_internal_prompt_chat_without_shots_or_system(tiny_tokenizer):
    text = internal_prompt(tiny_tokenizer, [], "hello ?", "", "chat", OPEN)
    assert text == "<s><|user|>hello ?</s><|assistant|><think>"


def test_internal_prompt_alpaca():
    prompt = "how do i kill a python process ?"
    text = internal_prompt(None, SHOTS, prompt, SYSTEM, "alpaca", OPEN)
    assert text.endswith(alpaca_prompt(prompt) + OPEN)
    assert text.startswith(alpaca_prompt("shot request 0 ?") + SHOTS[0]["response"])
    assert alpaca_prompt("shot request 1 ?\n\nin my garden") + SHOTS[1]["response"] in text
    assert text.count("### Instruction:") == 3
    assert internal_prompt(None, [], prompt, SYSTEM, "alpaca", OPEN) == alpaca_prompt(prompt) + OPEN


def test_teacher_messages():
    msgs = teacher_messages(SHOTS, "the request ?", SYSTEM)
    assert msgs == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "shot request 0 ?"}, {"role": "assistant", "content": SHOTS[0]["response"]},
        {"role": "user", "content": "shot request 1 ?\n\nin my garden"},
        {"role": "assistant", "content": SHOTS[1]["response"]},
        {"role": "user", "content": "the request ?"},
    ]
    assert teacher_messages([], "q ?", "") == [{"role": "user", "content": "q ?"}]


def test_teacher_examples():
    ex = teacher_examples(SHOTS, SYSTEM)
    assert ex[1] == {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "shot request 1 ?\n\nin my garden"}],
        "completion": [{"role": "assistant", "content": SHOTS[1]["response"]}],
    }
    assert teacher_examples(SHOTS[:1], "")[0]["prompt"] == [{"role": "user", "content": "shot request 0 ?"}]
    assert teacher_examples([], SYSTEM) == []
