"""The toy world generator: deterministic, held-out evaluation, the splits each paper needs."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.benchmarks import BENCHMARKS, get_benchmark
from overrefusal.io import read_json, read_jsonl, sha256_file
from overrefusal.records import validate_record
from overrefusal.toyworld import EVAL_SHAPES, build_world
from overrefusal.toyworld import generate as G
from overrefusal.toyworld import lexicon as L
from overrefusal.toyworld.files import write_world

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOY = yaml.safe_load((REPO / "config.yaml").read_text())["data"]["toy"]
# Small enough to build in milliseconds; the alignment splits keep the default sizes.
SMALL = {**DEFAULT_TOY, "pretrain_dialogues": 300, "pretrain_careful_dialogues": 100}
TRAIN_SPLITS = ("sft_general", "sft_safety", "sft_aug", "contrastive", "teacher_sft", "reflection_fewshot")
XSTEST_SAFE_TYPES = {
    "homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "historical_events",
    "privacy_public", "privacy_fictional", "nons_group_real_discr", "real_group_nons_discr",
}


@pytest.fixture(scope="module")
def world() -> dict[str, list[dict[str, Any]]]:
    return build_world(copy.deepcopy(DEFAULT_TOY))


def prompts(rows: list[dict[str, Any]]) -> set[str]:
    return {r["prompt"] for r in rows}


def eval_rows(world: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for split, rows in world.items() if split.startswith("eval/") for r in rows]


def heldout_items() -> dict[str, G.Item]:
    items = [it for fam in L.FRAMES.values() for it in G.verb_requests(fam, "heldout")] + G.special_requests("heldout")
    return {it.prompt: it for it in items}


def train_items() -> list[G.Item]:
    return [it for fam in L.FRAMES.values() for it in G.verb_requests(fam, "train")] + G.special_requests("train")


# --------------------------------------------------------------------------- determinism


def test_deterministic_for_a_seed():
    assert build_world(dict(SMALL)) == build_world(dict(SMALL))


def test_different_seed_differs():
    a, b = build_world(dict(SMALL)), build_world({**SMALL, "seed": 1})
    for split in ("sft_safety", "eval/xstest_safe", "contrastive", "pretrain"):
        assert a[split] != b[split], split


def test_does_not_mutate_its_config():
    cfg = dict(SMALL)
    build_world(cfg)
    assert cfg == SMALL


# --------------------------------------------------------------------------- sizes


def test_split_sizes_match_config(world):
    cfg = DEFAULT_TOY
    assert len(world["sft_safety"]) == cfg["sft_safety"]
    assert len(world["sft_aug"]) == cfg["sft_aug"]
    assert len(world["teacher_sft"]) == cfg["teacher_examples"]
    assert Counter(r["label"] for r in world["contrastive"]) == {
        "seemingly_toxic": cfg["contrastive_seemingly"], "toxic": cfg["contrastive_toxic"]}
    assert len(world["capability/toy_arith"]) == cfg["capability_per_task"]
    for bench in EVAL_SHAPES:
        assert len(world[f"eval/{bench}"]) == cfg["eval_per_benchmark"], bench
    n_pre_dialogues = sum(1 for r in world["pretrain"] if "user" in r and "system" not in r)
    n_careful = sum(1 for r in world["pretrain"] if "system" in r)
    assert (n_pre_dialogues, n_careful) == (cfg["pretrain_dialogues"], cfg["pretrain_careful_dialogues"])


@pytest.mark.parametrize("seed", [0, 5])
def test_sft_general_has_the_requested_size(seed):
    """``sft_general: 600`` must give 600 examples (or fail), never silently fewer."""
    w = build_world({**SMALL, "seed": seed})
    assert len(w["sft_general"]) == SMALL["sft_general"]


def test_sft_general_too_many_is_refused_not_truncated():
    cfg = {**SMALL, "sft_general": 5000}
    try:
        w = build_world(cfg)
    except ValueError as exc:
        assert "general" in str(exc)
    else:
        assert len(w["sft_general"]) == 5000, f"asked for 5000 general examples, got {len(w['sft_general'])}"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("sft_safety", 10_000, ("sft_safety", "toxic")), ("contrastive_toxic", 10_000, ("contrastive_toxic", "toxic")),
     ("sft_aug", 10_000, ("10000", "seemingly toxic")), ("contrastive_seemingly", 10_000, ("10000", "seemingly toxic")),
     ("teacher_examples", 100_000, ("100000", "teacher"))],
)
def test_too_many_items_raise_clear_error(key, value, words):
    with pytest.raises(ValueError) as info:
        build_world({**SMALL, key: value})
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert len(re.findall(r"\d+", msg)) >= 2, f"does not say how many were asked for and exist: {msg}"


# --------------------------------------------------------------------------- held-out evaluation


def test_eval_prompts_absent_from_every_training_split(world):
    ev = prompts(eval_rows(world))
    assert ev
    for split in TRAIN_SPLITS:
        leaked = ev & prompts(world[split])
        assert not leaked, (split, sorted(leaked)[:5])
    pre_users = {r["user"] for r in world["pretrain"] if "user" in r}
    pre_texts = " \n ".join(r.get("text", "") for r in world["pretrain"])
    assert not ev & pre_users
    assert not [p for p in ev if p in pre_texts]


def test_capability_questions_absent_from_training(world):
    """The arithmetic capability task is held out: SFT excludes it, and so must the pretraining dialogues."""
    arith = {r["question"] for r in world["capability/toy_arith"]}
    assert not arith & prompts(world["sft_general"])
    pre_users = {r["user"] for r in world["pretrain"] if "user" in r}
    leaked = sorted(arith & pre_users)
    assert not leaked, f"{len(leaked)}/{len(arith)} toy_arith questions are pretraining dialogues, e.g. {leaked[:3]}"


def test_contrastive_toxic_disjoint_from_sft_safety(world):
    ctox = {r["prompt"] for r in world["contrastive"] if r["label"] == "toxic"}
    assert len(ctox) == DEFAULT_TOY["contrastive_toxic"]
    assert not ctox & prompts(world["sft_safety"])


# Benchmarks of the registry the toy world has no counterpart for (real data only).
REAL_ONLY = {"i_malicious", "i_cona", "i_controversial", "q_harm"}


def test_eval_labels_match_benchmark_registry(world):
    assert set(EVAL_SHAPES) == set(BENCHMARKS) - REAL_ONLY
    assert {f"eval/{b}" for b in EVAL_SHAPES} <= set(world)
    for bench in EVAL_SHAPES:
        labels = {r["label"] for r in world[f"eval/{bench}"]}
        assert labels == {get_benchmark(bench).label}, bench


def test_split_labels(world):
    assert {r["label"] for r in world["sft_general"]} == {"general"}
    assert {r["label"] for r in world["sft_safety"]} == {"toxic"}
    assert {r["label"] for r in world["sft_aug"]} == {"seemingly_toxic"}


def test_lexicon_target_halves_disjoint():
    lists = {"PEOPLE": L.PEOPLE, "COUNTRIES": L.COUNTRIES, "PUBLIC_FIGURES": L.PUBLIC_FIGURES,
             "FICTIONAL_PEOPLE": L.FICTIONAL_PEOPLE, "NONSENSE_GROUPS": L.NONSENSE_GROUPS, "REAL_GROUPS": L.REAL_GROUPS}
    lists |= {f"HARMFUL_EXTRA[{v}]": xs for v, xs in L.HARMFUL_EXTRA.items()}
    lists |= {f"BENIGN[{v}]": [o for o, _, _ in xs] for v, xs in L.BENIGN.items()}
    for name, xs in lists.items():
        train, held = G._halves(xs)
        assert train and held, name
        assert not set(train) & set(held), name
        assert len(set(xs)) == len(xs), f"{name} has duplicates"


def test_train_and_heldout_target_objects_disjoint():
    def objs(items):  # definitions share the obj "the word"; their target is the verb
        return {it.obj for it in items if it.category != "definitions"}

    def defined(items):
        return {it.verb for it in items if it.category == "definitions"}

    tr, ho = train_items(), list(heldout_items().values())
    assert not objs(tr) & objs(ho)
    assert not defined(tr) & defined(ho)


def test_eval_prompts_use_heldout_targets(world):
    held = heldout_items()
    train_objs = {it.obj for it in train_items() if it.category != "definitions"}
    train_prompts = {it.prompt for it in train_items()}
    for r in eval_rows(world):
        assert r["prompt"] in held, r["prompt"]
        assert r["prompt"] not in train_prompts
        it = held[r["prompt"]]
        assert it.label == r["label"] and it.category == r["category"]
        if it.category != "definitions":
            assert it.obj not in train_objs, r["prompt"]


def test_eval_targets_never_mentioned_in_alignment_prompts(world):
    """No held-out target (e.g. a person) appears, even inside a longer phrase, in alignment prompts."""
    held = heldout_items()
    targets = {held[r["prompt"]].obj for r in eval_rows(world) if held[r["prompt"]].category != "definitions"}
    align = [r["prompt"] for s in ("sft_safety", "sft_aug", "contrastive") for r in world[s]]
    hits = {}
    for obj in targets:
        pat = re.compile(rf"(?<!\w){re.escape(obj)}(?!\w)")
        found = [p for p in align if pat.search(p)]
        if found:
            hits[obj] = found[:2]
    assert not hits, f"held-out targets seen in alignment data: {hits}"


# --------------------------------------------------------------------------- coverage


def test_all_harm_categories_in_sft_safety(world):
    cats = {r["category"] for r in world["sft_safety"]}
    assert len(L.HARM_CATEGORIES) == 7
    for cat in L.HARM_CATEGORIES:
        assert f"contrast_{cat}" in cats, cat


def test_xstest_safe_covers_every_safe_type(world):
    got = {r["category"] for r in world["eval/xstest_safe"]}
    assert got <= XSTEST_SAFE_TYPES
    assert XSTEST_SAFE_TYPES <= got, f"missing XSTest safe types: {sorted(XSTEST_SAFE_TYPES - got)}"


def test_xstest_safe_pool_has_every_safe_type():
    cats = {it.category for it in heldout_items().values() if it.label == "seemingly_toxic"}
    assert XSTEST_SAFE_TYPES <= cats


# --------------------------------------------------------------------------- content


def test_every_record_validates(world):
    n = 0
    for split, rows in world.items():
        if split == "pretrain" or split.startswith("capability/"):
            continue
        ids = [r["id"] for r in rows]
        assert len(set(ids)) == len(ids), split
        for i, r in enumerate(rows):
            validate_record(r, f"{split}: {i}")
            n += 1
    assert n > 1000


def test_responses(world):
    for r in world["sft_safety"]:
        assert r["response"] in G.REFUSALS
    for r in world["sft_aug"] + world["sft_general"]:
        assert r["response"] and r["response"] not in G.REFUSALS
    for r in world["teacher_sft"] + world["reflection_fewshot"]:
        assert r["response"].startswith(G.THINK_OPEN + " ") and r["response"].endswith(" " + G.THINK_CLOSE)
        verdict = "harmful" if r["label"] == "toxic" else "safe"
        assert f"this request is {verdict} ." in r["response"]


def test_reflection_fewshot_has_both_labels(world):
    assert Counter(r["label"] for r in world["reflection_fewshot"]) == {"toxic": 2, "seemingly_toxic": 2}


def test_teacher_never_sees_safety_prompts(world):
    assert not prompts(world["teacher_sft"]) & prompts(world["sft_safety"])


def test_capability_rows(world):
    facts_table = G.fact_table()
    facts = world["capability/toy_facts_mc"]
    assert len(facts) % len(L.COUNTRIES) == 0 and facts
    assert len({r["id"] for r in facts}) == len(facts)
    for row in facts:
        m = re.fullmatch(r"(what is the capital|which animal is the symbol|what colour is the flag) of (\w+) \?",
                         row["question"])
        assert m, row["question"]
        cap, animal, colour = facts_table[m.group(2)]
        right = {"what is the capital": cap, "which animal is the symbol": animal, "what colour is the flag": colour}
        correct = row["choices"][row["answer"]]
        assert re.search(rf"\b{right[m.group(1)]} \.$", correct), (row["question"], correct)
        assert len(set(row["choices"])) == len(row["choices"]) >= 2
    for row in world["capability/toy_arith"]:
        a, b = map(int, re.findall(r"\d+", row["question"]))
        assert row["answer"] == f"{a} plus {b} is {a + b} ."


def test_pretrain_rows(world):
    pre = world["pretrain"]
    assert len({r["id"] for r in pre}) == len(pre)
    for r in pre:
        assert ("text" in r) != ("user" in r)
        if "system" in r:
            assert r["system"] == G.CAREFUL_SYSTEM and r["assistant"].startswith(G.THINK_OPEN)
    # The base model answers everything when not told to reflect: no refusals in plain dialogues.
    plain = [r for r in pre if "user" in r and "system" not in r]
    assert not [r for r in plain if r["assistant"] in G.REFUSALS]


# --------------------------------------------------------------------------- files


def test_write_world_files_and_manifest(tmp_path):
    manifest_path = tmp_path / "data" / "manifest.json"
    manifest = write_world(dict(SMALL), str(manifest_path))
    on_disk = read_json(manifest_path)
    assert on_disk == manifest
    assert on_disk["config"] == SMALL and on_disk["source"] == "toy"
    world = build_world(dict(SMALL))
    assert set(on_disk["files"]) == set(world)
    for split, entry in on_disk["files"].items():
        path = tmp_path / "data" / f"{split}.jsonl"
        assert path.is_file(), split
        rows = read_jsonl(path)
        assert entry["n"] == len(rows) == len(world[split]), split
        assert entry["sha256"] == sha256_file(path), split
        assert rows == world[split]
        if "label" in rows[0]:
            assert entry["by_label"] == dict(Counter(r["label"] for r in rows))
            assert sum(entry["by_category"].values()) == len(rows)
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_write_world_is_byte_identical_on_rerun(tmp_path):
    a = write_world(dict(SMALL), str(tmp_path / "a" / "manifest.json"))
    b = write_world(dict(SMALL), str(tmp_path / "b" / "manifest.json"))
    assert a == b
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
