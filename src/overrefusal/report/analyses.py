"""Tables and figures of the analyses (rule analysis_report), from every model's ``analysis/<kind>.json``.

* eNTK: the 3×3 class-block means of the normalised kernel per checkpoint; a heatmap per checkpoint.
* separability: probe accuracy, cosine silhouette and Fisher ratio per layer and checkpoint; curves per
  metric, and the 2-D PCA of the activations at the layer DCR refines.
* attribution: trigger against other tokens per checkpoint; bars of the trigger tokens' share of the
  absolute attribution, and one example prompt's token heatmap per checkpoint.

Figures follow ``figures.py``: a bare Figure in seaborn style contexts, written as PNG and PDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..io import DataError
from ..stats import seed_interval
from .figures import PALETTE, Outs, _save
from .tables import CI_HIGH, CI_LOW

ENTK_CLASSES = ("seemingly_toxic", "toxic", "general")
SHORT = {"seemingly_toxic": "ST", "toxic": "T", "general": "G"}


def _checkpoints(docs: Sequence[dict[str, Any]], kind: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(model, checkpoint label, its results on every analysed seed) in the documents' order."""
    out = []
    for d in docs:
        if d.get("analysis") != kind or not isinstance(d.get("checkpoints"), dict):
            raise DataError(f"expected a {kind} analysis result, got analysis={d.get('analysis')!r}")
        seeds = [str(x) for x in d["seeds"]]
        for label in d["labels"]:  # JSON objects are written sorted: the order is the labels list
            runs = d["checkpoints"][label]
            missing = [x for x in seeds if x not in runs]
            if missing and (label != "base" or len(missing) == len(seeds)):  # the base model runs once
                raise DataError(f"{kind} result of {d['model']}: {label} lacks seeds {missing}")
            out.append((str(d["model"]), label, [runs[x] for x in seeds if x in runs]))
    if not out:
        raise DataError(f"no {kind} results to report")
    return out


def _over_seeds(row: dict[str, Any], name: str, values: Sequence[float | None]) -> None:
    """``name`` and its t interval across seeds (NaN with one seed or a missing value)."""
    if any(v is None for v in values):
        row.update({name: math.nan, name + CI_LOW: math.nan, name + CI_HIGH: math.nan})
        return
    mean, lo, hi = seed_interval([float(v) for v in values], rate=False)  # type: ignore[arg-type]
    row.update({name: mean, name + CI_LOW: lo, name + CI_HIGH: hi})


def _display(cps: Sequence[tuple[str, str, Any]]) -> list[str]:
    return [f"{m}/{c}" if len({m for m, _, _ in cps}) > 1 else c for m, c, _ in cps]


# --------------------------------------------------------------------------- eNTK


def entk_table(docs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, checkpoint): each block mean ``ST|T`` (row class | column class) over seeds."""
    rows = []
    for model, label, runs in _checkpoints(docs, "entk"):
        row: dict[str, Any] = {"model": model, "checkpoint": label}
        classes = runs[0]["classes"]
        for a in classes:
            for b in classes:
                _over_seeds(row, f"{SHORT.get(a, a)}|{SHORT.get(b, b)}", [r["block_means"][a][b] for r in runs])
        cfg = runs[0]["config"]
        row.update(n_seeds=len(runs), estimator=cfg["estimator"], params=cfg["params"], top_k=cfg["top_k"],
                   n_params=runs[0]["n_params"])
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _mean_blocks(runs: Sequence[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    classes = runs[0]["classes"]
    mat = np.mean([[[r["block_means"][a][b] for b in classes] for a in classes] for r in runs], axis=0)
    return classes, mat


def entk_figure(docs: Sequence[dict[str, Any]], outs: Outs) -> None:
    cps = _checkpoints(docs, "entk")
    names = _display(cps)
    means = [_mean_blocks(runs) for _, _, runs in cps]
    vmax = max(float(m.max()) for _, m in means)
    n_seeds = len(cps[0][2])
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig = Figure(figsize=(2.5 * len(cps) + 0.8, 2.7))
        axes = fig.subplots(1, len(cps), squeeze=False)[0]
        for ax, name, (classes, mat) in zip(axes, names, means, strict=True):
            ticks = [SHORT.get(c, c) for c in classes]
            sns.heatmap(mat, ax=ax, vmin=0.0, vmax=vmax, cmap="mako", annot=True, fmt=".2f", cbar=ax is axes[-1],
                        xticklabels=ticks, yticklabels=ticks, square=True, annot_kws={"fontsize": 7})
            ax.set_title(name, fontsize=8)
        fig.suptitle("normalised eNTK ‖K(x′,x)‖/‖K(x′,x′)‖, class-block means over "
                     f"{n_seeds} seed(s) (ST seemingly toxic, T toxic, G general)", fontsize=8)
        fig.tight_layout()
    _save(fig, outs)


# --------------------------------------------------------------------------- separability

SEPARABILITY_METRICS = (("probe_accuracy", "linear-probe accuracy (CV)"), ("silhouette_cosine", "silhouette (cosine)"),
                        ("fisher_ratio", "Fisher ratio"))


def separability_table(docs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, checkpoint, layer): each metric's mean over seeds with its t interval."""
    rows = []
    for model, label, runs in _checkpoints(docs, "separability"):
        for i, layer in enumerate(runs[0]["layers"]):
            row: dict[str, Any] = {"model": model, "checkpoint": label, "layer": layer["layer"],
                                   "block": "embeddings" if layer["block"] is None else str(layer["block"])}
            for col, _ in SEPARABILITY_METRICS:
                _over_seeds(row, col, [r["layers"][i][col] for r in runs])
            row.update(n=sum(runs[0]["n"].values()), folds=runs[0]["folds"], n_seeds=len(runs))
            rows.append(row)
    return pd.DataFrame.from_records(rows)


def separability_figure(docs: Sequence[dict[str, Any]], outs: Outs) -> None:
    cps = _checkpoints(docs, "separability")
    df = separability_table(docs)
    names = _display(cps)
    colors = dict(zip(names, sns.color_palette(PALETTE, len(names)), strict=True))
    pca_key = next(iter(cps[0][2][0]["pca"]), None)
    ncols = len(SEPARABILITY_METRICS) + 1  # the metrics and their legend, then the PCA panels in rows below
    nrows = 1 + math.ceil(len(cps) / ncols) if pca_key is not None else 1
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(2.8 * ncols, 2.6 * nrows))
        grid = fig.subplots(nrows, ncols, squeeze=False)
        for ax in grid.flat:
            ax.set_visible(False)
        for j, (col, title) in enumerate(SEPARABILITY_METRICS):
            ax = grid[0, j]
            ax.set_visible(True)
            for (model, label, _), name in zip(cps, names, strict=True):
                g = df[(df["model"] == model) & (df["checkpoint"] == label)].sort_values("layer")
                x = g["layer"].to_numpy()
                ax.plot(x, g[col].astype(float), marker="o", markersize=2.5, linewidth=1.2, color=colors[name],
                        label=name)
                ax.fill_between(x, g[col + CI_LOW].astype(float), g[col + CI_HIGH].astype(float), color=colors[name],
                                alpha=0.15, linewidth=0)
            if col == "probe_accuracy":
                ax.axhline(0.5, color="black", linestyle=":", linewidth=0.6)
                ax.set_ylim(0.3, 1.02)
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("layer (0 = embeddings, i = block i−1's output)", fontsize=7)
        handles, labels = grid[0, 0].get_legend_handles_labels()
        grid[0, -1].set_visible(True)
        grid[0, -1].axis("off")
        grid[0, -1].legend(handles, labels, fontsize=6, frameon=False, loc="center left")
        for j, ((_, _, runs), name) in enumerate(zip(cps, names, strict=True)):
            p = runs[0]["pca"].get(pca_key) if pca_key is not None else None
            if p is None:
                continue
            ax = grid[1 + j // ncols, j % ncols]
            ax.set_visible(True)
            xy = np.asarray(p["coords"], dtype=float)
            lab = np.asarray(p["labels"])
            for k, cls in enumerate(runs[0]["classes"]):
                sel = lab == cls
                ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.8, color=sns.color_palette(PALETTE, 2)[k],
                           label=cls.replace("_", " "))
            ax.set_title(f"{name}\nPCA at layer {pca_key}, first seed ({100 * sum(p['explained']):.0f}% of variance)",
                         fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
        if pca_key is not None:
            grid[1, 0].legend(fontsize=6, frameon=False)
        fig.tight_layout()
    _save(fig, outs)


# --------------------------------------------------------------------------- attribution

ATTRIBUTION_METRICS = ("abs_share_trigger", "token_share_trigger", "mean_trigger", "mean_other", "diff",
                       "mean_paired_diff")


def attribution_table(docs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, checkpoint): trigger against other tokens, each a mean over seeds with its interval."""
    rows = []
    for model, label, runs in _checkpoints(docs, "attribution"):
        row: dict[str, Any] = {"model": model, "checkpoint": label, "method": runs[0]["method"]}
        for col in ATTRIBUTION_METRICS:
            _over_seeds(row, col, [r["summary"][col] for r in runs])
        _over_seeds(row, "mean_refusal_logodds", [r["mean_f_x"] for r in runs])
        gaps = [r.get("mean_abs_completeness_gap") for r in runs]
        row.update(n_prompts=runs[0]["summary"]["n_prompts"],
                   n_prompts_with_trigger=runs[0]["summary"]["n_prompts_with_trigger"],
                   mean_abs_completeness_gap=None if None in gaps else float(np.mean(gaps)), n_seeds=len(runs))
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def attribution_figure(docs: Sequence[dict[str, Any]], outs: Outs) -> None:
    cps = _checkpoints(docs, "attribution")
    df = attribution_table(docs)
    names = _display(cps)
    example = next((runs[0]["examples"][0] for _, _, runs in cps if runs[0]["examples"]), None)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(10, 2.4 + 0.35 * len(cps)))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.2]})
        y = np.arange(len(cps))
        share = df["abs_share_trigger"].astype(float).to_numpy()
        err = np.vstack([np.nan_to_num(share - df["abs_share_trigger" + CI_LOW].astype(float).to_numpy()),
                         np.nan_to_num(df["abs_share_trigger" + CI_HIGH].astype(float).to_numpy() - share)])
        left.barh(y, share, xerr=err, color=sns.color_palette(PALETTE, len(cps)), error_kw={"linewidth": 0.8})
        left.scatter(df["token_share_trigger"].astype(float), y, marker="|", s=200, color="black",
                     label="share by token count")
        left.set_yticks(y, names, fontsize=7)
        left.invert_yaxis()
        left.set_xlim(0, 1)
        left.set_xlabel("trigger tokens' share of |attribution|")
        left.legend(fontsize=6, frameon=False, loc="lower right")
        if example is not None:
            idx = [i for i, m in enumerate(example["user_mask"]) if m]
            mats = []
            for _, _, runs in cps:  # the same prompt and tokenizer in every checkpoint of a model, first seed
                ex = next((e for e in runs[0]["examples"] if e["prompt"] == example["prompt"]), None)
                mats.append([ex["scores"][i] for i in idx] if ex else [math.nan] * len(idx))
            mat = np.asarray(mats, dtype=float)
            lim = float(np.nanmax(np.abs(mat))) if mat.size and np.isfinite(mat).any() else 1.0
            sns.heatmap(mat, ax=right, cmap="vlag", center=0.0, vmin=-lim, vmax=lim,
                        xticklabels=[example["tokens"][i] for i in idx], yticklabels=names,
                        cbar_kws={"label": "contribution to refusal log-odds"})
            right.tick_params(axis="x", labelsize=7, rotation=60)
            right.tick_params(axis="y", labelsize=7)
            right.set_title(f"first seed, example: {example['prompt'][:80]}", fontsize=8)
        else:
            right.set_visible(False)
        fig.tight_layout()
    _save(fig, outs)


TABLES = {"entk": entk_table, "separability": separability_table, "attribution": attribution_table}
FIGURES = {"entk": entk_figure, "separability": separability_figure, "attribution": attribution_figure}


# --------------------------------------------------------------------------- eNTK over training steps


def kernel_dynamics_table(tracking: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per (model, method, stage): the normalised kernel between probe sets at the stage's first and last
    measured step and the change, as means over seeds with t intervals (``tracking.json``'s kernel records).
    A stage whose seeds were measured at different steps is refused (the rows would mix steps)."""
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for d in tracking:
        recs = (d.get("kernel") or {}).get("records") if d.get("enabled") else None
        if recs:
            runs.setdefault((str(d["model"]), str(d["method"]), str(d["stage"])), []).append(
                {r["step"]: r["block_means"] for r in recs})
    if not runs:
        raise DataError("no kernel records to tabulate (is tracking.kernel.enabled false?)")
    pairs = (("seemingly_toxic", "toxic"), ("seemingly_toxic", "general"))
    order = {"dcr": 0, "sft": 1}
    rows = []
    for (model, method, stage), seeds in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                              order.get(kv[0][2], 2))):
        steps = sorted(seeds[0])
        if any(sorted(s) != steps for s in seeds):
            raise DataError(f"kernel records of {model}/{method} ({stage}) differ in steps across seeds")
        first, last = steps[0], steps[-1]
        row: dict[str, Any] = {"model": model, "method": method, "stage": stage, "first_step": first,
                               "last_step": last}
        for a, b in pairs:
            name = f"{SHORT[a]}|{SHORT[b]}"
            _over_seeds(row, f"{name} first", [s[first][a][b] for s in seeds])
            _over_seeds(row, f"{name} last", [s[last][a][b] for s in seeds])
            _over_seeds(row, f"{name} change", [s[last][a][b] - s[first][a][b] for s in seeds])
        row["n_seeds"] = len(seeds)
        rows.append(row)
    return pd.DataFrame(rows)
