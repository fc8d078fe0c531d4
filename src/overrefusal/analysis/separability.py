"""Layer-wise linear separability of *seemingly toxic* and *toxic* prompt activations (DCR's premise).

DCR (Discernment via Contrastive Refinement, arXiv 2603.03323) argues that in an aligned model the
activations of seemingly toxic prompts (benign prompts with trigger words, e.g. XSTest's safe set)
and of truly toxic prompts are entangled, i.e. not linearly separable, so that activation-steering
baselines which build one direction from class means (SCANS, Cao et al., AAAI 2025, arXiv
2408.11491; Surgical false-refusal ablation, Wang et al., ICLR 2025, arXiv 2410.03415, after Arditi
et al. 2024, arXiv 2406.11717) cannot act on one class without the other. DCR's Circle loss (Sun et
al. 2020, arXiv 2002.10857) on the output of block l (:mod:`overrefusal.dcr`; here ``"layer"`` l + 1)
pushes the two apart. We measure this per checkpoint, at every layer, with four complementary
statistics (all symmetric in the two classes, so which one is labelled 1 does not matter):

* a cross-validated linear probe (held-out accuracy: the operational meaning of "linearly
  separable", and the one that does not overfit when d > n);
* the silhouette score (Rousseeuw 1987) under cosine distance: cluster geometry, no fitting;
* the Fisher criterion at the LDA direction (Fisher 1936), i.e. the squared Mahalanobis distance
  between the class means under the pooled within-class covariance, shrunk towards a scaled identity
  (Ledoit & Wolf 2004) so that it is defined when d > n; an in-sample statistic;
* a 2-D PCA projection for figures.

Activations are read where the model decides how to answer: the hidden state at the last prompt
position (the one whose output predicts the first answer token), for the embedding output and every
decoder block output, through the same hooks SCANS and Surgical use
(:mod:`overrefusal.interventions.activations`), on prompts encoded exactly as generation encodes them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from ..interventions.activations import (
    decoder_layers,
    encode_all,
    last_position_activations,
    pad_id_of,
)
from ..prompting import TEMPLATES, Template

# Inverse L2 strength of the probe, on standardised features. Fixed rather than tuned: a nested
# search would make the accuracy depend on the grid, and with C = 1 a probe on d ~ 4096 features
# and a few hundred prompts is regularised enough not to memorise, yet fits any real margin.
PROBE_C = 1.0
PROBE_MAX_ITER = 5000  # lbfgs on d > n standardised features can need thousands of steps
SILHOUETTE_METRICS: tuple[str, ...] = ("cosine", "euclidean")
DEFAULT_CLASSES: tuple[str, str] = ("seemingly_toxic", "toxic")


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------

def _check_xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float64 features and 0/1 labels; labels are any two distinct values, sorted to 0 and 1."""
    xa = np.asarray(x.detach().float().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    ya = np.asarray(y)
    if xa.ndim != 2:
        raise ValueError(f"x must be a 2-D (n, d) array, got shape {xa.shape}")
    if ya.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {ya.shape}")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"x has {xa.shape[0]} rows but y has {ya.shape[0]} labels")
    if not np.all(np.isfinite(xa)):
        raise ValueError(f"x contains {int(np.sum(~np.isfinite(xa)))} non-finite values (NaN or inf)")
    classes, codes = np.unique(ya, return_inverse=True)
    if len(classes) != 2:
        raise ValueError(f"y must hold exactly two classes, got {len(classes)}: {classes.tolist()[:5]}")
    return xa, codes.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------

def probe_pipeline(seed: int = 0) -> Pipeline:
    """The linear probe: per-feature standardisation (fitted on the training fold only), then
    L2-regularised logistic regression with ``C = PROBE_C``."""
    return make_pipeline(StandardScaler(),
                         LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, random_state=seed))


def probe_accuracy(x: Any, y: Any, *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy of a linear probe under stratified, shuffled k-fold cross-validation.

    Returns ``{"mean", "std", "per_fold", "folds", "folds_requested", "folds_reduced", "note"}``;
    ``std`` is the population standard deviation over folds. Stratified k-fold needs every class in
    every fold, so when the minority class has fewer than ``folds`` members the number of folds is
    reduced to that count (``folds_reduced`` is then True and ``note`` says why). A class with
    fewer than two members cannot be cross-validated and raises ``ValueError``. Deterministic for a
    given ``seed`` (shuffling and lbfgs are both seeded or deterministic).
    """
    xa, ya = _check_xy(x, y)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    minority = int(np.bincount(ya).min())
    if minority < 2:
        raise ValueError(f"each class needs at least 2 examples for cross-validation; the smaller has {minority}")
    k = min(folds, minority)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    accs = []
    for train, test in cv.split(xa, ya):
        probe = probe_pipeline(seed).fit(xa[train], ya[train])
        accs.append(float(np.mean(probe.predict(xa[test]) == ya[test])))
    return {
        "mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_fold": accs,
        "folds": k, "folds_requested": folds, "folds_reduced": k < folds,
        "note": (f"folds reduced from {folds} to {k}: the smaller class has only {minority} examples"
                 if k < folds else ""),
    }


def silhouette(x: Any, y: Any, metric: str = "cosine") -> float:
    """Mean silhouette coefficient of the two classes (in [-1, 1]; > 0: each point is on average
    closer to its own class than to the other), on all points (no subsampling, so deterministic)."""
    xa, ya = _check_xy(x, y)
    if metric not in SILHOUETTE_METRICS:
        raise ValueError(f"metric must be one of {SILHOUETTE_METRICS}, got {metric!r}")
    if len(ya) < 3:
        raise ValueError(f"the silhouette needs at least 3 points, got {len(ya)}")
    if metric == "cosine" and np.any(np.linalg.norm(xa, axis=1) == 0):
        raise ValueError("cosine silhouette is undefined for zero vectors")
    return float(silhouette_score(xa, ya, metric=metric))


def fisher_ratio(x: Any, y: Any, *, shrinkage: float | str = "ledoit-wolf", details: bool = False) -> Any:
    """Fisher's criterion at the LDA direction: the squared Mahalanobis distance of the class means.

    Definition, with classes c in {0, 1}, n_c examples each, n = n_0 + n_1 and d features:

    * mu_c = class mean; delta = mu_1 - mu_0;
    * S_w = (1/n) sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T, the pooled within-class covariance;
    * Sigma = (1 - a) S_w + a (tr(S_w) / d) I, shrunk towards a scaled identity with
      a = ``shrinkage`` in [0, 1], or, for ``"ledoit-wolf"``, the Ledoit-Wolf (2004) optimal
      coefficient estimated by :func:`sklearn.covariance.ledoit_wolf_shrinkage` on the
      class-centred data;
    * J = max_w (w . delta)^2 / (w^T Sigma w) = delta^T Sigma^{-1} delta, attained at the LDA
      direction w* = Sigma^{-1} delta.

    With identity-covariance Gaussians whose means are ``D`` apart, J -> D^2 as n grows. J is
    invariant to rescaling x; it is in-sample (with a = 0 and d >= n - 1 it is infinite), which is
    why the shrinkage and the cross-validated probe accompany it. Computed from the thin SVD of the
    class-centred data, so d > n costs O(n^2 d), not O(d^3) (sklearn's Ledoit-Wolf coefficient
    itself is O(n d^2): a few seconds per layer at d = 4096, n = 750).

    Returns J as a float (``inf`` if the within-class scatter is zero, or singular with a = 0,
    while the means differ along it; ``0.0`` if the means coincide), or with ``details=True``
    ``{"fisher_ratio": J, "shrinkage": a}``.
    """
    xa, ya = _check_xy(x, y)
    n, d = xa.shape
    mus = [xa[ya == c].mean(axis=0) for c in (0, 1)]
    delta = mus[1] - mus[0]
    z = xa - np.where(ya[:, None] == 1, mus[1], mus[0])
    if isinstance(shrinkage, str):
        if shrinkage != "ledoit-wolf":
            raise ValueError(f"shrinkage must be a number in [0, 1] or 'ledoit-wolf', got {shrinkage!r}")
        a = float(ledoit_wolf_shrinkage(z, assume_centered=True))
    else:
        a = float(shrinkage)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {a}")
    # S_w = V diag(s^2 / n) V^T on the row space of z; Sigma adds beta = a tr(S_w) / d on every direction
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    ev = s ** 2 / n
    beta = a * float(ev.sum()) / d
    lam = (1.0 - a) * ev + beta
    proj = vt @ delta
    resid = max(float(delta @ delta - proj @ proj), 0.0)  # part of delta outside z's row space
    scale = float(delta @ delta)
    tol = max(n, d) * np.finfo(np.float64).eps * (float(lam.max()) if lam.size else 0.0)
    if scale == 0.0:
        j = 0.0
    elif beta > tol:
        j = float(np.sum(proj ** 2 / lam)) + resid / beta
    else:
        # unshrunk and singular (or no within-class spread at all): a mean difference along a
        # direction without spread separates the classes perfectly
        keep = lam > tol
        lost = resid + float(np.sum(proj[~keep] ** 2))
        j = math.inf if lost > 1e-12 * scale else float(np.sum(proj[keep] ** 2 / lam[keep]))
    return {"fisher_ratio": j, "shrinkage": a} if details else j


def pca_2d(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components: ``(coords (n, 2), explained_variance_ratio (2,))``.

    Exact (LAPACK) SVD, and a sign convention of our own so the picture does not flip between
    library versions: each component is oriented so that its largest-magnitude loading is positive.
    If all points coincide, coordinates and ratios are all zero.
    """
    xa = np.asarray(x.detach().float().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    if xa.ndim != 2:
        raise ValueError(f"x must be a 2-D (n, d) array, got shape {xa.shape}")
    if not np.all(np.isfinite(xa)):
        raise ValueError("x contains non-finite values (NaN or inf)")
    if min(xa.shape) < 2:
        raise ValueError(f"PCA to 2-D needs at least 2 points and 2 features, got shape {xa.shape}")
    if not np.any(xa != xa[0]):
        # all points equal (e.g. the embedding of a template's fixed last token): no direction exists
        return np.zeros((xa.shape[0], 2)), np.zeros(2)
    pca = PCA(n_components=2, svd_solver="full").fit(xa)
    comps = pca.components_
    signs = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    coords = pca.transform(xa) * signs
    return coords, np.asarray(pca.explained_variance_ratio_, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------

def layer_activations(model: Any, tokenizer: Any, template: Template, prompts: Sequence[str], *,
                      max_length: int = 64, batch_size: int = 16) -> Tensor:
    """(L + 1, n, d) float32 hidden states at each prompt's last position, on CPU.

    Index 0 is the embedding output (the residual stream entering block 0); index i >= 1 is the
    output of decoder block i - 1. Prompts are rendered with ``template`` and tokenised as
    generation does, keeping the last ``max_length`` tokens; batches are left-padded with positions
    counted over real tokens, so a prompt's activations do not depend on its batch. Index L is the
    last block's raw output, *before* the final norm (Hugging Face's ``output_hidden_states`` puts the
    final norm on its last entry; the norm rescales per prompt, which would blur the comparison with
    the other layers). Runs in eval mode without gradients and restores the model's mode.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")
    if not prompts:
        raise ValueError("no prompts")
    if max_length < 1 or batch_size < 1:
        raise ValueError(f"max_length and batch_size must be positive, got {max_length}, {batch_size}")
    decoder_layers(model)  # fail early with a clear message on an unsupported architecture
    seqs = encode_all(tokenizer, list(prompts), template, max_length)
    pad = pad_id_of(tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # the embedding output is block 0's input; block outputs come from a second pass, since
            # the shared reader takes one site per forward
            emb = last_position_activations(model, seqs, site="input", k=1, pad_id=pad, batch_size=batch_size,
                                            layers=[0])
            blocks = last_position_activations(model, seqs, site="output", k=1, pad_id=pad,
                                               batch_size=batch_size)
    finally:
        model.train(was_training)
    # (N, layers, 1, d) -> (layers, N, d)
    return torch.cat([emb, blocks], dim=1)[:, :, 0, :].transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def _finite_or_none(v: float) -> float | None:
    # strict JSON has no inf/NaN; null marks "unbounded or undefined"
    return float(v) if math.isfinite(v) else None


def _layer_index(i: int, n_layers: int) -> int:
    j = i + n_layers if i < 0 else i
    if not 0 <= j < n_layers:
        raise ValueError(f"pca layer {i} out of range for {n_layers} layers (0 = embeddings)")
    return j


def separability_report(model: Any, tokenizer: Any, template: Template, sets: Mapping[str, Sequence[str]], *,
                        classes: Sequence[str] = DEFAULT_CLASSES, folds: int = 5, seed: int = 0,
                        max_length: int = 64, batch_size: int = 16,
                        pca_layers: Sequence[int] | None = None) -> dict[str, Any]:
    """Per-layer separability of two prompt sets, as a JSON-able dict.

    ``sets`` maps set names to prompt lists; ``classes = (negative, positive)`` picks two of them
    (label 0 and 1). Layers are indexed as in :func:`layer_activations`: ``"layer"`` 0 is the
    embedding output (``"block": None``) and ``"layer"`` i >= 1 the output of block ``i - 1``.
    ``pca_layers`` (same indexing; negative counts from the end) defaults to the middle and the
    last layer. Structure::

        {"classes": [c0, c1], "n": {c0: n0, c1: n1}, "template", "max_length", "seed",
         "folds": used, "folds_requested", "probe_note", "num_layers": L, "hidden_size": d,
         "layers": [{"layer", "block", "probe_accuracy", "probe_std", "probe_per_fold",
                     "silhouette_cosine", "fisher_ratio", "fisher_shrinkage"}, ...],   # L + 1 entries
         "pca": {"<layer>": {"coords": [[x, y], ...], "labels": [c, ...], "explained": [r1, r2]}},
         "seconds"}

    ``fisher_ratio`` is null where it is unbounded (no within-class spread along the mean
    difference). Everything but ``"seconds"`` is deterministic for a given model, prompts and seed.

    Layer 0 reads the embedding of each prompt's last token. With the ``chat`` and ``alpaca``
    templates that token is the template's own (the assistant header, "### Response:"), the same for
    every prompt, so layer 0 is a constant: probe at the majority rate, silhouette and Fisher 0.
    It is kept as the floor the blocks build on.
    """
    start = time.perf_counter()
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"classes must name two different sets, got {list(classes)}")
    missing = [c for c in classes if c not in sets]
    if missing:
        raise ValueError(f"sets lack {missing}; present: {sorted(sets)}")
    prompts = [p for c in classes for p in sets[c]]
    labels = np.concatenate([np.full(len(sets[c]), k, dtype=np.int64) for k, c in enumerate(classes)])
    acts = layer_activations(model, tokenizer, template, prompts, max_length=max_length,
                             batch_size=batch_size).numpy().astype(np.float64)
    n_layers = acts.shape[0]
    rows = []
    probe_meta: dict[str, Any] = {}
    for i in range(n_layers):
        probe = probe_accuracy(acts[i], labels, folds=folds, seed=seed)
        fisher = fisher_ratio(acts[i], labels, details=True)
        probe_meta = probe
        rows.append({
            "layer": i, "block": None if i == 0 else i - 1,
            "probe_accuracy": probe["mean"], "probe_std": probe["std"], "probe_per_fold": probe["per_fold"],
            "silhouette_cosine": silhouette(acts[i], labels, "cosine"),
            "fisher_ratio": _finite_or_none(fisher["fisher_ratio"]), "fisher_shrinkage": fisher["shrinkage"],
        })
    chosen = [n_layers // 2, n_layers - 1] if pca_layers is None else [_layer_index(i, n_layers) for i in pca_layers]
    pca: dict[str, Any] = {}
    for i in dict.fromkeys(chosen):  # dedupe, keep order
        coords, ratio = pca_2d(acts[i])
        pca[str(i)] = {"coords": coords.tolist(), "labels": [classes[k] for k in labels.tolist()],
                       "explained": ratio.tolist()}
    return {
        "classes": list(classes), "n": {c: len(sets[c]) for c in classes}, "template": template,
        "max_length": max_length, "seed": seed, "folds": probe_meta["folds"], "folds_requested": folds,
        "probe_note": probe_meta["note"], "num_layers": n_layers - 1, "hidden_size": int(acts.shape[2]),
        "layers": rows, "pca": pca, "seconds": time.perf_counter() - start,
    }
