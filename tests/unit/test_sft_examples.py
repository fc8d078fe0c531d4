"""``sft.build_examples``: TRL prompt-completion examples, and TBR's gamma-proportion of reflections."""

from __future__ import annotations

from typing import Any

import pytest

from overrefusal.prompting import ALPACA_NO_INPUT
from overrefusal.sft import build_examples

REFUSAL = "sorry , i cannot help with that ."


def rec(split: str, i: int, label: str, response: str) -> dict[str, Any]:
    return {"id": f"{split}-{i:03d}", "prompt": f"{split} request number {i} ?", "label": label,
            "category": "c", "source": "test", "licence": "MIT", "response": response}


def data(n_general: int = 6, n_safety: int = 10) -> dict[str, list[dict[str, Any]]]:
    return {
        "sft_general": [rec("general", i, "general", f"answer {i} .") for i in range(n_general)],
        "sft_safety": [rec("safety", i, "toxic", REFUSAL) for i in range(n_safety)],
    }


def refl(rid: str) -> str:
    return f"<think> reflection on {rid} . </think>"


def reflections_for(d, *, skip: set[str] = frozenset(), splits=("sft_safety",)) -> dict[str, str]:
    return {r["id"]: refl(r["id"]) for s in splits for r in d[s] if r["id"] not in skip}


def completion_of(ex: dict[str, Any]) -> str:
    c = ex["completion"]
    return c if isinstance(c, str) else c[0]["content"]


def prompt_of(ex: dict[str, Any]) -> str:
    p = ex["prompt"]
    return p if isinstance(p, str) else p[-1]["content"]


def by_prompt(examples) -> dict[str, str]:
    return {prompt_of(e): completion_of(e) for e in examples}


def reflected(examples) -> set[str]:
    """Prompts whose completion carries a reflection."""
    return {p for p, c in by_prompt(examples).items() if c.startswith("<think>")}


def test_no_reflections_gives_plain_stl():
    d = data()
    ex, stats = build_examples(d, template="chat")
    assert len(ex) == 16
    assert stats == {"n_by_split": {"sft_general": 6, "sft_safety": 10}, "n_reflected": 0, "n_missing_reflection": 0}
    got = by_prompt(ex)
    for s in d.values():
        for r in s:
            assert got[r["prompt"]] == r["response"]


def test_gamma_zero_no_reflection():
    d = data()
    ex, stats = build_examples(d, template="chat", reflections=reflections_for(d), gamma=0.0, seed=0)
    assert not reflected(ex)
    assert stats["n_reflected"] == 0 and stats["n_missing_reflection"] == 0


def test_gamma_one_every_safety_example_with_reflection_gets_it():
    d = data()
    ex, stats = build_examples(d, template="chat", reflections=reflections_for(d), gamma=1.0, seed=0)
    got = by_prompt(ex)
    for r in d["sft_safety"]:
        assert got[r["prompt"]] == f"{refl(r['id'])} {REFUSAL}"
    assert stats["n_reflected"] == 10 and stats["n_missing_reflection"] == 0


@pytest.mark.parametrize(("n", "gamma"), [(10, 0.5), (7, 0.5), (9, 0.3), (20, 0.25)])
def test_gamma_fraction_is_chosen_and_deterministic(n, gamma):
    d = data(n_safety=n)
    r = reflections_for(d)
    ex1, stats1 = build_examples(d, template="chat", reflections=r, gamma=gamma, seed=3)
    ex2, stats2 = build_examples(d, template="chat", reflections=r, gamma=gamma, seed=3)
    assert len(reflected(ex1)) == stats1["n_reflected"] == round(gamma * n)
    assert ex1 == ex2 and stats1 == stats2


def test_gamma_choice_depends_on_seed():
    d = data(n_safety=40)
    r = reflections_for(d)
    chosen = {frozenset(reflected(build_examples(d, template="chat", reflections=r, gamma=0.5, seed=s)[0]))
              for s in range(4)}
    assert len(chosen) > 1


def test_choice_independent_of_row_order():
    d = data(n_safety=12)
    r = reflections_for(d)
    rev = {k: list(reversed(v)) for k, v in d.items()}
    a = reflected(build_examples(d, template="chat", reflections=r, gamma=0.5, seed=1)[0])
    b = reflected(build_examples(rev, template="chat", reflections=r, gamma=0.5, seed=1)[0])
    assert a == b


def test_missing_reflections_counted_and_keep_plain_refusal():
    d = data()
    missing = {"safety-001", "safety-004", "safety-007"}
    r = reflections_for(d, skip=missing)
    r["safety-002"] = ""  # empty counts as missing
    ex, stats = build_examples(d, template="chat", reflections=r, gamma=1.0, seed=0)
    assert stats["n_missing_reflection"] == 4 and stats["n_reflected"] == 6
    got = by_prompt(ex)
    for rid in missing | {"safety-002"}:
        prompt = next(x["prompt"] for x in d["sft_safety"] if x["id"] == rid)
        assert got[prompt] == REFUSAL


def test_general_examples_never_get_reflections():
    d = data()
    r = reflections_for(d, splits=("sft_general", "sft_safety"))
    ex, stats = build_examples(d, template="chat", reflections=r, gamma=1.0, seed=0)
    got = by_prompt(ex)
    for row in d["sft_general"]:
        assert got[row["prompt"]] == row["response"]
    assert stats["n_reflected"] == 10


def test_examples_are_shuffled_deterministically():
    d = data(n_general=30, n_safety=30)
    a, _ = build_examples(d, template="chat", seed=0)
    b, _ = build_examples(d, template="chat", seed=0)
    c, _ = build_examples(d, template="chat", seed=1)
    in_order = [r["prompt"] for s in d.values() for r in s]
    assert a == b
    assert [prompt_of(e) for e in a] != in_order
    assert a != c


def test_chat_examples_are_conversational():
    d = data(n_general=1, n_safety=1)
    ex, _ = build_examples(d, template="chat", reflections=reflections_for(d), gamma=1.0)
    for e in ex:
        assert set(e) == {"prompt", "completion"}
        assert e["prompt"] == [{"role": "user", "content": prompt_of(e)}]
        assert len(e["completion"]) == 1 and e["completion"][0]["role"] == "assistant"
    assert by_prompt(ex)[d["sft_safety"][0]["prompt"]] == f"{refl('safety-000')} {REFUSAL}"


def test_chat_example_with_input_keeps_it_in_the_user_turn():
    d = data(n_general=1, n_safety=0)
    d["sft_general"][0]["input"] = "some context"
    (e,), _ = build_examples(d, template="chat")
    assert e["prompt"][0]["content"] == "general request number 0 ?\n\nsome context"


def test_alpaca_examples_are_plain_strings_with_stl_template():
    d = data(n_general=2, n_safety=2)
    ex, _ = build_examples(d, template="alpaca", reflections=reflections_for(d), gamma=1.0)
    got = {e["prompt"]: e["completion"] for e in ex}
    assert all(isinstance(e["prompt"], str) and isinstance(e["completion"], str) for e in ex)
    for r in d["sft_general"]:
        p = ALPACA_NO_INPUT.format(instruction=r["prompt"])
        assert p.startswith("Below is an instruction") and p.endswith("### Response:\n")
        assert got[p] == r["response"]
    r = d["sft_safety"][1]
    assert got[ALPACA_NO_INPUT.format(instruction=r["prompt"])] == f"{refl(r['id'])} {REFUSAL}"
