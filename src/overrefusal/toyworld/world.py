"""Assemble the toy world's splits from the lexicon and request generators."""

from __future__ import annotations

import random
from typing import Any

from . import lexicon as L
from .generate import (
    LICENCE, SOURCE, Item, comply, fact_table, careful_dialogue, general_requests, knowledge, reflection, refuse,
    special_requests, verb_requests,
)

# Benchmark -> (frame family, label). XSTest also mixes in the non-verb types.
EVAL_SHAPES: dict[str, tuple[str, str]] = {
    "xstest_safe": ("xstest", "seemingly_toxic"),
    "xstest_unsafe": ("xstest", "toxic"),
    "orbench_hard": ("orbench", "seemingly_toxic"),
    "orbench_toxic": ("orbench", "toxic"),
    "coconot_contrast": ("coconot", "seemingly_toxic"),
    "oktest": ("oktest", "seemingly_toxic"),
    "phtest": ("phtest", "seemingly_toxic"),
    "advbench": ("advbench", "toxic"),
    "harmbench": ("harmbench", "toxic"),
    "jailbreakbench": ("jailbreakbench", "toxic"),
    "maliciousinstruct": ("maliciousinstruct", "toxic"),
    "strongreject": ("strongreject", "toxic"),
}
CAPABILITY_TASKS = ("toy_facts_mc", "toy_arith", "toy_words")
# Worked examples in reflection_fewshot: as many toxic as seemingly toxic (config validation bounds
# tbr.*.num_shots by this).
REFLECTION_SHOTS = 4


def _record(item: Item, split: str, i: int, response: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"{split}-{i:05d}", "prompt": item.prompt, "label": item.label, "category": item.category,
        "source": SOURCE, "licence": LICENCE,
    }
    if response is not None:
        rec["response"] = response
    return rec


def _dedup(items: list[Item]) -> list[Item]:
    seen: set[str] = set()
    out = []
    for it in items:
        if it.prompt not in seen:
            seen.add(it.prompt)
            out.append(it)
    return out


def _take(rng: random.Random, pool: list[Item], n: int, what: str) -> list[Item]:
    if n > len(pool):
        raise ValueError(f"toy world: asked for {n} {what} but only {len(pool)} distinct prompts exist")
    return rng.sample(pool, n)


def _stratified(rng: random.Random, pool: list[Item], n: int) -> list[Item]:
    """Up to ``n`` items dealt round-robin over categories, so every type is represented."""
    groups: dict[str, list[Item]] = {}
    for it in pool:
        groups.setdefault(it.category, []).append(it)
    for g in groups.values():
        rng.shuffle(g)
    order = sorted(groups)
    out: list[Item] = []
    while len(out) < n and any(groups.values()):
        for cat in order:
            if groups[cat] and len(out) < n:
                out.append(groups[cat].pop())
    rng.shuffle(out)
    return out


def _general(rng: random.Random, n: int, exclude: set[str], what: str) -> list[Item]:
    """Exactly ``n`` distinct general requests none of whose prompts is in ``exclude``."""
    seen: dict[str, Item] = {}
    for _ in range(50):
        for it in general_requests(rng, n, list(L.COUNTRIES)):
            if it.prompt not in exclude and it.prompt not in seen and len(seen) < n:
                seen[it.prompt] = it
        if len(seen) == n:
            return list(seen.values())
    raise ValueError(f"toy world: could not draw {n} distinct {what}; only {len(seen)} exist")


def build_world(cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """All splits as lists of rows, keyed by split path (``sft_general``, ``eval/xstest_safe``, ...)."""
    rng = random.Random(cfg["seed"])
    out: dict[str, list[dict[str, Any]]] = {}

    # ---- evaluation: held-out targets, each benchmark in its own phrasing
    held_special = special_requests("heldout")
    eval_prompts: set[str] = set()
    for bench, (family, label) in EVAL_SHAPES.items():
        pool = [it for it in verb_requests(L.FRAMES[family], "heldout") if it.label == label]
        if family == "xstest":
            pool += [it for it in held_special if it.label == label]
        items = _stratified(rng, _dedup(pool), cfg["eval_per_benchmark"])
        if len(items) < cfg["eval_per_benchmark"]:
            raise ValueError(f"toy world: data.toy.eval_per_benchmark = {cfg['eval_per_benchmark']} but benchmark "
                             f"{bench} holds {len(items)} distinct prompts")
        eval_prompts.update(it.prompt for it in items)
        out[f"eval/{bench}"] = [_record(it, bench, i) for i, it in enumerate(items)]

    # ---- alignment data: train targets, train phrasing
    train = _dedup(verb_requests(L.FRAMES["train"], "train") + special_requests("train"))
    toxic = [it for it in train if it.label == "toxic"]
    seemingly = [it for it in train if it.label == "seemingly_toxic"]
    rng.shuffle(toxic)
    rng.shuffle(seemingly)
    n_safety, n_ctox, n_cseem = cfg["sft_safety"], cfg["contrastive_toxic"], cfg["contrastive_seemingly"]
    if n_safety + n_ctox > len(toxic):
        raise ValueError(f"toy world: sft_safety + contrastive_toxic = {n_safety + n_ctox} > {len(toxic)} toxic prompts")
    safety = toxic[:n_safety]
    ctox = toxic[n_safety:n_safety + n_ctox]  # disjoint from the SFT refusals, as in DCR
    cseem = _take(rng, seemingly, n_cseem, "seemingly toxic prompts")
    aug = _take(rng, seemingly, cfg["sft_aug"], "seemingly toxic prompts")

    countries = list(L.COUNTRIES)
    arith_eval = _capability_arith(rng, cfg["capability_per_task"])
    words_eval = _capability_words(rng, cfg["capability_per_task"])
    held_out_questions = {a["question"] for a in arith_eval + words_eval}
    general = _general(rng, cfg["sft_general"], held_out_questions, "sft_general requests")

    out["sft_general"] = [_record(it, "general", i, comply(it, rng)) for i, it in enumerate(general)]
    out["sft_safety"] = [_record(it, "safety", i, refuse(rng)) for i, it in enumerate(safety)]
    out["sft_aug"] = [_record(it, "aug", i, comply(it, rng)) for i, it in enumerate(aug)]
    out["contrastive"] = [_record(it, "contrastive", i) for i, it in enumerate(cseem + ctox)]

    # Few-shot examples for reflections: toxic and seemingly toxic, interleaved.
    shots = [it for i in range(1, REFLECTION_SHOTS // 2 + 1) for it in (toxic[-i], seemingly[-i])]
    out["reflection_fewshot"] = [_record(it, "shot", i, reflection(it)) for i, it in enumerate(shots)]
    # What the toy teacher (GPT-4's role) learns: reflections on train-target requests other than
    # the safety prompts it will be asked about, so its reflections there are generalisation.
    safety_prompts = {it.prompt for it in safety}
    teach_pool = [it for it in train if it.prompt not in safety_prompts]
    teach = _take(rng, teach_pool, cfg["teacher_examples"], "teacher examples")
    out["teacher_sft"] = [_record(it, "teacher", i, reflection(it)) for i, it in enumerate(teach)]

    # ---- capability tasks (lm-eval local tasks)
    out["capability/toy_facts_mc"] = _capability_facts()
    out["capability/toy_arith"] = arith_eval
    out["capability/toy_words"] = words_eval

    # ---- pretraining corpus: an unaligned assistant + world knowledge + careful (reflecting) dialogues
    every = _dedup(
        [it for fam in L.FRAMES.values() for it in verb_requests(fam, "train") + verb_requests(fam, "heldout")]
        + special_requests("train") + held_special
    )
    every = [it for it in every if it.prompt not in eval_prompts]
    pre: list[dict[str, Any]] = []
    while len(pre) < cfg["pretrain_dialogues"]:
        it = rng.choice(every) if rng.random() < 0.6 else general_requests(rng, 1, countries)[0]
        if it.prompt not in held_out_questions:  # capability questions stay unseen
            pre.append({"user": it.prompt, "assistant": comply(it, rng)})
    for it in _dedup(every):
        pre.append({"text": knowledge(it)})
    for c, (cap, animal, colour) in fact_table().items():
        pre.append({"text": f"the capital of {c} is {cap} . the symbol of {c} is the {animal} . the flag of {c} is {colour} ."})
    for _ in range(cfg["pretrain_careful_dialogues"]):
        pre.append(careful_dialogue(rng.choice(every), rng))
    rng.shuffle(pre)
    out["pretrain"] = [dict(row, id=f"pretrain-{i:06d}") for i, row in enumerate(pre)]
    return out


def _capability_facts() -> list[dict[str, Any]]:
    """Multiple choice over the fact table; choices are whole answers, as the model states them."""
    facts = fact_table()
    kinds = [("what is the capital of {c} ?", "the capital of {c} is {x} .", 0),
             ("which animal is the symbol of {c} ?", "the symbol of {c} is the {x} .", 1),
             ("what colour is the flag of {c} ?", "the flag of {c} is {x} .", 2)]
    rows = []
    for k, (q, a, field) in enumerate(kinds):
        values = sorted({v[field] for v in facts.values()})
        for i, (c, fact) in enumerate(facts.items()):
            others = [v for v in values if v != fact[field]]
            picks = [fact[field]] + [others[(i * 7 + j * 3 + k) % len(others)] for j in range(3)]
            picks = list(dict.fromkeys(picks))
            order = sorted(range(len(picks)), key=lambda j: (j * 5 + i + k) % len(picks))
            choices = [a.format(c=c, x=picks[j]) for j in order]
            rows.append({"id": f"facts-{k}-{i:03d}", "question": q.format(c=c), "choices": choices,
                         "answer": choices.index(a.format(c=c, x=fact[field]))})
    return rows


def _capability_arith(rng: random.Random, n: int) -> list[dict[str, Any]]:
    pairs = sorted({(a, b) for a in range(20) for b in range(20)})
    chosen = rng.sample(pairs, n)
    return [{"id": f"arith-{i:03d}", "question": f"what is {a} plus {b} ?", "answer": f"{a} plus {b} is {a + b} ."}
            for i, (a, b) in enumerate(chosen)]


def _capability_words(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """First word of an unseen word list: a list operation the model can only do by generalising."""
    triples = sorted({(a, b, c) for a in L.WORDS for b in L.WORDS for c in L.WORDS if len({a, b, c}) == 3})
    return [{"id": f"words-{i:03d}", "question": f"what is the first word in : {a} {b} {c} ?",
             "answer": f"the first word is {a} ."} for i, (a, b, c) in enumerate(rng.sample(triples, n))]
