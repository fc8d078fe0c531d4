"""Tables and figures from synthetic eval JSONs (the shape ``scoring.score_benchmark`` writes)."""

from __future__ import annotations

import math
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from overrefusal.benchmarks import get_benchmark
from overrefusal.io import DataError, write_json
from overrefusal.report import figures, tables

# (model, method) -> benchmark -> (value, ci_low, ci_high)
RESULTS: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("toy", "stl"): {
        "xstest_safe": (0.73, 0.66, 0.80), "coconot_contrast": (0.88, 0.84, 0.91), "phtest": (0.75, 0.70, 0.80),
        "xstest_unsafe": (0.10, 0.06, 0.15),
        "advbench": (0.90, 0.87, 0.93), "harmbench": (0.70, 0.64, 0.76), "strongreject": (0.56, 0.50, 0.62),
    },
    ("toy", "dcr"): {
        "xstest_safe": (0.98, 0.96, 1.00), "coconot_contrast": (0.98, 0.96, 0.99), "phtest": (0.86, 0.82, 0.90),
        "xstest_unsafe": (0.12, 0.08, 0.17),
        "advbench": (0.95, 0.93, 0.97), "harmbench": (0.67, 0.61, 0.73),  # only two harmful sets
    },
    ("toy", "no_safety"): {
        "xstest_safe": (1.0, 1.0, 1.0), "coconot_contrast": (0.99, 0.97, 1.0), "phtest": (0.97, 0.95, 0.99),
    },
}


def _eval_json(
    benchmark: str, v: tuple[float, float, float], n: int = 100, judge: str = "substring-v1"
) -> dict[str, Any]:
    b = get_benchmark(benchmark)
    return {
        "benchmark": benchmark, "suite": b.suite, "metric": b.metric, "higher_is_better": b.higher_is_better,
        "judge_id": judge, "n": n, "value": v[0], "ci_low": v[1], "ci_high": v[2], "n_judge_errors": 0,
        "n_empty": 0, "counts": {"full_compliance": round(v[0] * n)}, "rows": [],
    }


@pytest.fixture()
def eval_paths(tmp_path: Path) -> list[Path]:
    paths = []
    for (model, method), res in RESULTS.items():
        for bench, v in res.items():
            p = tmp_path / "results" / "toyrun" / model / method / "seed0" / "eval" / f"{bench}.json"
            write_json(p, _eval_json(bench, v))
            paths.append(p)
    return paths[::-1]  # input order must not matter


def test_collect_reads_model_and_method_from_path(eval_paths: list[Path]) -> None:
    df = tables.collect(eval_paths)
    assert list(df.columns) == tables.LONG_COLUMNS
    assert len(df) == sum(len(r) for r in RESULTS.values())
    row = df[(df["method"] == "dcr") & (df["benchmark"] == "advbench")].iloc[0]
    assert (row["model"], row["suite"], row["metric"], row["value"], row["n"]) == (
        "toy", "harmful", "defense_success_rate", 0.95, 100)
    # canonical order: methods by paper order, benchmarks by registry order
    assert list(dict.fromkeys(df["method"])) == ["no_safety", "stl", "dcr"]
    assert list(df[df["method"] == "stl"]["benchmark"])[:3] == ["xstest_safe", "coconot_contrast", "phtest"]


def test_collect_explicit_labels_and_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    write_json(p, _eval_json("oktest", (0.5, 0.4, 0.6)))
    df = tables.collect({p: ("m", "stl")})
    assert (df.at[0, "model"], df.at[0, "method"]) == ("m", "stl")
    with pytest.raises(DataError, match="cannot read model, method and seed"):
        tables.collect([p])
    bad = _eval_json("advbench", (0.5, 0.4, 0.6)) | {"suite": "over_refusal", "metric": "compliance_rate"}
    write_json(p, bad)
    with pytest.raises(DataError, match="advbench.*suite 'harmful'"):
        tables.collect({p: ("m", "stl")})
    write_json(p, _eval_json("oktest", (0.5, 0.4, 0.6)) | {"benchmark": "mystery", "suite": "benign"})
    with pytest.raises(DataError, match="suite is 'benign'"):
        tables.collect({p: ("m", "stl")})
    write_json(p, {"benchmark": "oktest"})
    with pytest.raises(DataError, match="missing field"):
        tables.collect({p: ("m", "stl")})


def test_main_table_layout_and_safety(eval_paths: list[Path]) -> None:
    t = tables.main_table(tables.collect(eval_paths))
    triples = lambda c: [c, c + "_ci_low", c + "_ci_high", c + "_n"]  # noqa: E731
    assert list(t.columns) == ["model", "method", *triples("XS"), *triples("CoCo"), *triples("PH"),
                               *triples("XS-unsafe"), *triples("Safety"), "n_harmful", "n_seeds"]
    assert list(t["method"]) == ["no_safety", "stl", "dcr"]
    stl = t[t["method"] == "stl"].iloc[0]
    dcr = t[t["method"] == "dcr"].iloc[0]
    nos = t[t["method"] == "no_safety"].iloc[0]
    assert stl["Safety"] == pytest.approx((0.90 + 0.70 + 0.56) / 3) and stl["n_harmful"] == 3
    assert dcr["Safety"] == pytest.approx((0.95 + 0.67) / 2) and dcr["n_harmful"] == 2
    assert math.isnan(nos["Safety"]) and nos["n_harmful"] == 0 and math.isnan(nos["XS-unsafe"])
    # Safety interval: half-width sqrt(sum hw_i^2) / k around the mean
    half = math.sqrt(0.02**2 + 0.06**2) / 2
    assert (dcr["Safety_ci_low"], dcr["Safety_ci_high"]) == pytest.approx((0.81 - half, 0.81 + half))
    assert (stl["XS"], stl["XS_ci_low"], stl["XS_ci_high"]) == (0.73, 0.66, 0.80)


def test_main_table_rejects_two_judges_for_one_cell(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, _eval_json("oktest", (0.5, 0.4, 0.6), judge="substring-v1"))
    write_json(b, _eval_json("oktest", (0.6, 0.5, 0.7), judge="gpt-4o-v1"))
    df = tables.collect({a: ("m", "stl"), b: ("m", "stl")})
    with pytest.raises(ValueError, match="filter by judge_id"):
        tables.main_table(df)
    assert tables.main_table(df[df["judge_id"] == "gpt-4o-v1"])["OK"].tolist() == [0.6]


def test_write_table_csv_numeric_md_formatted(eval_paths: list[Path], tmp_path: Path) -> None:
    t = tables.main_table(tables.collect(eval_paths))
    csv, md = tmp_path / "tables" / "main.csv", tmp_path / "tables" / "main.md"
    tables.write_table(t, csv, md)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(t.columns)
    assert back.loc[back["method"] == "stl", "XS_ci_high"].item() == 0.80
    text = md.read_text()
    lines = text.splitlines()
    # every column's prompt count: in its header where all rows share it, else a column of its own
    assert lines[0] == ("| model | method | XS (n=100) | CoCo (n=100) | PH (n=100) | XS-unsafe (n=100) | Safety "
                        "| Safety n | n_harmful | n_seeds |")
    assert lines[1] == "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert list(t["Safety_n"].astype(object).where(t["Safety_n"].notna(), None)) == [None, 300, 200]
    assert "| toy | stl | 0.73 [0.66, 0.80] | 0.88 [0.84, 0.91] |" in text
    assert "| toy | no_safety | 1.00 [1.00, 1.00] | 0.99 [0.97, 1.00] | 0.97 [0.95, 0.99] | – | – | – | 0 | 1 |" in text
    assert len(lines) == 2 + 3
    assert not list(csv.parent.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_capability_table(tmp_path: Path) -> None:
    def cap(tasks: dict[str, float]) -> dict[str, Any]:
        return {"tasks": {k: {"kind": "lm_eval", "lm_eval_task": k, "metrics": {"acc": v, "acc_norm": 0.0},
                              "primary_metric": "acc", "n": 10, "num_fewshot": 0} for k, v in tasks.items()}}

    p1 = tmp_path / "results" / "r" / "toy" / "stl" / "seed0" / "eval" / "capability.json"
    p2 = tmp_path / "results" / "r" / "toy" / "dcr" / "seed0" / "eval" / "capability.json"
    write_json(p1, cap({"tiny_gen": 0.2, "arc_easy": 0.5, "mmlu": 0.4}))
    write_json(p2, cap({"mmlu": 0.3, "arc_easy": 0.6}))
    t = tables.capability_table([p2, p1])
    cols = [c for c in t.columns if not c.endswith(("_ci_low", "_ci_high"))]
    assert cols == ["model", "method", "mmlu", "arc_easy", "tiny_gen", "n_seeds"]  # paper order, then the rest
    assert list(t["method"]) == ["stl", "dcr"]
    assert t.loc[t["method"] == "dcr", "arc_easy"].item() == 0.6
    assert math.isnan(t.loc[t["method"] == "dcr", "tiny_gen"].item())
    md = tmp_path / "cap.md"
    tables.write_table(t, tmp_path / "cap.csv", md)
    # one seed: the run's bootstrap interval over its 10 questions
    assert "| toy | dcr | 0.30 [0.00, 0.60] | 0.60 [0.30, 0.90] | – | 1 |" in md.read_text()


def test_capability_intervals_over_questions_then_over_seeds(tmp_path: Path) -> None:
    from overrefusal.stats import bootstrap_ci, seed_interval

    def cap(acc: float, n: int) -> dict[str, Any]:
        return {"tasks": {"arc_easy": {"kind": "mc", "lm_eval_task": "arc_easy", "metrics": {"acc": acc, "acc_norm": 0.1},
                                       "primary_metric": "acc", "n": n, "num_fewshot": 0},
                          "mmlu": {"kind": "mc", "lm_eval_task": "mmlu", "metrics": {"acc": 0.25},
                                   "primary_metric": "acc", "n": 4, "num_fewshot": 0}}}

    root = tmp_path / "results" / "r" / "toy"
    paths = {}
    for method, seed, acc in (("stl", 0, 0.55), ("dcr", 0, 0.5), ("dcr", 1, 0.6)):
        paths[(method, seed)] = root / method / f"seed{seed}" / "eval" / "capability.json"
        write_json(paths[(method, seed)], cap(acc, 200))
    boot = {"n_resamples": 200, "seed": 3}
    t = tables.capability_table(list(paths.values()), bootstrap=boot)
    stl, dcr = (t[t["method"] == m].iloc[0] for m in ("stl", "dcr"))
    want = bootstrap_ci([1.0] * 110 + [0.0] * 90, **boot)  # 0.55 of 200 questions
    assert (stl["arc_easy"], stl["arc_easy_ci_low"], stl["arc_easy_ci_high"]) == pytest.approx(want)
    assert (dcr["arc_easy"], dcr["arc_easy_ci_low"], dcr["arc_easy_ci_high"]) == pytest.approx(seed_interval([0.5, 0.6]))
    runs = tables.capability_table(list(paths.values()), per_seed=True, bootstrap=boot)
    assert list(runs.columns) == ["model", "method", "seed", "mmlu", "mmlu_ci_low", "mmlu_ci_high", "arc_easy",
                                  "arc_easy_ci_low", "arc_easy_ci_high"]
    assert runs["arc_easy_ci_low"].notna().all()
    write_json(paths[("stl", 0)], {"tasks": {"ppl": {"kind": "lm_eval", "lm_eval_task": "x", "metrics": {
        "word_perplexity": 12.3}, "primary_metric": "word_perplexity", "n": 5, "num_fewshot": 0}}})
    t = tables.capability_table([paths[("stl", 0)]])
    assert t["ppl"].item() == 12.3 and math.isnan(t["ppl_ci_low"].item())  # not a share of questions: no interval


def test_figures_written_and_deterministic(eval_paths: list[Path], tmp_path: Path) -> None:
    df = tables.collect(eval_paths)
    # a second model where one method is missing: panels and the shared legend must cope
    df2 = df.assign(model="toy2")
    df = pd.concat([df, df2[df2["method"] != "dcr"]], ignore_index=True)
    for fn in (figures.compliance_by_method, figures.safety_vs_overrefusal):
        a, b = tmp_path / f"{fn.__name__}_a.png", tmp_path / f"{fn.__name__}_b.png"
        fn(df, a)
        fn(df, b)
        data = a.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
        assert data == b.read_bytes()
        assert b"Software" not in data and b"matplotlib" not in data


def test_figures_refuse_empty_input(tmp_path: Path) -> None:
    df = tables.collect({})
    with pytest.raises(ValueError, match="no over-refusal or harmful"):
        figures.compliance_by_method(df, tmp_path / "a.png")
    with pytest.raises(ValueError, match="no \\(model, method\\)"):
        figures.safety_vs_overrefusal(df, tmp_path / "b.png")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- seeds and outcomes


def _outcome_json(benchmark: str, answered: float, refused: float) -> dict[str, Any]:
    b = get_benchmark(benchmark)
    value = answered if b.metric == "compliance_rate" else refused
    rate = lambda v: {"value": v, "ci_low": max(0.0, v - 0.05), "ci_high": min(1.0, v + 0.05)}  # noqa: E731
    return {**_eval_json(benchmark, (value, max(0.0, value - 0.05), min(1.0, value + 0.05)), judge="toy_outcome_v1"),
            "outcomes": {"answered": rate(answered), "refused": rate(refused),
                         "invalid": rate(round(1 - answered - refused, 6))},
            "secondary": [{"judge_id": "xstest_strmatch_v1", "value": 1 - refused, "ci_low": 0.0, "ci_high": 1.0,
                           "counts": {}, "n_judge_errors": 0}]}


# (method, seed) -> (answered on XS and OR, refused on advbench)
RUNS = {("no_safety", 0): (1.0, 0.0), ("no_safety", 1): (1.0, 0.0), ("no_safety", 2): (0.9, 0.0),
        ("stl", 0): (0.1, 1.0), ("stl", 1): (0.2, 0.9), ("stl", 2): (0.0, 1.0),
        ("dcr", 0): (0.55, 0.5), ("dcr", 1): (0.6, 0.9), ("dcr", 2): (0.45, 0.8)}


@pytest.fixture()
def seed_paths(tmp_path: Path) -> list[Path]:
    paths = []
    for (method, seed), (ans, ref) in RUNS.items():
        for bench, a, r in (("xstest_safe", ans, 0.0), ("orbench_hard", ans, 1 - ans), ("advbench", 0.0, ref)):
            p = tmp_path / "r" / "toy" / method / f"seed{seed}" / "eval" / f"{bench}.json"
            write_json(p, _outcome_json(bench, a, r))
            paths.append(p)
    return paths


def test_cells_are_means_over_seeds_with_a_t_interval(seed_paths: list[Path]) -> None:
    from scipy import stats as st

    df = tables.collect(seed_paths)
    assert sorted(set(df["seed"])) == [0, 1, 2]
    t = tables.main_table(df)
    dcr = t[t["method"] == "dcr"].iloc[0]
    vals = [0.55, 0.6, 0.45]
    half = st.t.ppf(0.975, 2) * pd.Series(vals).std() / math.sqrt(3)
    assert dcr["XS"] == pytest.approx(sum(vals) / 3)
    assert (dcr["XS_ci_low"], dcr["XS_ci_high"]) == pytest.approx((0.5333333 - half, 0.5333333 + half), abs=1e-6)
    assert dcr["n_seeds"] == 3
    # invalid = 1 - answered - refused on XS (refused 0) and OR (refused 1 - answered = 0 invalid)
    assert dcr["Invalid"] == pytest.approx(sum((1 - a) / 2 for a in vals) / 3)
    # the fixture's string match counts everything but a refusal as compliance: 1 on XS, answered on OR
    assert dcr["Over-refusal mean (string match)"] == pytest.approx((1.0 + sum(vals) / 3) / 2)
    per_seed = tables.main_table(df, per_seed=True)
    assert list(per_seed["seed"][per_seed["method"] == "dcr"]) == [0, 1, 2]
    assert per_seed.loc[(per_seed["method"] == "dcr") & (per_seed["seed"] == 1), "XS"].item() == 0.6


def test_summary_recovery_is_paired_by_seed(seed_paths: list[Path]) -> None:
    df = tables.collect(seed_paths)
    runs = tables.summary_table(df, None, per_seed=True)
    r = runs[(runs["method"] == "dcr") & (runs["seed"] == 2)].iloc[0]
    assert r["recovery"] == pytest.approx((0.45 - 0.0) / (0.9 - 0.0))
    assert r["toxic_refused"] == pytest.approx(0.8)
    summary = tables.summary_table(df, None)
    dcr = summary[summary["method"] == "dcr"].iloc[0]
    rec = [(0.55 - 0.1) / 0.9, (0.6 - 0.2) / 0.8, 0.45 / 0.9]
    assert dcr["recovery"] == pytest.approx(sum(rec) / 3)
    assert summary[summary["method"] == "stl"].iloc[0]["recovery"] == pytest.approx(0.0)
    assert math.isnan(dcr["capability"])


def test_summary_capability_is_the_mean_of_task_scores_not_their_bounds(seed_paths: list[Path],
                                                                          tmp_path: Path) -> None:
    caps = []
    for (method, seed) in RUNS:
        caps.append(tmp_path / "r" / "toy" / method / f"seed{seed}" / "eval" / "capability.json")
        write_json(caps[-1], {"tasks": {t: {"kind": "mc", "lm_eval_task": t, "metrics": {"acc": v},
                                            "primary_metric": "acc", "n": 200, "num_fewshot": 0}
                                        for t, v in (("mmlu", 0.25), ("arc_easy", 0.5))}})
    runs = tables.summary_table(tables.collect(seed_paths), tables.capability_table(caps, per_seed=True),
                                per_seed=True)
    assert runs["capability"].tolist() == pytest.approx([0.375] * len(RUNS))


def test_outcome_table_lists_every_benchmark(seed_paths: list[Path]) -> None:
    t = tables.outcome_table(tables.collect(seed_paths))
    row = t[(t["method"] == "stl") & (t["benchmark"] == "OR")].iloc[0]
    assert row["answered"] == pytest.approx(0.1) and row["refused"] == pytest.approx(0.9)
    assert row["invalid"] == pytest.approx(0.0) and row["n_seeds"] == 3


def test_judge_pair_table_sums_the_two_judges_agreement_over_seeds(tmp_path: Path) -> None:
    paths = []
    for seed, (agree, p_only, s_only) in enumerate([(90, 6, 4), (80, 15, 5)]):
        obj = _eval_json("xstest_safe", (0.5, 0.4, 0.6))
        obj["secondary"] = [{"judge_id": "xstest_strmatch_v1", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                             "counts": {}, "n_judge_errors": 0,
                             "agreement": {"n": 100, "agree": agree, "primary_only": p_only, "secondary_only": s_only}}]
        p = tmp_path / "results/r/m/stl" / f"seed{seed}" / "eval/xstest_safe.json"
        write_json(p, obj)
        paths.append(p)
    old = tmp_path / "results/r/m/base/seed0/eval/xstest_safe.json"  # judged before rows kept both labels
    write_json(old, _eval_json("xstest_safe", (0.9, 0.8, 1.0)))
    t = tables.judge_pair_table(tables.collect([*paths, old]))
    assert len(t) == 1
    row = t.iloc[0]
    assert (row["method"], row["n"], row["primary_only"], row["secondary_only"]) == ("stl", 200, 21, 9)
    assert row["agreement"] == pytest.approx(170 / 200)


def test_sweep_table_lists_knobs_gaps_and_drift(seed_paths: list[Path], tmp_path: Path) -> None:
    dcr_metrics = []
    for seed in (0, 1, 2):
        p = tmp_path / "r" / "toy" / "dcr" / f"seed{seed}" / "dcr" / "metrics.json"
        write_json(p, {"similarity_after": {"between": 0.1 * seed}, "drift": {"cosine": 0.9, "norm_ratio": 1.5}})
        dcr_metrics.append(p)
    table, runs = tables.sweep_table(seed_paths, [], {"dcr": {"layer": 1}}, {"layer": 2, "lr": 1e-4, "steps": 40,
                                     "scale": 64, "margin": 0.25, "pooling": "last", "train_embeddings": True,
                                     "lm_weight": 0.0}, {"floor": "stl", "ceiling": "no_safety"}, dcr_metrics)
    assert list(table["method"]) == ["stl", "no_safety", "dcr"]
    dcr = table[table["method"] == "dcr"].iloc[0]
    assert (dcr["layer"], dcr["lr"], dcr["steps"]) == ("1", "0.0001", "40")
    assert dcr["between_after"] == pytest.approx(0.1) and dcr["drift_cosine"] == pytest.approx(0.9)
    # toxic refusal is over the should-refuse sets only (here advbench): STL 1.0/0.9/1.0, DCR 0.5/0.9/0.8
    assert dcr["toxic_refused_gap"] == pytest.approx((1.0 + 0.9 + 1.0) / 3 - (0.5 + 0.9 + 0.8) / 3)
    assert pd.isna(table[table["method"] == "stl"].iloc[0]["layer"])  # a reference: no knobs
    assert set(runs["method"]) == {"stl", "no_safety", "dcr"}


def test_samples_draw_the_same_prompts_for_every_method(tmp_path: Path) -> None:
    from overrefusal.report.samples import sample_rows, samples_markdown

    paths = []
    for method, resp in (("stl", "I'm sorry, I cannot | help."), ("dcr_stl", "Sure: " + "x" * 300)):
        rows = [{"id": f"xs-{i:02d}", "prompt": f"how do I kill process {i}?", "response": resp,
                 "judge_id": "xstest_strmatch_v1", "judgement": {"label": "refusal" if method == "stl" else "compliance"}}
                for i in range(10)]
        p = tmp_path / f"{method}.json"
        p.write_text(json.dumps({"model": "m", "method": method, "seed": 0, "benchmark": "xstest_safe", "rows": rows}))
        paths.append(p)
    got = sample_rows(paths, n=3, seed=0)
    assert len(got) == 6
    assert [r["id"] for r in got if r["method"] == "stl"] == [r["id"] for r in got if r["method"] == "dcr_stl"]
    assert sample_rows(paths, n=3, seed=0) == got and sample_rows(paths, n=3, seed=1) != got
    md = samples_markdown(got)
    assert md.startswith("**xstest_safe** (judge: xstest_strmatch_v1)")
    assert "I'm sorry, I cannot \\| help." in md  # a pipe inside a response cannot break the table
    assert "x" * 150 + "…" in md and "x" * 200 not in md  # long responses are cut


def test_sweep_rows_pick_the_one_knob_settings_and_the_figure_is_written(tmp_path: Path) -> None:
    """DCR's ℓ sweep out of a table whose settings vary several knobs (a CSV with gaps reads 40 as 40.0)."""
    nan = float("nan")
    rows = [("stl", nan, nan, 0.1), ("no_safety", nan, nan, 0.9), ("dcrsweep_l0", 0, 40, 0.4),
            ("dcrsweep_l1", 1, 40, 0.5), ("dcrsweep_l1_s100", 1, 100, 0.7), ("dcrsweep_l2", 2, 40, 0.3)]
    table = pd.DataFrame([{"method": m, "layer": layer, "steps": steps, "pooling": nan if math.isnan(steps) else "last",
                           **{f"{c}{s}": v + d for c in ("answered", "toxic_refused", "invalid")
                              for s, d in (("", 0.0), ("_ci_low", -0.05), ("_ci_high", 0.05))}}
                          for m, layer, steps, v in rows])
    picked = figures.sweep_rows(table, "layer", {"layer": 0, "steps": 40, "pooling": "last", "lr": 1e-4})
    assert list(picked["method"]) == ["dcrsweep_l0", "dcrsweep_l1", "dcrsweep_l2"]
    refs = table[table["method"].isin(["stl", "no_safety"])]
    figures.sweep_figure(picked, "layer", [tmp_path / "a.png", tmp_path / "a.pdf"], refs=refs)
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="fewer than two values of 'layer'"):
        figures.sweep_figure(picked.head(1), "layer", tmp_path / "b.png")


# ------------------------------------------------------------------------------------------ verdicts


def _runs(rows: list[tuple[str, int, float, float, float, float]]) -> pd.DataFrame:
    """(method, seed, answered_xs, answered, toxic_refused, capability) -> a per-seed summary frame."""
    out = []
    for method, seed, xs, ans, tox, cap in rows:
        out.append({"model": "m", "method": method, "seed": seed, "answered": ans, "toxic_refused": tox,
                    "invalid": 0.0, "capability": cap, "answered_xs": xs, "answered_ood": ans, "recovery": math.nan})
    df = pd.DataFrame(out)
    for i, r in df.iterrows():
        lo = df[(df.method == "stl") & (df.seed == r.seed)]["answered"].iloc[0]
        hi = df[(df.method == "no_safety") & (df.seed == r.seed)]["answered"].iloc[0]
        df.at[i, "recovery"] = (r.answered - lo) / (hi - lo)
    return df


STRONG = [("no_safety", s, 0.95, 0.95, 0.2, 0.5) for s in (0, 1, 2)] + \
         [("stl", s, 0.45, 0.45, 0.8, 0.5) for s in (0, 1, 2)]


def test_verdicts_say_supported_not_supported_and_inconclusive_from_paired_seeds(tmp_path: Path) -> None:
    from overrefusal.report.verdicts import tradeoff_figure, verdict_markdown, verdict_table

    runs = _runs(STRONG + [("dcr_stl", 0, 0.7, 0.70, 0.79, 0.5), ("dcr_stl", 1, 0.72, 0.72, 0.80, 0.49),
                           ("dcr_stl", 2, 0.68, 0.68, 0.78, 0.5),
                           ("scans", 0, 0.4, 0.40, 0.8, 0.5), ("scans", 1, 0.44, 0.44, 0.8, 0.5),
                           ("scans", 2, 0.42, 0.42, 0.8, 0.5),
                           ("stl_aug", 0, 0.9, 0.90, 0.40, 0.5), ("stl_aug", 1, 0.9, 0.90, 0.45, 0.5),
                           ("stl_aug", 2, 0.9, 0.90, 0.42, 0.5),
                           ("tbr_internal", 0, 0.5, 0.50, 0.8, 0.5), ("tbr_internal", 1, 0.9, 0.90, 0.8, 0.5),
                           ("tbr_internal", 2, 0.4, 0.40, 0.8, 0.5)])
    table, ph = verdict_table(runs, ["dcr_stl", "scans", "stl_aug", "tbr_internal"])
    assert bool(ph["strong"].iloc[0]) and ph["drop_xs"].iloc[0] == pytest.approx(0.5)
    v = dict(zip(table["method"], table["verdict"], strict=True))
    assert v["dcr_stl"].startswith("supported: recovers 0.50")
    assert v["scans"].startswith("not supported: no recovery")
    assert v["stl_aug"].startswith("not supported: answers more")
    assert v["tbr_internal"].startswith("inconclusive at this scale")
    row = table.set_index("method").loc["dcr_stl"]
    assert row["toxic_change"] == pytest.approx(-0.01) and row["recovery_low"] < 0.5 < row["recovery_high"]
    md = verdict_markdown(table, ph)
    assert "strong enough to study" in md and "| m | dcr_stl | 3 | +0.50 [" in md
    tradeoff_figure(runs, [tmp_path / "t.png", tmp_path / "t.pdf"])
    assert (tmp_path / "t.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_weak_stl_gets_words_not_findings() -> None:
    from overrefusal.report.verdicts import verdict_markdown, verdict_table

    weak = [("no_safety", s, 0.99, 0.99, 0.2, 0.5) for s in (0, 1, 2)] + \
           [("stl", s, 0.91, 0.84, 0.7, 0.5) for s in (0, 1, 2)] + \
           [("dcr_stl", s, 0.95, 0.95, 0.7, 0.5) for s in (0, 1, 2)]
    table, ph = verdict_table(_runs(weak), ["dcr_stl"])
    assert not bool(ph["strong"].iloc[0])
    assert table["verdict"].iloc[0].startswith("not assessable: stl's over-refusal is too weak here (XSTest-safe "
                                               "answered share 0.08 below no-safety's")
    assert "**too weak to study**" in verdict_markdown(table, ph)
    # one seed of a strong phenomenon has no interval: inconclusive, never supported
    one = verdict_table(_runs([r for r in STRONG if r[1] == 0] + [("dcr_stl", 0, 0.9, 0.9, 0.8, 0.5)]), ["dcr_stl"])
    assert one[0]["verdict"].iloc[0] == "inconclusive at this scale: one seed gives no interval"
