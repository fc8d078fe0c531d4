"""A tune grid's table: every setting, seed and tuning part, judged as the evaluation judges (rule tune_table).

The values are the benchmarks' own metrics on their *tuning* parts (``data.real.tuning``): compliance on the
over-refusal sets, defense success (refusal) on the harmful ones. A setting chosen from this table was
chosen without an evaluated prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..benchmarks import get_benchmark
from ..io import read_json
from .tables import collect, model_method_from_path

PathLike = str | Path


def knob_text(spec: Mapping[str, Any]) -> str:
    """A setting's overrides as one compact cell, e.g. ``stl sft_n.sft_safety=100 sft.epochs=2``."""
    def flat(prefix: str, value: Any) -> list[str]:
        if isinstance(value, Mapping):
            return [x for k, v in value.items() for x in flat(f"{prefix}.{k}" if prefix else str(k), v)]
        return [f"{prefix}={value}"]

    return " ".join([str(spec["kind"]), *flat("", {k: v for k, v in spec.items() if k != "kind"})])


def tune_table(evals: Sequence[PathLike], sft_metrics: Sequence[PathLike],
               settings: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, setting, seed), then the mean over seeds per (model, setting) where it has several.

    ``settings`` maps each instance (tune_<grid>_<setting>) to its spec; rows keep its order. Each tuning
    benchmark gives ``<benchmark>`` (its metric), ``<benchmark> n`` and, where a secondary judge ran,
    ``<benchmark> (<judge>)``. ``steps`` and ``examples`` come from the SFT metrics of settings that train.
    """
    # .../<model>/<method>/seed<k>/tuning/eval/<benchmark>.json: the run's labels without reading each file twice
    df = collect({p: model_method_from_path(Path(p).parents[2] / "eval" / Path(p).name) for p in evals})
    trained: dict[tuple[str, int], dict[str, Any]] = {}
    for p in sft_metrics:
        parts = Path(p).parts  # .../<model>/<method>/seed<k>/sft_metrics.json
        trained[(parts[-3], int(parts[-2].removeprefix("seed")))] = read_json(p)
    order = list(settings)
    rows: list[dict[str, Any]] = []
    for (model, method, seed), g in df.groupby(["model", "method", "seed"], sort=False):
        m = trained.get((method, int(seed)), {})
        row: dict[str, Any] = {"model": model, "setting": method, "knobs": knob_text(settings[method]),
                               "seed": str(seed), "steps": m.get("global_step", math.nan),
                               "examples": m.get("n_examples", math.nan)}
        for _, r in g.iterrows():
            b = r["benchmark"]
            row[f"{b} {get_benchmark(b).metric}"] = r["value"]
            row[f"{b} n"] = int(r["n"])
            if r["secondary_judge"]:
                row[f"{b} ({r['secondary_judge']})"] = r["secondary_value"]
        rows.append(row)
    table = pd.DataFrame.from_records(rows)
    if table.empty:
        return table
    means = []
    for (model, method), g in table.groupby(["model", "setting"], sort=False):
        if len(g) < 2:
            continue
        row = {"model": model, "setting": method, "knobs": g["knobs"].iloc[0], "seed": f"mean of {len(g)}"}
        for col in table.columns[5:]:
            if col.endswith(" n") or col == "examples":
                row[col] = g[col].iloc[0]
            else:
                row[col] = float(g[col].mean())
        means.append(row)
    table = pd.concat([table, pd.DataFrame.from_records(means)], ignore_index=True) if means else table
    table["_rank"] = table["setting"].map(order.index)
    table["_mean"] = table["seed"].str.startswith("mean")
    return (table.sort_values(["model", "_rank", "_mean"], kind="stable").drop(columns=["_rank", "_mean"])
            .reset_index(drop=True))
