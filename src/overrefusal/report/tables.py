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

import pandas as pd

from ..benchmarks import BENCHMARKS, SUITES, get_benchmark
from ..io import DataError, atomic_path, read_json

PathLike = str | os.PathLike[str]
# Either paths laid out as results/<run>/<model>/<method>/eval/<file>.json, or explicit labels.
Sources = Sequence[PathLike] | Mapping[PathLike, tuple[str, str]]

LONG_COLUMNS = ["model", "method", "benchmark", "suite", "metric", "value", "ci_low", "ci_high", "judge_id", "n"]
_EVAL_REQUIRED = ("benchmark", "suite", "metric", "value", "ci_low", "ci_high", "judge_id", "n")

SAFETY = "Safety"
N_HARMFUL = "n_harmful"  # how many harmful benchmarks the Safety mean is over
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes of a value column's interval in wide tables

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


def model_method_from_path(path: PathLike) -> tuple[str, str]:
    """``results/<run>/<model>/<method>/eval/<file>.json`` -> ``(model, method)``.

    The ``eval`` folder is required: it is what makes the two parts above it model and method,
    so a file elsewhere fails loudly instead of being filed under a wrong name.
    """
    parts = Path(path).parts
    if len(parts) < 4 or parts[-2] != "eval":
        raise DataError(
            f"{path}: cannot read model and method from the path (expected "
            ".../<model>/<method>/eval/<file>.json); pass explicit labels instead"
        )
    return parts[-4], parts[-3]


def _labelled(sources: Sources) -> list[tuple[Path, str, str]]:
    if isinstance(sources, Mapping):
        return [(Path(p), str(m), str(meth)) for p, (m, meth) in sources.items()]
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
    for path, model, method in _labelled(eval_jsons):
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
        records.append(
            {
                "model": model,
                "method": method,
                "benchmark": name,
                "suite": str(obj["suite"]),
                "metric": str(obj["metric"]),
                "value": _num(obj["value"], where, "value"),
                "ci_low": _num(obj["ci_low"], where, "ci_low"),
                "ci_high": _num(obj["ci_high"], where, "ci_high"),
                "judge_id": str(obj["judge_id"]),
                "n": int(obj["n"]),
            }
        )
    df = pd.DataFrame.from_records(records, columns=LONG_COLUMNS)
    if df.empty:
        return df
    order = sorted(
        range(len(df)),
        key=lambda i: (df.at[i, "model"], method_sort_key(df.at[i, "method"]),
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


def main_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, column): value, ci_low, ci_high, n, n_benchmarks.

    Columns are the paper column names (XS, CoCo, ...) of the over-refusal and control
    benchmarks, plus ``Safety``. ``n_benchmarks`` is 1 for a benchmark column and the number of
    harmful benchmarks averaged for Safety; ``n`` is the number of prompts (summed for Safety).
    Raises if a (model, method, benchmark) appears twice, e.g. two judges: filter by judge_id first.
    """
    dup = df.duplicated(["model", "method", "benchmark"], keep=False)
    if dup.any():
        rows = df.loc[dup, ["model", "method", "benchmark", "judge_id"]].to_records(index=False).tolist()
        raise ValueError(f"several results for the same (model, method, benchmark): {rows}; filter by judge_id first")
    cells: list[dict[str, Any]] = []
    for (model, method), g in df.groupby(["model", "method"], sort=False):
        for r in g.itertuples(index=False):
            if r.suite in ("over_refusal", "control"):
                cells.append({"model": model, "method": method, "column": _column_name(str(r.benchmark)),
                              "suite": r.suite, "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                              "n": int(r.n), "n_benchmarks": 1})
        harm = g[g["suite"] == "harmful"]
        if len(harm):
            mean, lo, hi = _mean_ci(harm["value"].tolist(), harm["ci_low"].tolist(), harm["ci_high"].tolist())
            cells.append({"model": model, "method": method, "column": SAFETY, "suite": "harmful", "value": mean,
                          "ci_low": lo, "ci_high": hi, "n": int(harm["n"].sum()), "n_benchmarks": len(harm)})
    return pd.DataFrame.from_records(
        cells, columns=["model", "method", "column", "suite", "value", "ci_low", "ci_high", "n", "n_benchmarks"]
    )


def _column_order(columns: set[str]) -> list[str]:
    known = [b.paper_column for b in BENCHMARKS.values() if b.suite != "harmful"]
    ordered = [c for c in known if c in columns]
    extra = sorted(c for c in columns if c not in known and c != SAFETY)
    # unknown benchmarks (not in the registry) go after the known ones of any suite, before Safety
    return ordered + extra + ([SAFETY] if SAFETY in columns else [])


def _rows_order(keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(set(keys), key=lambda mm: (mm[0], method_sort_key(mm[1])))


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """DCR's main table, numeric: one row per (model, method).

    Columns: ``model, method``, then for each column C in DCR order (XS, CoCo, OR, OK, PH, the
    controls, Safety) the triple ``C, C_ci_low, C_ci_high``, then ``n_harmful`` (how many harmful
    benchmarks Safety averages; it may differ between rows when some are missing). Absent cells
    are NaN. ``write_table`` renders the triples as "0.73 [0.66, 0.80]" in Markdown.
    """
    cells = main_cells(df)
    cols = _column_order(set(cells["column"]))
    keyed = {(r.model, r.method, r.column): r for r in cells.itertuples(index=False)}
    out: list[dict[str, Any]] = []
    for model, method in _rows_order(list(zip(cells["model"], cells["method"], strict=True))):
        row: dict[str, Any] = {"model": model, "method": method}
        for c in cols:
            cell = keyed.get((model, method, c))
            row[c] = cell.value if cell is not None else math.nan
            row[c + CI_LOW] = cell.ci_low if cell is not None else math.nan
            row[c + CI_HIGH] = cell.ci_high if cell is not None else math.nan
        if SAFETY in cols:
            safety = keyed.get((model, method, SAFETY))
            row[N_HARMFUL] = int(safety.n_benchmarks) if safety is not None else 0
        out.append(row)
    columns = ["model", "method"] + [x for c in cols for x in (c, c + CI_LOW, c + CI_HIGH)]
    if SAFETY in cols:
        columns.append(N_HARMFUL)
    return pd.DataFrame.from_records(out, columns=columns)


def capability_table(capability_jsons: Sources) -> pd.DataFrame:
    """One row per (model, method); one column per capability task (its primary metric's value).

    Task columns follow the papers' order (``capability.PAPER_TASKS``), then the rest
    alphabetically. A task missing for some row is NaN there.
    """
    from ..capability import PAPER_TASKS

    rows: dict[tuple[str, str], dict[str, float]] = {}
    tasks: set[str] = set()
    for path, model, method in _labelled(capability_jsons):
        obj = read_json(path)
        if not isinstance(obj, dict) or not isinstance(obj.get("tasks"), dict):
            raise DataError(f"{path}: expected a capability result with a 'tasks' object")
        if (model, method) in rows:
            raise ValueError(f"two capability results for ({model}, {method})")
        vals: dict[str, float] = {}
        for name, res in obj["tasks"].items():
            try:
                vals[name] = float(res["metrics"][res["primary_metric"]])
            except (KeyError, TypeError) as exc:
                raise DataError(f"{path}: task {name!r}: no value for its primary metric") from exc
        rows[(model, method)] = vals
        tasks |= set(vals)
    paper = [t for t in PAPER_TASKS if t in tasks]
    cols = paper + sorted(tasks - set(paper))
    out = [
        {"model": m, "method": meth, **{t: rows[(m, meth)].get(t, math.nan) for t in cols}}
        for m, meth in _rows_order(list(rows))
    ]
    return pd.DataFrame.from_records(out, columns=["model", "method", *cols])


WINRATE = "win_rate"
WINRATE_COLUMNS = ["model", "method", "reference", WINRATE, WINRATE + CI_LOW, WINRATE + CI_HIGH, "n", "n_scored",
                   "n_identical", "n_judge_errors", "n_position_disagreements", "judge"]


def winrate_table(winrate_jsons: Sequence[PathLike]) -> pd.DataFrame:
    """One row per (model, method): the pairwise win rate against the reference and its CI.

    ``win_rate`` is in [0, 1] with ties counted 0.5 (0.5 = as good as the reference); the Markdown
    renders it as "0.62 [0.55, 0.69]". ``judge`` names the judging model. Rows follow the papers'
    method order; all files must share one reference method.
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
        key = (str(obj["model"]), str(obj["method"]))
        if key in rows:
            raise ValueError(f"two win-rate results for {key}")
        references.add(str(obj["reference"]))
        rows[key] = {
            "model": key[0], "method": key[1], "reference": str(obj["reference"]),
            WINRATE: _num(obj[WINRATE], where, WINRATE), WINRATE + CI_LOW: _num(obj["ci_low"], where, "ci_low"),
            WINRATE + CI_HIGH: _num(obj["ci_high"], where, "ci_high"), "n": int(obj["n"]),
            "n_scored": int(obj["n_scored"]), "n_identical": int(obj.get("n_identical", 0)),
            "n_judge_errors": int(obj.get("n_judge_errors", 0)),
            "n_position_disagreements": int(obj.get("n_position_disagreements", 0)),
            "judge": str((obj.get("judge") or {}).get("model", "")),
        }
    if len(references) > 1:
        raise ValueError(f"win-rate results against different references {sorted(references)}")
    out = [rows[k] for k in _rows_order(list(rows))]
    return pd.DataFrame.from_records(out, columns=WINRATE_COLUMNS)


# --------------------------------------------------------------------------- writing


def _fmt_float(x: Any, digits: int) -> str:
    return "–" if x is None or pd.isna(x) else f"{float(x):.{digits}f}"


def markdown_frame(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The frame as display strings: each ``C, C_ci_low, C_ci_high`` triple becomes one column C.

    A cell reads "0.73 [0.66, 0.80]"; a value without an interval reads "0.73"; missing "–".
    """
    cols = list(df.columns)
    ci_cols = {c + sfx for c in cols for sfx in (CI_LOW, CI_HIGH) if c + sfx in cols}
    out: dict[str, list[str]] = {}
    for c in cols:
        if c in ci_cols:
            continue
        col = df[c]
        if pd.api.types.is_float_dtype(col.dtype):
            values = [_fmt_float(v, digits) for v in col]
            if c + CI_LOW in ci_cols and c + CI_HIGH in ci_cols:
                for i, (lo, hi) in enumerate(zip(df[c + CI_LOW], df[c + CI_HIGH], strict=True)):
                    if values[i] != "–" and not (pd.isna(lo) or pd.isna(hi)):
                        values[i] += f" [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"
        elif pd.api.types.is_integer_dtype(col.dtype):
            values = [str(int(v)) for v in col]
        else:
            values = ["–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in col]
        out[c] = values
    return pd.DataFrame(out, columns=list(out))


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub pipe table (no ``tabulate`` dependency); numbers right-aligned."""
    disp = markdown_frame(df, digits)
    numeric = [pd.api.types.is_numeric_dtype(df[c].dtype) for c in disp.columns]

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
