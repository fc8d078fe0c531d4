"""Seaborn figures of the results, each written as a PNG and a vector PDF, byte-reproducible.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot, so no
global backend or open-figure state), inside seaborn style contexts (no global theme change),
and saved with a fixed dpi and without the tool-version and date metadata, so the same input gives
the same bytes and Snakemake sees no spurious change. Bars and error bars are placed
with matplotlib directly: seaborn's own error bars are computed from raw observations, while
ours are the bootstrap intervals already in the eval JSONs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..io import atomic_path
from .tables import INVALID, OVER_MEAN, SAFETY, STRMATCH_SUFFIX, main_cells, method_sort_key, seed_cells

DPI = 150
DERIVED = {INVALID, OVER_MEAN + STRMATCH_SUFFIX}  # summary columns of the main table, not benchmarks
PALETTE = "colorblind"


# Per format, the metadata that would make two identical figures differ (tool versions, dates).
_NO_STAMPS = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
              "svg": {"Creator": None, "Date": None}}
Outs = str | Path | Sequence[str | Path]


def _save(fig: Figure, outs: Outs) -> None:
    """Write ``fig`` to every path given, in the format its suffix names: a PNG for reading and a
    vector file (PDF or SVG) for papers; each byte-reproducible."""
    FigureCanvasAgg(fig)
    for out in [outs] if isinstance(outs, str | Path) else outs:
        fmt = Path(out).suffix.lstrip(".").lower()
        if fmt not in _NO_STAMPS:
            raise ValueError(f"{out}: figures are written as {', '.join(_NO_STAMPS)}")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_NO_STAMPS[fmt])


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


def compliance_by_method(df: pd.DataFrame, outs: Outs) -> None:
    """Grouped bars: compliance per over-refusal benchmark, and Safety, for each method.

    One panel per model; groups are DCR's columns (XS, CoCo, OR, OK, PH, Safety), bars are
    methods (the mean over seeds), error bars the 95% intervals across seeds, and each seed's own
    value a dot on its bar. ``df`` is ``tables.collect`` output.
    """
    per_seed = seed_cells(df)
    cells = main_cells(df)
    cells = cells[cells["suite"].isin(["over_refusal", "harmful"])]
    if cells.empty:
        raise ValueError("compliance_by_method: no over-refusal or harmful results to plot")
    models = sorted(set(cells["model"]))
    methods = _methods(cells)
    known = [c for c in ("XS", "CoCo", "OR", "OK", "PH") if c in set(cells["column"])]
    extra = sorted(set(cells.loc[cells["suite"] == "over_refusal", "column"]) - set(known) - DERIVED)
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
                runs = per_seed[(per_seed["model"] == model) & (per_seed["method"] == method)]
                for r in runs.itertuples(index=False):
                    if r.column in groups:
                        ax.plot(pos[groups.index(r.column)], r.value, marker="o", markersize=2.2, color="black",
                                alpha=0.7, linestyle="none")
            if SAFETY in groups:
                ax.axvline(len(groups) - 1.5, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xticks(x, groups)
            ax.set_ylim(0.0, 1.05)
            ax.set_ylabel("answered / refused (Safety)")
            ax.set_title(model)
        # one legend for all panels, so a method missing from the first model still appears
        handles = [Patch(facecolor=colors[m], label=m) for m in methods]
        axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=min(len(methods), 6),
                       frameon=False)
        fig.tight_layout()
    _save(fig, outs)


def safety_vs_overrefusal(df: pd.DataFrame, outs: Outs) -> None:
    """Scatter: x = mean compliance over the over-refusal benchmarks present, y = Safety.

    One labelled point per (model, method); marker shape tells models apart. Up and to the right
    is better: the safety/over-refusal trade-off the papers argue about, in one picture.
    """
    cells = main_cells(df)
    palette = _method_colors(_methods(cells))
    rows = []
    for (model, method), g in cells.groupby(["model", "method"], sort=True):
        over = g[(g["suite"] == "over_refusal") & ~g["column"].isin(DERIVED)]["value"].dropna()
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
        # Methods that land on the same point share one label instead of overprinting each other.
        labels: dict[tuple[float, float], list[str]] = {}
        for r in pts.sort_values("method", key=lambda m: m.map(method_sort_key)).itertuples(index=False):
            labels.setdefault((round(r.compliance, 2), round(r.safety, 2)), []).append(str(r.method))
        for (x, y), names in labels.items():
            ax.annotate(", ".join(names), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                        ha="right" if x > 0.7 else "left")
        share_axes(ax, "mean answered share on over-refusal benchmarks (higher is better)",
                   "Safety: mean refused share on harmful sets")
        fig.tight_layout()
    _save(fig, outs)


def share_axes(ax, xlabel: str, ylabel: str) -> None:  # noqa: ANN001 - a matplotlib Axes
    """Both axes a share from 0 to 1 (with room for points at 1), labelled, the legend in the empty corner."""
    ax.set_xlim(0.0, 1.05)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower left", fontsize=7, frameon=True)


PROBE_ORDER = ("seemingly_toxic", "toxic", "general")


def refusal_dynamics(tracking: list[dict], outs: Outs, *, scale: str = "probability") -> None:
    """Refusal probability (DCR's plot) or log-odds vs training step: one panel per (model, method), 4 per
    row, one line per probe set.

    ``tracking`` are the ``tracking.json`` documents of the SFT runs and of DCR's contrastive stage
    (``overrefusal/schemas/refusal_tracking.schema.json``). The x axis counts optimiser steps from the start of
    safety SFT; a DCR method's contrastive stage is drawn before it, at negative steps, in a
    shaded band, so one panel shows the whole DCR pipeline. Lines are the mean over each probe
    set (and over seeds); bands are ±1 standard error, across seeds when there are several, else
    across the probe set's prompts (deterministic, unlike bootstrap intervals). ``scale="probability"``
    plots the mean over prompts of P(refusal) on [0, 1]; ``"logodds"`` the mean log-odds, which keeps
    the differences near 0 and 1 visible. The dotted line is P(refusal) = 0.5 on either scale.
    """
    if scale not in ("probability", "logodds"):
        raise ValueError(f"refusal_dynamics: scale {scale!r} is not 'probability' or 'logodds'")
    docs = [d for d in tracking if d.get("enabled") and d.get("records")]
    if not docs:
        raise ValueError("refusal_dynamics: no tracking records to plot (is tracking.enabled false?)")
    dcr_steps = {(d["model"], d["method"]): int(d["total_steps"]) for d in docs if d["stage"] == "dcr"}
    rows = []
    for d in docs:
        offset = -dcr_steps[(d["model"], d["method"])] if d["stage"] == "dcr" else 0
        for r in d["records"]:
            if scale == "probability":
                p = 1.0 / (1.0 + np.exp(-np.asarray(r["logodds"], dtype=float)))
                mean, sd = float(r["mean_p_refusal"]), float(p.std(ddof=1)) if len(p) > 1 else 0.0
            else:
                mean, sd = float(r["mean_logodds"]), float(r["std_logodds"])
            rows.append({"model": d["model"], "method": d["method"], "stage": d["stage"], "step": r["step"] + offset,
                         "seed": d.get("seed", 0), "probe_set": r["probe_set"], "mean": mean,
                         "se": sd / math.sqrt(max(1, r["n"]))})
    ylabel = "P(refusal)" if scale == "probability" else "refusal log-odds"
    _step_panels(pd.DataFrame(rows), dcr_steps, outs, series="probe_set", order=PROBE_ORDER, ylabel=ylabel,
                 hline=0.5 if scale == "probability" else 0.0,
                 ylim=(-0.02, 1.02) if scale == "probability" else None)


KERNEL_PAIRS = (("seemingly_toxic", "toxic"), ("seemingly_toxic", "general"), ("toxic", "general"))


def kernel_dynamics(tracking: list[dict], outs: Outs) -> None:
    """DCR's kernel curves: the normalised eNTK K̃(x', x) between probe sets (block means of
    ``tracking.json``'s ``kernel`` records) vs training step, one panel per (model, method), one line per
    pair of sets, the DCR stage at negative steps as in :func:`refusal_dynamics`. Bands are ±1 standard
    error across seeds (none with one seed: the block mean of one run has no spread to show)."""
    docs = [d for d in tracking if d.get("enabled") and (d.get("kernel") or {}).get("records")]
    if not docs:
        raise ValueError("kernel_dynamics: no kernel records to plot (is tracking.kernel.enabled false?)")
    dcr_steps = {(d["model"], d["method"]): int(d["total_steps"]) for d in docs if d["stage"] == "dcr"}
    rows = []
    for d in docs:
        offset = -dcr_steps[(d["model"], d["method"])] if d["stage"] == "dcr" else 0
        for r in d["kernel"]["records"]:
            for a, b in KERNEL_PAIRS:
                rows.append({"model": d["model"], "method": d["method"], "stage": d["stage"],
                             "step": r["step"] + offset, "seed": d.get("seed", 0), "pair": f"{a} → {b}",
                             "mean": float(r["block_means"][a][b]), "se": 0.0})
    _step_panels(pd.DataFrame(rows), dcr_steps, outs, series="pair",
                 order=[f"{a} → {b}" for a, b in KERNEL_PAIRS], ylabel="normalised eNTK K̃", hline=None, ylim=None)


def _step_panels(runs: pd.DataFrame, dcr_steps: dict[tuple[str, str], int], outs: Outs, *, series: str,
                 order: Sequence[str], ylabel: str, hline: float | None, ylim: tuple[float, float] | None) -> None:
    """Curves over training steps, one panel per (model, method), one line per ``series`` value: means over
    seeds with ±1 SE bands (across seeds with several, else each run's own ``se``)."""
    keys = ["model", "method", "stage", "step", series]
    df = runs.groupby(keys, sort=True).agg(mean=("mean", "mean"), se=("se", "mean"), sd=("mean", "std"),
                                           k=("seed", "nunique")).reset_index()
    df["se"] = np.where(df["k"] > 1, df["sd"].fillna(0.0) / np.sqrt(df["k"]), df["se"])
    models = sorted(set(df["model"]))
    methods = sorted(set(df["method"]), key=method_sort_key)
    sets = [s for s in order if s in set(df[series])] + sorted(set(df[series]) - set(order))
    colors = dict(zip(sets, sns.color_palette(PALETTE, len(sets)), strict=True))
    panels = [(model, method) for model in models for method in methods
              if not df[(df["model"] == model) & (df["method"] == method)].empty]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(2.6 * ncols + 0.4, 2.4 * nrows + 0.6))
        grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for ax in grid.flat[len(panels):]:
            ax.set_visible(False)
        for k, (model, method) in enumerate(panels):
            i, j = divmod(k, ncols)
            ax = grid[i, j]
            sub = df[(df["model"] == model) & (df["method"] == method)]
            if (model, method) in dcr_steps:
                ax.axvspan(-dcr_steps[(model, method)], 0, color="0.92", zorder=0)
                ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
                ax.text(0.02, 0.98, "DCR stage", transform=ax.transAxes, ha="left", va="top", fontsize=6,
                        color="0.4")
            for name in sets:
                for stage in ("dcr", "sft"):  # separate lines: the stages join at step 0
                    g = sub[(sub[series] == name) & (sub["stage"] == stage)].sort_values("step")
                    if g.empty:
                        continue
                    x, y, se = g["step"].to_numpy(), g["mean"].to_numpy(), g["se"].to_numpy()
                    ax.plot(x, y, color=colors[name], linewidth=1.2, marker="o", markersize=2,
                            label=name if stage == "sft" else None)
                    ax.fill_between(x, y - se, y + se, color=colors[name], alpha=0.2, linewidth=0)
            if hline is not None:
                ax.axhline(hline, color="black", linewidth=0.6, linestyle=":")
            if ylim is not None:
                ax.set_ylim(*ylim)
            ax.set_title(method if len(models) == 1 else f"{model} / {method}", fontsize=8)
            ax.set_xlabel("step (from the start of SFT)" if k + ncols >= len(panels) else "")
            ax.set_ylabel(ylabel if j == 0 else "")
        handles = [Patch(facecolor=colors[s], label=s.replace("_", " ")) for s in sets]
        fig.legend(handles=handles, loc="upper center", ncol=len(sets), frameon=False, fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.4 * nrows + 0.6)))
    _save(fig, outs)


SWEEP_CLAIMS = (("answered", "answered (over-refusal sets)"), ("toxic_refused", "toxic refused"),
                ("invalid", "invalid"))


def sweep_rows(table: pd.DataFrame, knob: str, defaults: dict[str, object]) -> pd.DataFrame:
    """The rows of a sweep table (``tables.sweep_table``) that differ from ``defaults`` in ``knob`` alone,
    sorted by it: a one-knob sweep out of a table of settings that vary several."""
    def same(value: object, default: object) -> bool:  # a CSV column with gaps reads 40 as 40.0, True as "True"
        try:
            return float(value) == float(default)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return str(value) == str(default)

    others = [k for k in defaults if k != knob and k in table.columns]
    keep = table[knob].notna()
    for k in others:
        keep &= table[k].map(lambda v, d=defaults[k]: same(v, d))
    return table[keep].sort_values(knob)


def sweep_figure(rows: pd.DataFrame, knob: str, outs: Outs, *, series: str | None = None,
                 refs: pd.DataFrame | None = None, xlabel: str | None = None) -> None:
    """The claims (answered, toxic refused, invalid; mean over seeds with 95% intervals) against one knob,
    one line per ``series`` value (e.g. the reflection source), with ``refs`` rows (STL, no-safety) as
    horizontal lines: DCR's ℓ sweep and TBR's γ sweep."""
    if rows.empty or rows[knob].nunique() < 2:
        raise ValueError(f"sweep_figure: fewer than two values of {knob!r} to plot")
    groups = [(None, rows)] if series is None else list(rows.groupby(series, sort=True))
    colors = sns.color_palette(PALETTE, max(3, len(groups)))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(3.0 * len(SWEEP_CLAIMS), 2.8))
        axes = fig.subplots(1, len(SWEEP_CLAIMS), squeeze=False)[0]
        for ax, (col, title) in zip(axes, SWEEP_CLAIMS, strict=True):
            for k, (name, g) in enumerate(groups):
                g = g.sort_values(knob)
                x = g[knob].astype(float).to_numpy()
                y = g[col].astype(float).to_numpy()
                err = _errs(y, g[col + "_ci_low"].astype(float).to_numpy(), g[col + "_ci_high"].astype(float).to_numpy())
                ax.errorbar(x, y, yerr=err, marker="o", markersize=3, linewidth=1.2, capsize=2, color=colors[k],
                            label=None if name is None else str(name))
            for r in ([] if refs is None else refs.itertuples(index=False)):
                ax.axhline(float(getattr(r, col)), color="grey", linewidth=0.8, linestyle="--")
                ax.text(ax.get_xlim()[1], float(getattr(r, col)), f" {r.method}", fontsize=6, va="center",
                        color="0.35", clip_on=False)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(xlabel or knob)
            ax.set_xticks(sorted(set(rows[knob].astype(float))))
        if series is not None:
            axes[0].legend(fontsize=6, frameon=False)
        fig.tight_layout()
    _save(fig, outs)


def note_figure(text: str, outs: Outs) -> None:
    """A figure that says why there is nothing to plot (an output the rule must write all the same)."""
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig = Figure(figsize=(5.0, 1.2))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
    _save(fig, outs)
