"""Tuning parts of evaluation benchmarks (data.real.tuning), per-benchmark evaluation sizes and their checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from overrefusal.config import semantic_errors, validate_config
from overrefusal.data import SOURCES, stage_source
from overrefusal.data.card import write_card
from overrefusal.data.plan import plan
from overrefusal.data.splits import InsufficientDataError, build_splits, eval_subset, write_eval_set
from overrefusal.data.text import normalise
from overrefusal.data.tuning import OverlapError, check_disjoint, overlap_counts, split_tuning
from overrefusal.io import read_json, write_jsonl
from overrefusal.records import read_records
from overrefusal.report import tables
from tests.pipeline import preset_config
from tests.unit.test_real_data import BENCHES, FIXTURES, _real_cfg, fixture_pins

API_ENV = {"OPENAI_API_KEY": "sk-test"}


WORDS = ("kill", "process", "shoot", "photo", "bake", "bread", "river", "market", "engine", "garden", "violin",
         "tax", "planet", "ladder", "winter", "copper", "harbour", "pencil", "island", "signal")


def recs(n: int) -> list[dict[str, Any]]:
    """n prompts of eight words each, far apart at ratio 90 (each one a different seeded draw)."""
    import random

    return [{"id": f"b-{i:03d}", "prompt": " ".join(random.Random(i).choices(WORDS, k=8)), "label": "seemingly_toxic",
             "category": "c", "source": "t", "licence": "x"} for i in range(n)]


# ------------------------------------------------------------------------------ the split rule


def test_the_cut_is_seeded_deterministic_disjoint_and_recorded():
    rows = recs(40)
    a_t, a_e, info = split_tuning(rows, {"n": 10, "seed": 0}, "oktest", 90)
    b_t, b_e, _ = split_tuning(list(rows), {"n": 10, "seed": 0}, "oktest", 90)
    assert a_t == b_t and a_e == b_e  # deterministic
    assert len(a_t) == 10 and len(a_e) == 30 and not {r["id"] for r in a_t} & {r["id"] for r in a_e}
    assert a_t == [r for r in rows if r in a_t]  # the benchmark's own order
    assert (info["n_benchmark"], info["n_tuning"], info["n_rest"], info["seed"]) == (40, 10, 30, 0)
    assert "sha256('0:oktest:' + normalised prompt)" in info["rule"]
    other, _, _ = split_tuning(rows, {"n": 10, "seed": 1}, "oktest", 90)
    assert other != a_t  # the seed moves the cut
    # a prompt's side depends on its text alone, not on the other prompts: shrinking the benchmark keeps it
    smaller_t, _, _ = split_tuning(rows[:39], {"n": 9, "seed": 0}, "oktest", 90)
    assert {r["id"] for r in smaller_t} <= {r["id"] for r in a_t} | {rows[39]["id"]}


def test_a_fraction_is_rounded_to_whole_prompts():
    t, e, info = split_tuning(recs(379), {"fraction": 0.2, "seed": 0}, "coconot_contrast", 90)
    assert len(t) == info["n_tuning"] == 76 and len(e) == 303


def test_near_duplicates_stay_on_one_side():
    rows = recs(30)
    twin = {**rows[0], "id": "b-twin", "prompt": rows[0]["prompt"] + "!"}  # equal after normalisation
    near = {**rows[1], "id": "b-near", "prompt": rows[1]["prompt"].replace("about", "abut")}
    rows += [twin, near]
    for seed in range(6):
        t, e, _ = split_tuning(rows, {"n": 8, "seed": seed}, "advbench", 90)
        assert len(t) == 8
        assert overlap_counts(t, e, 90) == (0, 0)
        for a, b in (("b-000", "b-twin"), ("b-001", "b-near")):
            assert (a in {r["id"] for r in t}) == (b in {r["id"] for r in t})


def test_an_overlap_names_the_source_and_the_count():
    rows = recs(10)
    evaluated = rows[3:] + [{**rows[0], "id": "e-x", "prompt": rows[0]["prompt"].upper()},  # exact once normalised
                            {**rows[1], "id": "e-y", "prompt": rows[1]["prompt"] + " x"},
                            {**rows[2], "id": "e-z", "prompt": rows[2]["prompt"] + "s"}]
    with pytest.raises(OverlapError, match=r"^the tuning part of xstest_safe overlaps the evaluation part of oktest: "
                                           r"3 evaluated prompts \(1 exact, 2 near-duplicates at ratio >= 90\)"):
        check_disjoint(rows[:3], evaluated, "xstest_safe", 90, evaluated_name="oktest")
    check_disjoint(rows[:3], rows[3:], "xstest_safe", 90)  # disjoint: quiet


def test_a_part_that_leaves_nothing_is_refused():
    with pytest.raises(OverlapError, match=r"data\.real\.tuning\.oktest\.n asks for a tuning part of 5 of benchmark "
                                           r"oktest's 5 prompts"):
        split_tuning(recs(5), {"n": 5, "seed": 0}, "oktest", 90)


# ------------------------------------------------------------------------------ per-benchmark sizes


def test_per_benchmark_sizes_and_null_for_whole():
    rows = recs(20)
    subset = {"n": None, "seed": 0, "per_benchmark": {"phtest": 5}}
    assert eval_subset(rows, subset, "oktest") == rows  # null: whole
    some = eval_subset(rows, subset, "phtest")
    assert len(some) == 5 and some == [r for r in rows if r in some]
    with pytest.raises(InsufficientDataError, match=r"^data\.real\.eval_subset\.per_benchmark\.phtest = 5 but "
                                                    r"benchmark phtest holds 4 prompts after its tuning part of 16$"):
        eval_subset(rows[:4], subset, "phtest", n_tuning=16)
    assert len(eval_subset(rows, {"n": 3, "seed": 0, "per_benchmark": {"phtest": None}}, "oktest")) == 3
    assert eval_subset(rows, {"n": 3, "seed": 0, "per_benchmark": {"phtest": None}}, "phtest") == rows


def lines(cfg: dict[str, Any], key: str) -> list[str]:
    return [e for e in semantic_errors(cfg, "cfg", env=API_ENV) if key in e]


def smol(tmp_path: Path, *over: str) -> dict[str, Any]:
    cfg = preset_config("smol", *over)
    cfg["data"]["raw_dir"] = str(tmp_path)
    return cfg


def test_the_study_overlay_validates():
    validate_config(preset_config("smol", "smol_study"), "smol_study", env=API_ENV)


def test_a_size_above_what_the_tuning_part_leaves_is_refused_before_any_job(tmp_path):
    cfg = smol(tmp_path, "smol_study")
    cfg["data"]["real"]["eval_subset"]["per_benchmark"]["xstest_safe"] = 200
    assert lines(cfg, "xstest_safe") == [
        "cfg: data.real.eval_subset.per_benchmark.xstest_safe = 200 and data.real.tuning.xstest_safe.n gives a tuning "
        "part of 100, but benchmark xstest_safe holds 250 prompts (the safe prompts of xstest): 50 would be both "
        "tuned on and evaluated; lower one, or evaluate every prompt the tuning part leaves (150) with null"]
    cfg["data"]["real"]["eval_subset"]["per_benchmark"]["xstest_safe"] = 150
    assert lines(cfg, "xstest_safe") == []
    cfg["data"]["real"]["eval_subset"]["per_benchmark"]["phtest"] = 3261
    assert lines(cfg, "phtest") == ["cfg: data.real.eval_subset.per_benchmark.phtest = 3261 but benchmark phtest "
                                    "holds at most 3260 prompts (the rows of phtest)"]
    cfg["data"]["real"]["tuning"]["oktest"] = {"fraction": 0.999, "seed": 0}
    assert lines(cfg, "tuning.oktest") == [
        "cfg: data.real.tuning.oktest.fraction: a tuning part of 300 of benchmark oktest's 300 prompts (the rows of "
        "oktest) leaves nothing on one side"]


def test_a_training_split_from_an_evaluated_benchmark_is_refused_once_tuning_parts_exist(tmp_path):
    cfg = smol(tmp_path, "smol_study")
    assert lines(cfg, "data.real.splits") == []  # the study draws DCR's seemingly toxic set from the tuning part
    del cfg["data"]["real"]["tuning"]["xstest_safe"]
    assert lines(cfg, "splits.contrastive_seemingly.source") == [
        "cfg: data.real.splits.contrastive_seemingly.source: xstest_safe holds 250 evaluated prompts of benchmark "
        "xstest_safe, so the split would train on prompts it is judged on; give xstest_safe a tuning part "
        "(data.real.tuning.xstest_safe) and name xstest_safe as the source, or draw from a source that is not "
        "evaluated"]
    cfg = smol(tmp_path, "smol_study")
    cfg["data"]["real"]["splits"]["contrastive_seemingly"] = {"source": "xstest", "n": 100}
    got = lines(cfg, "splits.contrastive_seemingly.source")  # the whole file holds both benchmarks' evaluated prompts
    assert len(got) == 2 and "xstest holds 150 evaluated prompts of benchmark xstest_safe" in got[0]
    assert "xstest holds 200 evaluated prompts of benchmark xstest_unsafe" in got[1]
    cfg = smol(tmp_path, "smol_study")
    cfg["data"]["real"]["splits"]["contrastive_seemingly"]["n"] = 101
    assert lines(cfg, "splits.contrastive_seemingly.n") == [
        "cfg: data.real.splits.contrastive_seemingly.n = 101 but it draws from the tuning part of xstest_safe, which "
        "holds 100 prompts"]
    # without tuning parts, DCR's in-distribution design (smol.yaml) stays allowed and flagged in the data card
    assert lines(smol(tmp_path), "splits.contrastive_seemingly") == []


# ------------------------------------------------------------------------------ on the fixture mirror


def _build(tmp_path: Path, real: dict[str, Any], tag: str = "a", tuning_override: dict[str, list] | None = None):
    out = tmp_path / tag
    p = plan(real, str(FIXTURES), BENCHES)
    staged = {}
    for s in p["stage"]:
        staged[s] = str(out / "staged" / f"{s}.json")
        Path(staged[s]).parent.mkdir(parents=True, exist_ok=True)
        Path(staged[s]).write_text(json.dumps(stage_source(SOURCES[s], raw_dir=str(FIXTURES), download_dir=None,
                                                            pins=fixture_pins(FIXTURES))))
    evals, reports, tuning = {}, {}, {}
    for b in BENCHES:
        evals[b] = str(out / "data" / "eval" / f"{b}.jsonl")
        reports[b] = str(out / "reports" / f"eval_{b}.json")
        if b in real.get("tuning", {}):
            tuning[b] = str(out / "data" / "tuning" / f"{b}.jsonl")
        write_eval_set(b, read_json(staged[p["benchmarks"][b]]), real, evals[b], reports[b], tuning.get(b))
    for b, rows in (tuning_override or {}).items():
        write_jsonl(tuning[b], rows)
    train_staged = {k: v for k, v in staged.items() if k in {"alpaca", "hh_red_team", "coconot_pref", "xstest",
                                                             "stl_safety", *real.get("capability", {})}}
    build_splits({"real": real, "plan": p, "tuning_files": tuning}, train_staged, evals, str(out / "data"),
                 str(out / "leak.csv"), str(out / "leak.md"), str(out / "leak.json"), str(out / "data" / "manifest.json"))
    write_card(str(out / "data" / "manifest.json"), staged, reports, str(out / "card.md"), str(out / "card.json"))
    return out


def _tuned_cfg() -> dict[str, Any]:
    # the fixture's XSTest-safe prompts come in 10 near-duplicate pairs (the other fixtures are one template each)
    real = _real_cfg(tuning={"xstest_safe": {"n": 12, "seed": 0}},
                     eval_subset={"n": None, "seed": 0, "per_benchmark": {"phtest": 3}})
    real["splits"]["contrastive_seemingly"]["n"] = 10
    return real


def test_tuning_parts_feed_the_contrastive_split_and_the_card_lists_both_parts(tmp_path):
    real = _tuned_cfg()
    out = _build(tmp_path, real)
    d = out / "data"
    tune = read_records(d / "tuning" / "xstest_safe.jsonl")
    ev = read_records(d / "eval" / "xstest_safe.jsonl")
    assert len(tune) == 12 and not {normalise(r["prompt"]) for r in tune} & {normalise(r["prompt"]) for r in ev}
    seemingly = [r for r in read_records(d / "contrastive.jsonl") if r["label"] == "seemingly_toxic"]
    assert len(seemingly) == 10 and {normalise(r["prompt"]) for r in seemingly} <= {normalise(r["prompt"]) for r in tune}
    evaluated = {normalise(r["prompt"]) for b in BENCHES for r in read_records(d / "eval" / f"{b}.jsonl")}
    assert not {normalise(r["prompt"]) for r in seemingly} & evaluated
    assert len(read_records(d / "eval" / "phtest.jsonl")) == 3
    manifest = read_json(d / "manifest.json")
    # the contrastive split is held to XSTest-safe's evaluation part now; the unsafe twins stay in-distribution
    assert manifest["in_distribution"] == ["contrastive -> xstest_unsafe"]
    assert manifest["files"]["tuning/xstest_safe"]["n"] == 12 and manifest["files"]["tuning/xstest_safe"]["sha256"]
    card = read_json(out / "card.json")
    xs = card["parts"]["xstest_safe"]
    assert (xs["n_benchmark"], xs["n_tuning"], xs["n_evaluated"], xs["n_unused"]) == (20, 12, 8, 0)
    assert card["parts"]["phtest"]["n_evaluated"] == 3 and card["parts"]["phtest"]["n_tuning"] == 0
    md = (out / "card.md").read_text()
    assert "## Tuning and evaluation parts" in md and "| xstest_safe |" in md
    assert "split contrastive_seemingly draws from the tuning part of xstest_safe (12 prompts)" in md
    leak = (out / "leak.md").read_text()
    assert "| tuning/xstest_safe | xstest_safe |" in leak
    again = _build(tmp_path, real, "b")
    for f in sorted(d.rglob("*.jsonl")):
        assert f.read_bytes() == (again / "data" / f.relative_to(d)).read_bytes(), f


def test_a_tuning_part_holding_another_benchmarks_evaluated_prompt_fails_naming_both_and_the_count(tmp_path):
    real = _tuned_cfg()
    ok = read_records(_build(tmp_path, real, "ref") / "data" / "eval" / "oktest.jsonl")
    own = read_records(tmp_path / "ref" / "data" / "tuning" / "xstest_safe.jsonl")
    planted = own[:-2] + [{**ok[0], "label": "seemingly_toxic"}, {**ok[1], "label": "seemingly_toxic"}]
    with pytest.raises(OverlapError, match=r"the tuning part of xstest_safe holds 6 of the 6 evaluated prompts of "
                                           r"oktest \(2 exact, 4 near\)"):  # the fixture's OKTest is one template
        _build(tmp_path, real, "bad", tuning_override={"xstest_safe": planted})


# ------------------------------------------------------------------------------ the summary table


def test_summary_reports_xstest_apart_from_the_out_of_distribution_sets_with_its_n():
    rows = []
    for method, xs, ood in (("stl", 0.5, (0.6, 0.8)), ("no_safety", 0.9, (1.0, 1.0))):
        rows += [
            {"model": "m", "method": method, "seed": 0, "benchmark": "xstest_safe", "suite": "over_refusal",
             "answered": xs, "refused": 1 - xs, "invalid": 0.0, "n": 150},
            {"model": "m", "method": method, "seed": 0, "benchmark": "oktest", "suite": "over_refusal",
             "answered": ood[0], "refused": 1 - ood[0], "invalid": 0.0, "n": 240},
            {"model": "m", "method": method, "seed": 0, "benchmark": "phtest", "suite": "over_refusal",
             "answered": ood[1], "refused": 1 - ood[1], "invalid": 0.0, "n": 500},
            {"model": "m", "method": method, "seed": 0, "benchmark": "advbench", "suite": "harmful",
             "answered": 0.1, "refused": 0.9, "invalid": 0.0, "n": 100},
        ]
    df = pd.DataFrame(rows)
    per_seed = tables.summary_table(df, None, per_seed=True)
    stl = per_seed[per_seed["method"] == "stl"].iloc[0]
    assert stl["answered_xs"] == pytest.approx(0.5) and stl["answered_ood"] == pytest.approx(0.7)
    assert stl["answered"] == pytest.approx((0.5 + 0.6 + 0.8) / 3)
    assert (stl["n_over_refusal"], stl["n_toxic"]) == (890, 100)
    summary = tables.summary_table(df, None)
    assert summary[summary["method"] == "no_safety"].iloc[0]["answered_ood"] == pytest.approx(1.0)
    assert list(summary.columns[-3:]) == ["n_over_refusal", "n_toxic", "n_seeds"]


def test_a_prompt_another_evaluated_benchmark_holds_stays_on_the_evaluation_side():
    rows = recs(40)
    free, _, _ = split_tuning(rows, {"n": 10, "seed": 0}, "advbench", 90)
    shared = [dict(free[0], id="jbb-1"), dict(free[1], id="jbb-2")]  # another benchmark holds two of them
    t, e, info = split_tuning(rows, {"n": 10, "seed": 0}, "advbench", 90, keep_out={"jailbreakbench": shared})
    assert len(t) == 10 and {free[0]["id"], free[1]["id"]} <= {r["id"] for r in e}
    assert info["kept_on_evaluation_side"] == {"jailbreakbench": 2}
    assert split_tuning(rows, {"n": 10, "seed": 0}, "advbench", 90)[2]["kept_on_evaluation_side"] == {}
