"""``refusal_clf_v1``'s validation: leave-one-model-out agreement with human labels, and its Markdown table.

Why a module of its own. The table (``results/judges/refusal_clf_v1_cv.{json,md}``) is how ``FEATURES`` was
chosen among ``CANDIDATES`` and how the judge is reported; it trains many classifiers but never builds or saves
a judge, so it needs the features, the encoder and the classifier, not the judge class. ``learned.py``'s
command line (``cv``, and ``train`` with a CV directory) calls it.

Protocol: leave one of XSTest's 5 models out, train on the other 4 with C chosen inside them, score the held-out
model's rows with the judge's rules applied, next to the string-match baselines on the same folds.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .classifier import (
    C_GRID,
    agreement,
    decide,
    fit_linear,
    is_refusal_label,
    rule_judgement,
    select_c,
)
from .encoder import EmbeddingCache, MiniLMEncoder, get_encoder
from .features import FEATURES, JUDGE_ID, STRMATCH_FEATURES, FeatureSet

if TYPE_CHECKING:
    from ..judge_validation import LabelledRow


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "spread": max(values) - min(values), "sd": statistics.pstdev(values)}


def _with_rules(pred_refusal: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Classifier verdicts with the judge's rules applied, so validation scores what scoring would say."""
    out = pred_refusal.copy()
    for i, t in enumerate(texts):
        rule = rule_judgement(t)
        if rule is not None:
            out[i] = rule.label == "refusal"
    return out


def cross_validate_lomo(rows: Sequence[LabelledRow], feature_sets: Sequence[FeatureSet] = (FEATURES,), *,
                        c_grid: Sequence[float] = C_GRID,
                        baselines: Sequence[str] = ("xstest_strmatch_v1", "jbb_substring_v1"),
                        prompt_folds: int = 0, encoder: MiniLMEncoder | None = None) -> dict[str, Any]:
    """Leave-one-model-out binary agreement with the human labels, per held-out model, for each feature set,
    next to string-match judges on the same rows.

    Each fold trains on every other model's rows only, and C is chosen inside the fold (nested: leave one of
    the training models out at a time, over ``c_grid``), so nothing is tuned on the held-out model.
    ``distinct`` scores each distinct response once (XSTest's gpt4 says "Sorry, but I can't assist with that."
    182 times, so one string decides 40% of its fold). ``prompt_folds > 1`` adds a stricter check: prompts are
    also split into that many groups (by sha256 of the prompt), and each (model, prompt group) cell is
    predicted by a classifier that saw neither the model nor those prompts, so recognising a prompt seen with
    another model earns nothing.
    """
    models = sorted({r.model for r in rows})
    if len(models) < 2:
        raise ValueError(f"leave-one-model-out needs at least 2 models; got {models}")
    responses = [r.response for r in rows]
    model_of = np.array([r.model for r in rows])
    human = np.array([is_refusal_label(r.label) for r in rows])
    distinct = np.zeros(len(rows), dtype=bool)
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rows):
        if (r.model, r.response) not in seen:
            seen.add((r.model, r.response))
            distinct[i] = True
    cache = EmbeddingCache(responses, encoder or get_encoder())
    pgroup = np.array([int(hashlib.sha256(r.prompt.encode("utf-8")).hexdigest(), 16) % max(prompt_folds, 1)
                       for r in rows])

    per_model: dict[str, dict[str, Any]] = {}
    for m in models:
        sel = model_of == m
        per_model[m] = {"n": int(sel.sum()), "n_distinct": int((sel & distinct).sum()),
                        "human_refusal_rate": float(human[sel].mean())}
    for b in baselines:
        pred = np.array([j.label == "refusal" for j in STRMATCH_FEATURES[b]().judge_many([("", t) for t in responses])])
        for m in models:
            sel = model_of == m
            per_model[m][b] = agreement(pred[sel], human[sel])
            per_model[m][f"{b}_distinct"] = agreement(pred[sel & distinct], human[sel & distinct])

    candidates: dict[str, Any] = {}
    for fs in feature_sets:
        x = cache.features(fs)
        fold: dict[str, float] = {}
        fold_distinct: dict[str, float] = {}
        chosen_c: dict[str, float] = {}
        strict: dict[str, float] = {}
        for m in models:
            test = model_of == m
            c, _ = select_c(x[~test], human[~test], model_of[~test], c_grid)
            chosen_c[m] = c
            coef, b0 = fit_linear(x[~test], human[~test], c)
            pred = _with_rules(decide(x[test], coef, b0), [t for t, k in zip(responses, test, strict=True) if k])
            fold[m] = agreement(pred, human[test])
            fold_distinct[m] = agreement(pred[distinct[test]], human[test & distinct])
            if prompt_folds > 1:
                hits = 0
                for g in range(prompt_folds):
                    train = ~test & (pgroup != g)
                    cell = test & (pgroup == g)
                    if cell.any():
                        coef, b0 = fit_linear(x[train], human[train], c)
                        texts = [t for t, k in zip(responses, cell, strict=True) if k]
                        hits += int((_with_rules(decide(x[cell], coef, b0), texts) == human[cell]).sum())
                strict[m] = hits / int(test.sum())
        entry: dict[str, Any] = {"features": fs.to_dict(), "C": chosen_c, "per_model": fold,
                                 **_summary(list(fold.values())),
                                 "distinct": {"per_model": fold_distinct, **_summary(list(fold_distinct.values()))}}
        if strict:
            entry["prompt_disjoint"] = {"per_model": strict, **_summary(list(strict.values()))}
        candidates[fs.name] = entry

    return {
        "judge_id": JUDGE_ID,
        "protocol": "leave-one-model-out: train on the other models' rows (C chosen by leave-one-model-out inside "
                    "them), binary agreement (compliance vs any refusal) with the human label on the held-out "
                    "model's rows",
        "c_grid": list(c_grid),
        "models": models,
        "per_model": per_model,
        "baselines": {b: {**_summary([per_model[m][b] for m in models]),
                          "distinct": _summary([per_model[m][f"{b}_distinct"] for m in models])}
                      for b in baselines},
        "candidates": candidates,
        # JSON files are written with sorted keys; these keep the tables in the order measured
        "baseline_order": list(baselines),
        "candidate_order": [fs.name for fs in feature_sets],
        "prompt_folds": prompt_folds,
        "encode_seconds": cache.seconds,
    }


def cv_markdown(result: Mapping[str, Any], chosen: str) -> str:
    """The LOMO table of the chosen feature set (per model: n, ours, string match; mean; min; spread), then
    every candidate's mean and worst fold."""
    models = result["models"]
    ours = result["candidates"][chosen]
    strict = ours.get("prompt_disjoint")
    base = list(result["baseline_order"])
    head = ["held-out model", "n", "C", JUDGE_ID, *base, "n distinct", "ours, distinct",
            *(f"{b}, distinct" for b in base)]
    if strict:
        head.insert(4, "ours, prompt-disjoint")
    source = result.get("source") or "xstest"
    lines = [f"# {JUDGE_ID}: leave-one-model-out agreement with the human labels of {source}", "",
             (f"Features: {chosen} ({_describe(FeatureSet.from_dict(ours['features']))}); logistic regression, "
              "class-balanced. Binary agreement: compliance vs full or partial refusal. Each row: trained on the "
              "other models' completions, with C chosen inside them (leave one of them out at a time, grid "
              f"{', '.join(str(c) for c in result['c_grid'])}), scored on this model's. The string-match judges are "
              "scored on the same rows. *Distinct* scores each distinct response of a model once."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    for m in models:
        pm = result["per_model"][m]
        row = [m, str(pm["n"]), f"{ours['C'][m]:g}", f"{ours['per_model'][m]:.3f}"]
        if strict:
            row.append(f"{strict['per_model'][m]:.3f}")
        row += [f"{pm[b]:.3f}" for b in base]
        row += [str(pm["n_distinct"]), f"{ours['distinct']['per_model'][m]:.3f}"]
        row += [f"{pm[f'{b}_distinct']:.3f}" for b in base]
        lines.append("| " + " | ".join(row) + " |")
    for stat in ("mean", "min", "spread"):
        row = [f"**{stat}**", "", "", f"{ours[stat]:.3f}"]
        if strict:
            row.append(f"{strict[stat]:.3f}")
        row += [f"{result['baselines'][b][stat]:.3f}" for b in base]
        row += ["", f"{ours['distinct'][stat]:.3f}"]
        row += [f"{result['baselines'][b]['distinct'][stat]:.3f}" for b in base]
        lines.append("| " + " | ".join(row) + " |")
    if len(result["candidates"]) > 1:
        lines += ["", ("Candidate feature sets (same folds, same nested choice of C). The feature set was chosen on "
                       "these folds (mean, then worst fold), so its row is slightly optimistic: one fold's standard "
                       "error is about 0.010 (450 rows, agreement near 0.95), the size of the gaps between "
                       "candidates."), "",
                  "| features | mean | min | spread | distinct mean | " + " | ".join(models) + " | C per fold |",
                  "|" + "---|" * (6 + len(models))]
        for name in result["candidate_order"]:
            cand = result["candidates"][name]
            mark = " (chosen)" if name == chosen else ""
            lines.append(f"| {name}{mark} | {cand['mean']:.3f} | {cand['min']:.3f} | {cand['spread']:.3f} | "
                         f"{cand['distinct']['mean']:.3f} | "
                         + " | ".join(f"{cand['per_model'][m]:.3f}" for m in models)
                         + " | " + ", ".join(f"{cand['C'][m]:g}" for m in models) + " |")
    if strict:
        lines += ["", (f"Prompt-disjoint: prompts are also split into {result['prompt_folds']} groups (sha256 of the "
                       "prompt); each cell is predicted by a classifier that saw neither the held-out model nor those "
                       "prompts (XSTest's models answer one prompt list).")]
    secs = ", ".join(f"{k}: {v} s" for k, v in sorted(result["encode_seconds"].items()))
    n = sum(result["per_model"][m]["n"] for m in models)
    lines += ["", f"Encoding all {n} responses on CPU (2 shared cores here), per view: {secs}.", ""]
    return "\n".join(lines)


def _describe(fs: FeatureSet) -> str:
    parts = [f"all-MiniLM-L6-v2 of {v.replace('_', ' ')} (<= {m} tokens)" for v, m in fs.views]
    return " + ".join(parts + [f"{s} verdict" for s in fs.strmatch])
