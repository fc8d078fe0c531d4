"""Seaborn figures of the main results, written as byte-reproducible PNGs.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot, so no
global backend or open-figure state), inside seaborn style contexts (no global theme change),
and saved with a fixed dpi and no "Software" metadata; Agg writes no timestamp, so the same
input gives the same bytes and Snakemake sees no spurious change. Bars and error bars are placed
with matplotlib directly: seaborn's own error bars are computed from raw observations, while
ours are the bootstrap intervals already in the eval JSONs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..io import atomic_path
from .tables import SAFETY, main_cells, method_sort_key

DPI = 150
PALETTE = "colorblind"


def _save(fig: Figure, out_png: str | Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _methods(cells: pd.DataFrame) -> list[str]:
    return sorted(set(cells["method"]), key=method_sort_key)


def _method_colors(methods: list[str]) -> dict[str, tuple[float, float, float]]:
    """Method -> colour from the full, canonically ordered method list, the same in every figure."""
    return dict(zip(methods, sns.color_palette(PALETTE, len(methods)), strict=True))


def _errs(values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Non-negative (below, above) error lengths; a missing interval draws no bar."""
    below = np.where(np.isnan(lows), 0.0, np.clip(values - lows, 0.0, None))
    above = np.where(np.isnan(highs), 0.0, np.clip(highs - values, 0.0, None))
    return np.vstack([below, above])


def _cells(sub: pd.DataFrame, method: str, groups: list[str], col: str) -> np.ndarray:
    """``sub`` (indexed by method, column) values for ``groups``; NaN where a cell is missing."""
    return np.array([float(sub.at[(method, g), col]) if (method, g) in sub.index else math.nan for g in groups])


def compliance_by_method(df: pd.DataFrame, out_png: str | Path) -> None:
    """Grouped bars: compliance per over-refusal benchmark, and Safety, for each method.

    One panel per model; groups are DCR's columns (XS, CoCo, OR, OK, PH, Safety), bars are
    methods, error bars the 95% intervals. ``df`` is ``tables.collect`` output.
    """
    cells = main_cells(df)
    cells = cells[cells["suite"].isin(["over_refusal", "harmful"])]
    if cells.empty:
        raise ValueError("compliance_by_method: no over-refusal or harmful results to plot")
    models = sorted(set(cells["model"]))
    methods = _methods(cells)
    known = [c for c in ("XS", "CoCo", "OR", "OK", "PH") if c in set(cells["column"])]
    extra = sorted(set(cells.loc[cells["suite"] == "over_refusal", "column"]) - set(known))
    groups = known + extra + ([SAFETY] if SAFETY in set(cells["column"]) else [])
    colors = _method_colors(_methods(main_cells(df)))
    width = 0.8 / len(methods)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(max(4.0, 0.9 * len(groups) + 0.25 * len(groups) * len(methods)), 2.8 * len(models)))
        axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
        for ax, model in zip(axes, models, strict=True):
            sub = cells[cells["model"] == model].set_index(["method", "column"])
            x = np.arange(len(groups), dtype=float)
            for j, method in enumerate(methods):
                vals, lows, highs = (_cells(sub, method, groups, col) for col in ("value", "ci_low", "ci_high"))
                pos = x - 0.4 + width * (j + 0.5)
                ok = ~np.isnan(vals)  # a missing cell draws nothing rather than a zero bar
                if ok.any():
                    ax.bar(pos[ok], vals[ok], width=width * 0.95, color=colors[method])
                    ax.errorbar(pos[ok], vals[ok], yerr=_errs(vals[ok], lows[ok], highs[ok]), fmt="none",
                                ecolor="black", elinewidth=0.8, capsize=2)
            if SAFETY in groups:
                ax.axvline(len(groups) - 1.5, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xticks(x, groups)
            ax.set_ylim(0.0, 1.05)
            ax.set_ylabel("compliance / DSR")
            ax.set_title(model)
        # one legend for all panels, so a method missing from the first model still appears
        handles = [Patch(facecolor=colors[m], label=m) for m in methods]
        axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=min(len(methods), 6),
                       frameon=False)
        fig.tight_layout()
    _save(fig, out_png)


def safety_vs_overrefusal(df: pd.DataFrame, out_png: str | Path) -> None:
    """Scatter: x = mean compliance over the over-refusal benchmarks present, y = Safety.

    One labelled point per (model, method); marker shape tells models apart. Up and to the right
    is better: the safety/over-refusal trade-off the papers argue about, in one picture.
    """
    cells = main_cells(df)
    palette = _method_colors(_methods(cells))
    rows = []
    for (model, method), g in cells.groupby(["model", "method"], sort=True):
        over = g[g["suite"] == "over_refusal"]["value"].dropna()
        safety = g[g["column"] == SAFETY]["value"].dropna()
        if len(over) and len(safety):
            rows.append({"model": model, "method": method, "compliance": float(over.mean()),
                         "safety": float(safety.iloc[0])})
    if not rows:
        raise ValueError("safety_vs_overrefusal: no (model, method) has both over-refusal and harmful results")
    pts = pd.DataFrame(rows)
    methods = sorted(set(pts["method"]), key=method_sort_key)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(4.8, 4.0))
        ax = fig.subplots()
        sns.scatterplot(data=pts, x="compliance", y="safety", hue="method", hue_order=methods,
                        style="model", style_order=sorted(set(pts["model"])), palette=palette, s=60, ax=ax)
        for r in pts.itertuples(index=False):
            ax.annotate(str(r.method), (r.compliance, r.safety), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
        ax.set_xlim(0.0, 1.05)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("mean over-refusal compliance (higher is better)")
        ax.set_ylabel("Safety: mean defense success rate")
        ax.legend(loc="lower left", fontsize=7, frameon=True)
        fig.tight_layout()
    _save(fig, out_png)
