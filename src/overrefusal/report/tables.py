"""Result tables in the papers' layout, as CSV (numbers) and Markdown (for reading).

Everything starts from one long-form frame (``collect``): a row per (model, method, benchmark)
eval JSON. The main table is built from *cells* keyed by (model, method, column), the same key
the papers' own numbers can be given under, so putting paper values side by side later is a
join on that key, not a new table builder.

DCR's Table 1 layout: rows (model, method); columns XS, CoCo, OR, OK, PH (compliance on the
over-refusal benchmarks, higher is better), then our should-refuse controls (compliance, lower is
better), then Safety: the mean defense success rate over the harmful benchmarks present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..benchmarks import BENCHMARKS, SUITES, get_benchmark
from ..io import DataError, atomic_path, read_json
from ..stats import bootstrap_ci, seed_interval

PathLike = str | os.PathLike[str]
# Either paths laid out as results/<run>/<model>/<method>/eval/<file>.json, or explicit labels.
Sources = Sequence[PathLike] | Mapping[PathLike, tuple[str, str]]

LONG_COLUMNS = ["model", "method", "seed", "benchmark", "suite", "metric", "value", "ci_low", "ci_high", "judge_id", "n",
                "answered", "refused", "invalid", "secondary_judge", "secondary_value", "pair_n", "pair_agree",
                "pair_primary_only", "pair_secondary_only"]
_EVAL_REQUIRED = ("benchmark", "suite", "metric", "value", "ci_low", "ci_high", "judge_id", "n")

SAFETY = "Safety"
OVER_MEAN = "Over-refusal mean"  # mean over the over-refusal benchmarks (XS..PH)
INVALID = "Invalid"  # mean share of over-refusal responses that are neither an answer nor a refusal
STRMATCH_SUFFIX = " (string match)"  # the secondary judge's score of the same column
N_SEEDS = "n_seeds"
NO_SEED = -1  # files outside a seed<k> folder (explicit labels)
N_HARMFUL = "n_harmful"  # how many harmful benchmarks the Safety mean is over
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes of a value column's interval in wide tables
N_PROMPTS = "_n"  # suffix of a value column's prompt count (summed over the benchmarks a mean column averages)

# Method kinds in the papers' row order; instances sort by their kind, then by name
# (so dcr_stl_l1 follows dcr_stl). Unknown methods come last, alphabetically.
METHOD_ORDER: tuple[str, ...] = ("base", "no_safety", "stl", "stl_aug", "surgical", "scans", "tbr", "dcr")


def method_sort_key(method: str) -> tuple[int, str]:
    """Rank by the longest known kind the name equals or starts with (``stl_aug_x`` -> stl_aug)."""
    best, best_len = len(METHOD_ORDER), -1
    for i, kind in enumerate(METHOD_ORDER):
        if (method == kind or method.startswith(kind + "_")) and len(kind) > best_len:
            best, best_len = i, len(kind)
    return best, method


def _benchmark_rank(name: str) -> int:
    order = list(BENCHMARKS)
    return order.index(name) if name in order else len(order)


def model_method_from_path(path: PathLike) -> tuple[str, str, int]:
    """``results/<run>/<model>/<method>/seed<k>/eval/<file>.json`` -> ``(model, method, k)``.

    The ``eval`` folder and the ``seed<k>`` folder above it are required: they are what make the
    parts above them model and method, so a file elsewhere fails loudly instead of being filed under
    a wrong name.
    """
    parts = Path(path).parts
    if len(parts) < 5 or parts[-2] != "eval" or not (parts[-3].startswith("seed") and parts[-3][4:].isdigit()):
        raise DataError(
            f"{path}: cannot read model, method and seed from the path (expected "
            ".../<model>/<method>/seed<k>/eval/<file>.json); pass explicit labels instead"
        )
    return parts[-5], parts[-4], int(parts[-3][4:])


def _labelled(sources: Sources) -> list[tuple[Path, str, str, int]]:
    """(path, model, method, seed); explicit labels may be (model, method) or (model, method, seed)."""
    if isinstance(sources, Mapping):
        out = []
        for p, label in sources.items():
            model, method, *seed = label
            out.append((Path(p), str(model), str(method), int(seed[0]) if seed else NO_SEED))
        return out
    return [(Path(p), *model_method_from_path(p)) for p in sources]


def _num(x: Any, where: str, field: str) -> float:
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise DataError(f"{where}: field '{field}' must be a number or null, got {type(x).__name__}")
    return float(x)


def collect(eval_jsons: Sources) -> pd.DataFrame:
    """Long-form frame of eval JSONs (``overrefusal.scoring.score_benchmark`` output).

    Columns: ``LONG_COLUMNS``. A benchmark known to ``overrefusal.benchmarks`` must carry the
    suite and metric the registry gives it: a mislabelled file would otherwise silently land in
    the wrong part of the table (e.g. a harmful set averaged into Safety as compliance).
    """
    records: list[dict[str, Any]] = []
    for path, model, method, seed in _labelled(eval_jsons):
        obj = read_json(path)
        where = str(path)
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        missing = [k for k in _EVAL_REQUIRED if k not in obj]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        name = str(obj["benchmark"])
        if obj["suite"] not in SUITES:
            raise DataError(f"{where}: suite is {obj['suite']!r}; allowed: {', '.join(SUITES)}")
        if name in BENCHMARKS:
            b = get_benchmark(name)
            if obj["suite"] != b.suite or obj["metric"] != b.metric:
                raise DataError(
                    f"{where}: benchmark {name!r} is suite {b.suite!r} / metric {b.metric!r}, "
                    f"file says {obj['suite']!r} / {obj['metric']!r}"
                )
        outcomes = obj.get("outcomes") or {}
        secondary = (obj.get("secondary") or [None])[0]
        records.append(
            {
                "model": model,
                "method": method,
                "seed": seed,
                "benchmark": name,
                "suite": str(obj["suite"]),
                "metric": str(obj["metric"]),
                "value": _num(obj["value"], where, "value"),
                "ci_low": _num(obj["ci_low"], where, "ci_low"),
                "ci_high": _num(obj["ci_high"], where, "ci_high"),
                "judge_id": str(obj["judge_id"]),
                "n": int(obj["n"]),
                **{k: _num((outcomes.get(k) or {}).get("value"), where, f"outcomes.{k}.value")
                   for k in ("answered", "refused", "invalid")},
                "secondary_judge": secondary["judge_id"] if secondary else None,
                "secondary_value": _num(secondary["value"], where, "secondary.value") if secondary else math.nan,
                # the two judges on the same rows (results judged before rows kept both labels: NaN)
                **{f"pair_{k}": float((secondary.get("agreement") or {}).get(k, math.nan)) if secondary else math.nan
                   for k in ("n", "agree", "primary_only", "secondary_only")},
            }
        )
    df = pd.DataFrame.from_records(records, columns=LONG_COLUMNS)
    if df.empty:
        return df
    order = sorted(
        range(len(df)),
        key=lambda i: (df.at[i, "model"], method_sort_key(df.at[i, "method"]), int(df.at[i, "seed"]),
                       _benchmark_rank(df.at[i, "benchmark"]), df.at[i, "benchmark"], df.at[i, "judge_id"]),
    )
    return df.iloc[order].reset_index(drop=True)


def _column_name(benchmark: str) -> str:
    return BENCHMARKS[benchmark].paper_column if benchmark in BENCHMARKS else benchmark


def _mean_ci(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> tuple[float, float, float]:
    """Mean of k independent rates and an approximate 95% CI from their own intervals.

    Normal approximation: each rate's standard error is its CI half-width / z, the mean's is
    ``sqrt(sum se_i^2) / k``, so the half-width is ``sqrt(sum hw_i^2) / k`` (z cancels). The
    per-benchmark bootstrap intervals need not be symmetric, so this is an approximation; it is
    clipped to [0, 1]. Any missing interval makes the whole interval NaN rather than too narrow.
    """
    k = len(values)
    mean = sum(values) / k
    if any(math.isnan(x) for x in (*lows, *highs)):
        return mean, math.nan, math.nan
    half = math.sqrt(sum(((h - lo) / 2.0) ** 2 for lo, h in zip(lows, highs, strict=True))) / k
    return mean, max(0.0, mean - half), min(1.0, mean + half)


CELL_COLUMNS = ["model", "method", "seed", "column", "suite", "value", "ci_low", "ci_high", "n", "n_benchmarks"]


def seed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, seed, column): value, ci_low, ci_high, n, n_benchmarks.

    Columns are the paper column names (XS, CoCo, ...) of the over-refusal and control
    benchmarks, plus ``Safety`` (mean over the harmful benchmarks). Where the files carry outcome
    shares (an outcome judge), ``Invalid`` is the mean share of over-refusal responses that are
    neither an answer nor a refusal; where they carry a secondary judge, its mean over-refusal
    score and Safety follow as "... (string match)". The CI of a cell is the within-run bootstrap.
    ``n_benchmarks`` is how many benchmarks a cell averages; ``n`` the prompts (summed).
    Raises if a (model, method, seed, benchmark) appears twice, e.g. two judges: filter by
    judge_id first.
    """
    dup = df.duplicated(["model", "method", "seed", "benchmark"], keep=False)
    if dup.any():
        rows = df.loc[dup, ["model", "method", "seed", "benchmark", "judge_id"]].to_records(index=False).tolist()
        raise ValueError(f"several results for the same (model, method, seed, benchmark): {rows}; "
                         "filter by judge_id first")
    cells: list[dict[str, Any]] = []
    for (model, method, seed), g in df.groupby(["model", "method", "seed"], sort=False):
        key = {"model": model, "method": method, "seed": int(seed)}

        def mean_cell(column: str, suite: str, rows: pd.DataFrame, value: str, ci: bool) -> None:
            vals = rows[value].tolist()
            if not len(rows) or any(math.isnan(v) for v in vals):
                return
            if ci:
                mean, lo, hi = _mean_ci(vals, rows["ci_low"].tolist(), rows["ci_high"].tolist())
            else:
                mean, lo, hi = sum(vals) / len(vals), math.nan, math.nan
            cells.append({**key, "column": column, "suite": suite, "value": mean, "ci_low": lo, "ci_high": hi,
                          "n": int(rows["n"].sum()), "n_benchmarks": len(rows)})

        for r in g.itertuples(index=False):
            if r.suite in ("over_refusal", "control"):
                cells.append({**key, "column": _column_name(str(r.benchmark)), "suite": r.suite, "value": r.value,
                              "ci_low": r.ci_low, "ci_high": r.ci_high, "n": int(r.n), "n_benchmarks": 1})
        over, harm = g[g["suite"] == "over_refusal"], g[g["suite"] == "harmful"]
        mean_cell(SAFETY, "harmful", harm, "value", ci=True)
        mean_cell(INVALID, "over_refusal", over, "invalid", ci=False)
        mean_cell(OVER_MEAN + STRMATCH_SUFFIX, "over_refusal", over, "secondary_value", ci=False)
        mean_cell(SAFETY + STRMATCH_SUFFIX, "harmful", harm, "secondary_value", ci=False)
    return pd.DataFrame.from_records(cells, columns=CELL_COLUMNS)


def _over_seeds(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> tuple[float, float, float]:
    """Mean over seeds with a t interval across them; a single run keeps its own (bootstrap) interval."""
    if len(values) == 1:
        return float(values[0]), float(lows[0]), float(highs[0])
    return seed_interval(values)


def main_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, column), over seeds: the mean and a t interval across seeds.

    A method run with one seed only (the untrained base model) keeps that run's bootstrap CI.
    ``n_seeds`` counts the seeds. Per-seed cells are ``seed_cells``.
    """
    per_seed = seed_cells(df)
    cells: list[dict[str, Any]] = []
    for (model, method, column), g in per_seed.groupby(["model", "method", "column"], sort=False):
        mean, lo, hi = _over_seeds(g["value"].tolist(), g["ci_low"].tolist(), g["ci_high"].tolist())
        cells.append({"model": model, "method": method, "column": column, "suite": g["suite"].iloc[0],
                      "value": mean, "ci_low": lo, "ci_high": hi, "n": int(g["n"].iloc[0]),
                      "n_benchmarks": int(g["n_benchmarks"].iloc[0]), N_SEEDS: len(g)})
    return pd.DataFrame.from_records(
        cells, columns=["model", "method", "column", "suite", "value", "ci_low", "ci_high", "n", "n_benchmarks", N_SEEDS]
    )


def _column_order(columns: set[str]) -> list[str]:
    known = [b.paper_column for b in BENCHMARKS.values() if b.suite != "harmful"]
    tail = [SAFETY, INVALID, OVER_MEAN + STRMATCH_SUFFIX, SAFETY + STRMATCH_SUFFIX]
    ordered = [c for c in known if c in columns]
    extra = sorted(c for c in columns if c not in known and c not in tail)
    # unknown benchmarks (not in the registry) go after the known ones of any suite, before Safety
    return ordered + extra + [c for c in tail if c in columns]


def _rows_order(keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(set(keys), key=lambda mm: (mm[0], method_sort_key(mm[1])))


def main_table(df: pd.DataFrame, *, per_seed: bool = False) -> pd.DataFrame:
    """DCR's main table, numeric: one row per (model, method), the mean over seeds.

    Columns: ``model, method``, then for each column C in DCR order (XS, CoCo, OR, OK, PH, the
    controls, Safety, then Invalid and the string-match columns where present) the triple
    ``C, C_ci_low, C_ci_high``, then ``n_harmful`` (how many harmful benchmarks Safety averages)
    and ``n_seeds``. The interval is across seeds (``main_cells``). Absent cells are NaN.
    ``write_table`` renders the triples as "0.73 [0.66, 0.80]" in Markdown. ``per_seed=True``
    gives one row per (model, method, seed) instead, with each run's bootstrap CIs.
    """
    cells = seed_cells(df) if per_seed else main_cells(df)
    cols = _column_order(set(cells["column"]))
    keys = ["model", "method", "seed"] if per_seed else ["model", "method"]
    keyed = {tuple(getattr(r, k) for k in keys) + (r.column,): r for r in cells.itertuples(index=False)}
    rows = sorted({tuple(getattr(r, k) for k in keys) for r in cells.itertuples(index=False)},
                  key=lambda k: (k[0], method_sort_key(k[1]), *k[2:]))
    out: list[dict[str, Any]] = []
    for key in rows:
        model, method = key[0], key[1]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for c in cols:
            cell = keyed.get((*key, c))
            row[c] = cell.value if cell is not None else math.nan
            row[c + CI_LOW] = cell.ci_low if cell is not None else math.nan
            row[c + CI_HIGH] = cell.ci_high if cell is not None else math.nan
            row[c + N_PROMPTS] = int(cell.n) if cell is not None else pd.NA
        if SAFETY in cols:
            safety = keyed.get((*key, SAFETY))
            row[N_HARMFUL] = int(safety.n_benchmarks) if safety is not None else 0
        if not per_seed:
            row[N_SEEDS] = max(int(getattr(r, N_SEEDS)) for k, r in keyed.items() if k[:2] == (model, method))
        out.append(row)
    columns = keys + [x for c in cols for x in (c, c + CI_LOW, c + CI_HIGH, c + N_PROMPTS)]
    if SAFETY in cols:
        columns.append(N_HARMFUL)
    if not per_seed:
        columns.append(N_SEEDS)
    table = pd.DataFrame.from_records(out, columns=columns)
    for c in cols:
        table[c + N_PROMPTS] = table[c + N_PROMPTS].astype("Int64")
    return table


SUMMARY_METRICS = ("answered", "toxic_refused", "invalid", "capability", "recovery", "answered_xs", "answered_ood")
# The DCR paper trains its contrastive stage on XSTest and calls it in-distribution: its answered share is reported
# apart from the mean over the out-of-distribution over-refusal sets (CoCoNot, OR-Bench, OKTest, PHTest).
IN_DISTRIBUTION = ("xstest_safe",)
SUMMARY_COUNTS = ("n_over_refusal", "n_toxic")  # prompts the answered and toxic_refused means stand on, per seed


def summary_table(df: pd.DataFrame, capability: pd.DataFrame | None, *, floor: str = "stl",
                  ceiling: str = "no_safety", per_seed: bool = False) -> pd.DataFrame:
    """The claims in one row per (model, method): over-refusal recovered, safety and skill kept.

    Per seed: ``answered`` is the mean answered share over the over-refusal benchmarks,
    ``toxic_refused`` the mean refused share over every should-refuse set (controls and harmful),
    ``invalid`` the mean share of over-refusal responses that are neither, ``capability`` the mean
    of the capability tasks, and ``recovery`` = (answered - floor's) / (ceiling's - floor's), with
    ``floor`` and ``ceiling`` taken from the same seed (their first seed when they have one). Then
    the mean over seeds and a t interval across seeds. ``capability`` is a
    ``capability_table(..., per_seed=True)`` frame or None. ``answered_xs`` is XSTest-safe's answered share and
    ``answered_ood`` the mean over the other over-refusal benchmarks; ``n_over_refusal`` and ``n_toxic`` count the
    prompts behind ``answered`` and ``toxic_refused`` (summed over benchmarks; per seed, or the largest over seeds).
    """
    sub = df.dropna(subset=["answered", "refused", "invalid"])
    runs: dict[tuple[str, str, int], dict[str, float]] = {}
    counts: dict[tuple[str, str, int], dict[str, int]] = {}
    for (model, method, seed), g in sub.groupby(["model", "method", "seed"], sort=False):
        over, tox = g[g["suite"] == "over_refusal"], g[g["suite"] != "over_refusal"]
        ind = over["benchmark"].isin(IN_DISTRIBUTION)
        runs[(model, method, int(seed))] = {
            "answered": float(over["answered"].mean()) if len(over) else math.nan,
            "toxic_refused": float(tox["refused"].mean()) if len(tox) else math.nan,
            "invalid": float(over["invalid"].mean()) if len(over) else math.nan,
            "capability": math.nan,
            "answered_xs": float(over[ind]["answered"].mean()) if ind.any() else math.nan,
            "answered_ood": float(over[~ind]["answered"].mean()) if (~ind).any() else math.nan,
        }
        counts[(model, method, int(seed))] = {"n_over_refusal": int(over["n"].sum()), "n_toxic": int(tox["n"].sum())}
    if capability is not None and len(capability):
        tasks = [c for c in capability.columns
                 if c not in ("model", "method", "seed") and not c.endswith((CI_LOW, CI_HIGH))]
        for r in capability.to_dict("records"):
            key = (r["model"], r["method"], int(r["seed"]))
            if key in runs:
                runs[key]["capability"] = float(np.mean([r[t] for t in tasks]))

    def ref(model: str, method: str, seed: int) -> float:
        seeds = sorted(k[2] for k in runs if k[:2] == (model, method))
        if not seeds:
            return math.nan
        return runs[(model, method, seed if seed in seeds else seeds[0])]["answered"]

    for (model, _method, seed), r in runs.items():
        lo, hi = ref(model, floor, seed), ref(model, ceiling, seed)
        r["recovery"] = (r["answered"] - lo) / (hi - lo) if hi - lo > 1e-9 else math.nan
    keys = sorted(runs, key=lambda k: (k[0], method_sort_key(k[1]), k[2]))
    if per_seed:
        return pd.DataFrame.from_records([{"model": k[0], "method": k[1], "seed": k[2], **runs[k], **counts[k]}
                                          for k in keys],
                                         columns=["model", "method", "seed", *SUMMARY_METRICS, *SUMMARY_COUNTS])
    out = []
    for model, method in _rows_order([(k[0], k[1]) for k in keys]):
        vals = [runs[k] for k in keys if k[:2] == (model, method)]
        row: dict[str, Any] = {"model": model, "method": method}
        for m in SUMMARY_METRICS:
            xs = [v[m] for v in vals if not math.isnan(v[m])]
            mean, lo, hi = seed_interval(xs, rate=m != "recovery") if xs else (math.nan, math.nan, math.nan)
            row.update({m: mean, m + CI_LOW: lo, m + CI_HIGH: hi})
        for c in SUMMARY_COUNTS:
            row[c] = max(counts[k][c] for k in keys if k[:2] == (model, method))
        row[N_SEEDS] = len(vals)
        out.append(row)
    return pd.DataFrame.from_records(
        out, columns=["model", "method", *[x for m in SUMMARY_METRICS for x in (m, m + CI_LOW, m + CI_HIGH)],
                      *SUMMARY_COUNTS, N_SEEDS])


SWEEP_KNOBS = ("layer", "lr", "steps", "scale", "margin", "pooling", "train_embeddings", "lm_weight")


DRIFT_COLUMNS = ("between_after", "drift_cosine", "drift_norm_ratio")


def sweep_table(evals: Sources, capability: Sources, settings: Mapping[str, Mapping[str, Any]],
                defaults: Mapping[str, Any], refs: Mapping[str, str], dcr_metrics: Sequence[PathLike] = ()
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DCR's sweep: (one row per setting with its knobs and ``summary_table`` claims, the per-seed rows).

    ``settings`` maps each sweep method to its overrides of ``defaults`` (the config's dcr section);
    the reference methods in ``refs`` (STL, no-safety) come first, with no knobs.
    ``toxic_refused_gap`` and ``capability_gap`` are STL's mean minus the setting's (the goal allows
    0.05 and 0.02). ``dcr_metrics``
    (the DCR stage's metrics.json, under .../<method>/seed<k>/dcr/) add, as means over seeds, the
    between-class cosine after DCR and how far DCR moved the layer-ℓ representations
    (``dcr.representation_drift``).
    """
    df = collect(evals)
    cap = capability_table(capability, per_seed=True)
    summary = summary_table(df, cap, **refs)
    runs = summary_table(df, cap, per_seed=True, **refs)
    drift: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for path in dcr_metrics:
        parts = Path(path).parts
        m = read_json(path)
        d = m.get("drift") or {}
        drift.setdefault((parts[-5], parts[-4]), []).append(
            (float(m["similarity_after"]["between"]), float(d.get("cosine", math.nan)),
             float(d.get("norm_ratio", math.nan))))
    # The goal's side conditions, against the floor method (STL): refusal and capability kept
    floor = summary[summary["method"] == refs["floor"]]
    for col, gap in (("toxic_refused", "toxic_refused_gap"), ("capability", "capability_gap")):
        ref = float(floor[col].iloc[0]) if len(floor) else math.nan
        summary[gap] = ref - summary[col]
    for i, col in enumerate(DRIFT_COLUMNS):
        summary[col] = [float(np.mean([v[i] for v in drift[(mo, me)]])) if (mo, me) in drift else math.nan
                        for mo, me in zip(summary["model"], summary["method"], strict=True)]

    def knobs(method: str) -> dict[str, Any]:
        if method not in settings:
            return {k: None for k in SWEEP_KNOBS}
        merged = {**defaults, **settings[method]}
        return {k: str(merged[k]) for k in SWEEP_KNOBS}

    order = [*refs.values(), *settings]
    summary = summary[summary["method"].isin(order)].copy()
    summary["_rank"] = summary["method"].map(order.index)
    summary = summary.sort_values(["model", "_rank"]).drop(columns="_rank")
    knob_frame = pd.DataFrame([knobs(m) for m in summary["method"]], index=summary.index)
    table = pd.concat([summary[["model", "method"]], knob_frame, summary.drop(columns=["model", "method"])], axis=1)
    return table.reset_index(drop=True), runs[runs["method"].isin(order)].reset_index(drop=True)


def judge_pair_table(df: pd.DataFrame) -> pd.DataFrame:
    """How often the secondary judge agrees with the primary one on the metric's outcome of the same responses,
    per model, method and benchmark, summed over seeds; ``primary_only``: rows only the primary judge counts
    as the metric's success (an answer on an over-refusal set, a refusal on a harmful one)."""
    cols = ["model", "method", "benchmark", "judge", "secondary_judge", "n", "agreement", "primary_only",
            "secondary_only"]
    have = df[df["pair_n"].notna()] if not df.empty else df
    if have.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, method, bench, judge, sec), g in have.groupby(
            ["model", "method", "benchmark", "judge_id", "secondary_judge"], sort=False):
        n = int(g["pair_n"].sum())
        rows.append({"model": model, "method": method, "benchmark": bench, "judge": judge, "secondary_judge": sec,
                     "n": n, "agreement": g["pair_agree"].sum() / n if n else math.nan,
                     "primary_only": int(g["pair_primary_only"].sum()),
                     "secondary_only": int(g["pair_secondary_only"].sum())})
    return pd.DataFrame.from_records(rows, columns=cols)


def outcome_table(df: pd.DataFrame) -> pd.DataFrame:
    """What the responses were, per (model, method, benchmark): answered, refused and invalid shares.

    Means over seeds, each with its t interval across seeds (a single run keeps no interval), from
    the primary judge's outcome shares; empty when no file carries them. ``invalid`` is what a
    string matcher would have counted as compliance.
    """
    cols = ["answered", "refused", "invalid"]
    sub = df.dropna(subset=cols)
    out: list[dict[str, Any]] = []
    for (model, method, bench), g in sub.groupby(["model", "method", "benchmark"], sort=False):
        row: dict[str, Any] = {"model": model, "method": method, "benchmark": _column_name(str(bench)),
                               "suite": g["suite"].iloc[0]}
        for c in cols:
            mean, lo, hi = seed_interval(g[c].tolist())
            row.update({c: mean, c + CI_LOW: lo, c + CI_HIGH: hi})
        row[N_SEEDS] = len(g)
        out.append(row)
    out.sort(key=lambda r: (r["model"], method_sort_key(r["method"]), _benchmark_rank(_paper_to_name(r["benchmark"]))))
    return pd.DataFrame.from_records(
        out, columns=["model", "method", "benchmark", "suite", *[x for c in cols for x in (c, c + CI_LOW, c + CI_HIGH)],
                      N_SEEDS])


def _paper_to_name(column: str) -> str:
    return next((name for name, b in BENCHMARKS.items() if b.paper_column == column), column)


def _score_interval(value: float, n: int, bootstrap: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """One run's score with its bootstrap interval over the ``n`` questions it was measured on.

    The primary metrics (acc, acc_norm, exact_match) score each question 0 or 1, so the run's k of n right
    is all the bootstrap resamples; a value that is no such share (another metric) gets no interval.
    """
    k = round(value * n)
    if n < 1 or abs(value * n - k) > 1e-6:
        return value, math.nan, math.nan
    return bootstrap_ci([1.0] * k + [0.0] * (n - k), **(bootstrap or {}))


def capability_table(capability_jsons: Sources, *, per_seed: bool = False,
                     bootstrap: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per (model, method); one column per capability task (its primary metric's value).

    Each cell is the mean over seeds with a t interval across them (``_ci_low``/``_ci_high``), and
    ``n_seeds`` counts them; a method with one seed keeps that run's bootstrap interval over its
    questions (``stats.bootstrap_ci`` with ``bootstrap``'s settings), as the main table does.
    ``per_seed=True`` gives one row per seed instead, with each run's bootstrap interval. Task
    columns follow the papers' order (``capability.PAPER_TASKS``), then the rest alphabetically. A
    task missing for some row is NaN there.
    """
    from ..capability import PAPER_TASKS

    rows: dict[tuple[str, str, int], dict[str, tuple[float, float, float]]] = {}
    tasks: set[str] = set()
    for path, model, method, seed in _labelled(capability_jsons):
        obj = read_json(path)
        if not isinstance(obj, dict) or not isinstance(obj.get("tasks"), dict):
            raise DataError(f"{path}: expected a capability result with a 'tasks' object")
        if (model, method, seed) in rows:
            raise ValueError(f"two capability results for ({model}, {method}, seed {seed})")
        vals: dict[str, tuple[float, float, float]] = {}
        for name, res in obj["tasks"].items():
            try:
                vals[name] = _score_interval(float(res["metrics"][res["primary_metric"]]), int(res["n"]), bootstrap)
            except (KeyError, TypeError) as exc:
                raise DataError(f"{path}: task {name!r}: no value for its primary metric, or no n") from exc
        rows[(model, method, seed)] = vals
        tasks |= set(vals)
    paper = [t for t in PAPER_TASKS if t in tasks]
    cols = paper + sorted(tasks - set(paper))
    none = (math.nan, math.nan, math.nan)

    def cells(t: str, v: tuple[float, float, float]) -> dict[str, float]:
        return {t: v[0], t + CI_LOW: v[1], t + CI_HIGH: v[2]}

    triples = [x for t in cols for x in (t, t + CI_LOW, t + CI_HIGH)]
    if per_seed:
        keys = sorted(rows, key=lambda k: (k[0], method_sort_key(k[1]), k[2]))
        out = [{"model": m, "method": meth, "seed": sd,
                **{c: x for t in cols for c, x in cells(t, rows[(m, meth, sd)].get(t, none)).items()}}
               for m, meth, sd in keys]
        return pd.DataFrame.from_records(out, columns=["model", "method", "seed", *triples])
    out = []
    for m, meth in _rows_order([(k[0], k[1]) for k in rows]):
        runs = [v for k, v in rows.items() if k[:2] == (m, meth)]
        row: dict[str, Any] = {"model": m, "method": meth}
        for t in cols:
            got = [r[t] for r in runs if t in r]
            row.update(cells(t, _over_seeds(*zip(*got, strict=True)) if got else none))
        row[N_SEEDS] = len(runs)
        out.append(row)
    return pd.DataFrame.from_records(out, columns=["model", "method", *triples, N_SEEDS])


WINRATE = "win_rate"
WINRATE_COLUMNS = ["model", "method", "reference", WINRATE, WINRATE + CI_LOW, WINRATE + CI_HIGH, "n", "n_scored",
                   "n_identical", "n_judge_errors", "n_position_disagreements", "judge"]


def winrate_table(winrate_jsons: Sequence[PathLike], *, per_seed: bool = False) -> pd.DataFrame:
    """One row per (model, method): the pairwise win rate against the reference and its CI.

    ``win_rate`` is in [0, 1] with ties counted 0.5 (0.5 = as good as the reference); the Markdown
    renders it as "0.62 [0.55, 0.69]". ``judge`` names the judging model. Rows follow the papers'
    method order; all files must share one reference method. Over several seeds, the win rate is
    their mean with a t interval across them and the counts are summed; ``per_seed=True`` keeps
    one row per seed with its own bootstrap CI.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    references: set[str] = set()
    for path in winrate_jsons:
        obj = read_json(path)
        where = str(path)
        missing = [k for k in ("model", "method", "reference", WINRATE, "ci_low", "ci_high", "n", "n_scored")
                   if not isinstance(obj, dict) or k not in obj]
        if missing:
            raise DataError(f"{where}: not a win-rate result (missing {', '.join(missing)})")
        key = (str(obj["model"]), str(obj["method"]), int(obj.get("seed", NO_SEED)))
        if key in rows:
            raise ValueError(f"two win-rate results for {key}")
        references.add(str(obj["reference"]))
        rows[key] = {
            "model": key[0], "method": key[1], "seed": key[2], "reference": str(obj["reference"]),
            WINRATE: _num(obj[WINRATE], where, WINRATE), WINRATE + CI_LOW: _num(obj["ci_low"], where, "ci_low"),
            WINRATE + CI_HIGH: _num(obj["ci_high"], where, "ci_high"), "n": int(obj["n"]),
            "n_scored": int(obj["n_scored"]), "n_identical": int(obj.get("n_identical", 0)),
            "n_judge_errors": int(obj.get("n_judge_errors", 0)),
            "n_position_disagreements": int(obj.get("n_position_disagreements", 0)),
            "judge": str((obj.get("judge") or {}).get("model", "")),
        }
    if len(references) > 1:
        raise ValueError(f"win-rate results against different references {sorted(references)}")
    keys = sorted(rows, key=lambda k: (k[0], method_sort_key(k[1]), k[2]))
    if per_seed:
        return pd.DataFrame.from_records([rows[k] for k in keys], columns=["seed", *WINRATE_COLUMNS])
    out = []
    for m, meth in _rows_order([(k[0], k[1]) for k in keys]):
        runs = [rows[k] for k in keys if k[:2] == (m, meth)]
        mean, lo, hi = _over_seeds(*([r[c] for r in runs] for c in (WINRATE, WINRATE + CI_LOW, WINRATE + CI_HIGH)))
        agg = {WINRATE: mean, WINRATE + CI_LOW: lo, WINRATE + CI_HIGH: hi}
        out.append({**runs[0], **agg, **{c: sum(r[c] for r in runs) for c in
                                         ("n", "n_scored", "n_identical", "n_judge_errors", "n_position_disagreements")},
                    N_SEEDS: len(runs)})
    return pd.DataFrame.from_records(out, columns=[*WINRATE_COLUMNS, N_SEEDS])


# --------------------------------------------------------------------------- writing


def _fmt_float(x: Any, digits: int) -> str:
    return "–" if x is None or pd.isna(x) else f"{float(x):.{digits}f}"


def markdown_frame(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The frame as display strings: each ``C, C_ci_low, C_ci_high`` triple becomes one column C.

    A cell reads "0.73 [0.66, 0.80]"; a value without an interval reads "0.73"; missing "–". A value column's
    prompt count ``C_n`` goes into its header, "C (n=250)", where every row has the same n; else it stays a
    column of its own, "C n".
    """
    cols = list(df.columns)
    ci_cols = {c + sfx for c in cols for sfx in (CI_LOW, CI_HIGH) if c + sfx in cols}
    n_cols = {c + N_PROMPTS for c in cols if c + N_PROMPTS in cols and c + CI_LOW in cols}
    header: dict[str, str] = {}
    for c in (n[: -len(N_PROMPTS)] for n in n_cols):
        ns = set(df[c + N_PROMPTS].dropna().astype(int))
        if len(ns) == 1:
            header[c], header[c + N_PROMPTS] = f"{c} (n={ns.pop()})", ""
        else:
            header[c + N_PROMPTS] = f"{c} n"
    out: dict[str, list[str]] = {}
    for c in cols:
        if c in ci_cols or header.get(c) == "":
            continue
        col = df[c]
        if pd.api.types.is_float_dtype(col.dtype):
            values = [_fmt_float(v, digits) for v in col]
            if c + CI_LOW in ci_cols and c + CI_HIGH in ci_cols:
                for i, (lo, hi) in enumerate(zip(df[c + CI_LOW], df[c + CI_HIGH], strict=True)):
                    if values[i] != "–" and not (pd.isna(lo) or pd.isna(hi)):
                        values[i] += f" [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"
        elif pd.api.types.is_integer_dtype(col.dtype):
            values = ["–" if pd.isna(v) else str(int(v)) for v in col]
        else:
            values = ["–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in col]
        out[header.get(c, c)] = values
    return pd.DataFrame(out, columns=list(out))


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub pipe table (no ``tabulate`` dependency); numbers right-aligned."""
    disp = markdown_frame(df, digits)
    numeric = [not pd.api.types.is_string_dtype(df[c].dtype) and pd.api.types.is_numeric_dtype(df[c].dtype)
               if c in df else True for c in disp.columns]

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(str(c)) for c in disp.columns) + " |",
             "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"]
    for row in disp.itertuples(index=False):
        lines.append("| " + " | ".join(esc(str(v)) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, csv_path: PathLike, md_path: PathLike, *, digits: int = 2) -> None:
    """Write the numeric CSV and the formatted Markdown, each atomically (never half-written)."""
    with atomic_path(csv_path) as tmp:
        # 6 significant digits: far below any CI width, and no float noise like 0.7200000000000001
        df.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")
    with atomic_path(md_path) as tmp:
        tmp.write_text(to_markdown(df, digits), encoding="utf-8")


def intervention_table(reports: Sequence[PathLike]) -> pd.DataFrame:
    """What each fitted intervention decided, per seed (from ``intervention/report.json``).

    SCANS: the threshold and the share of anchors and of seemingly toxic prompts it calls unsafe
    (those it steers towards refusal). Surgical: the chosen block and position, how far the
    false-refusal direction was from the true-refusal one before orthogonalisation, the
    pseudo-harmful refusal score before and with the ablation, its KL, and the candidates kept.
    """
    rows = []
    for path in sorted(map(Path, reports)):
        model, method, seed = model_method_from_path(path.parent.parent / "eval" / path.name)  # seed<k>/intervention/
        r = read_json(path)
        row: dict[str, Any] = {"model": model, "method": method, "seed": seed, "kind": r.get("kind")}
        if r.get("kind") == "scans":
            cls = r["classified_unsafe"]
            row.update(threshold=r["settings"]["threshold"], threshold_rule=r["settings"]["threshold_rule"],
                       unsafe_harmful_anchors=cls["harmful_anchors"]["share_unsafe"],
                       unsafe_harmless_anchors=cls["harmless_anchors"]["share_unsafe"],
                       unsafe_seemingly_toxic=cls["pseudo_harmful"]["share_unsafe"])
        elif r.get("kind") == "surgical":
            sel = r["selected"]
            chosen = next(c for c in r["candidates"] if c["layer"] == sel["layer"] and c["position"] == sel["position"])
            row.update(layer=sel["layer"], position=sel["position"], cos_or_harm=chosen["cosine_with_harm"],
                       refusal_score_before=r["baseline_refusal_score"], refusal_score_ablated=sel["refusal_score"],
                       kl=sel["kl"], candidates_kept=sum("discarded" not in c for c in r["candidates"]),
                       candidates=len(r["candidates"]))
        else:
            raise DataError(f"{path}: field 'kind': unknown intervention {r.get('kind')!r}")
        rows.append(row)
    if not rows:
        raise DataError("intervention_table: no report.json given")
    df = pd.DataFrame(rows)
    for col in ("layer", "position", "candidates_kept", "candidates"):
        if col in df:
            df[col] = df[col].astype("Int64")
    order = sorted(range(len(df)), key=lambda i: (df["model"][i], method_sort_key(df["method"][i]), df["seed"][i]))
    return df.iloc[order].reset_index(drop=True)
