"""Train/eval leakage: exact matches after normalisation and near-duplicates (rapidfuzz).

Near-duplicates are pairs whose normalised prompts have ``rapidfuzz.fuzz.ratio`` >= ``threshold``
(0..100; the normalised Indel similarity, so 90 means at most ~10% of characters edited). The
all-pairs comparison runs in rapidfuzz's C++ ``process.cdist`` with ``score_cutoff`` (which skips
pairs whose lengths alone rule the threshold out), over row blocks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .text import normalise

TABLE_COLUMNS = ("train_split", "eval_set", "n_train", "n_eval", "exact", "near", "leaked_eval_fraction",
                 "in_distribution", "threshold_exceeded")


def near_duplicates(a: Sequence[str], b: Sequence[str], threshold: float, *, workers: int = 1,
                    block: int = 2048) -> list[tuple[int, int, float]]:
    """(i, j, score) for every pair of *normalised* strings with ratio >= threshold."""
    from rapidfuzz import fuzz, process

    out: list[tuple[int, int, float]] = []
    if not a or not b:
        return out
    cutoff = int(np.ceil(threshold))
    for start in range(0, len(a), block):
        chunk = a[start:start + block]
        m = process.cdist(chunk, b, scorer=fuzz.ratio, score_cutoff=cutoff, dtype=np.uint8, workers=workers)
        ii, jj = np.nonzero(m)
        out += [(start + int(i), int(j), float(m[i, j])) for i, j in zip(ii, jj)]
    return out


@dataclass
class PairResult:
    train_split: str
    eval_set: str
    n_train: int
    n_eval: int
    exact: int = 0  # eval prompts with an exact (normalised) match in the training split
    near: int = 0  # further eval prompts with a near-duplicate (not exact)
    in_distribution: bool = False
    threshold_exceeded: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def leaked_eval_fraction(self) -> float:
        return (self.exact + self.near) / self.n_eval if self.n_eval else 0.0

    def row(self) -> dict[str, Any]:
        return {"train_split": self.train_split, "eval_set": self.eval_set, "n_train": self.n_train,
                "n_eval": self.n_eval, "exact": self.exact, "near": self.near,
                "leaked_eval_fraction": round(self.leaked_eval_fraction, 6), "in_distribution": self.in_distribution,
                "threshold_exceeded": self.threshold_exceeded}


def check_leakage(train: Mapping[str, Sequence[Mapping[str, Any]]], evals: Mapping[str, Sequence[Mapping[str, Any]]],
                  *, threshold: float, max_fraction: float, in_distribution: set[tuple[str, str]] | None = None,
                  workers: int = 1, n_examples: int = 5) -> list[PairResult]:
    """One result per (training split, eval set). In-distribution pairs are reported, never failed."""
    in_distribution = in_distribution or set()
    results: list[PairResult] = []
    ev_norm = {e: [normalise(r["prompt"]) for r in rows] for e, rows in evals.items()}
    # One near-duplicate pass of all training prompts against all eval prompts, then split by pair.
    all_eval = [(e, j) for e, rows in ev_norm.items() for j in range(len(rows))]
    all_eval_text = [ev_norm[e][j] for e, j in all_eval]
    for t, rows in train.items():
        tr_norm = [normalise(r["prompt"]) for r in rows]
        tr_set = set(tr_norm)
        near = near_duplicates(tr_norm, all_eval_text, threshold, workers=workers)
        near_by_eval: dict[str, dict[int, tuple[int, float]]] = {e: {} for e in evals}
        for i, k, s in near:
            e, j = all_eval[k]
            near_by_eval[e].setdefault(j, (i, s))
        for e, erows in evals.items():
            res = PairResult(t, e, len(rows), len(erows), in_distribution=(t, e) in in_distribution)
            for j, text in enumerate(ev_norm[e]):
                if text in tr_set:
                    res.exact += 1
                    if len(res.examples) < n_examples:
                        res.examples.append({"kind": "exact", "eval_id": erows[j]["id"], "prompt": erows[j]["prompt"]})
                elif j in near_by_eval[e]:
                    res.near += 1
                    i, s = near_by_eval[e][j]
                    if len(res.examples) < n_examples:
                        res.examples.append({"kind": "near", "score": s, "eval_id": erows[j]["id"],
                                             "eval_prompt": erows[j]["prompt"], "train_id": rows[i]["id"],
                                             "train_prompt": rows[i]["prompt"]})
            res.threshold_exceeded = not res.in_distribution and res.leaked_eval_fraction > max_fraction
            results.append(res)
    return results


def leaking_prompts(pool: Sequence[Mapping[str, Any]], evals: Mapping[str, Sequence[Mapping[str, Any]]], *,
                    threshold: float, workers: int = 1) -> set[str]:
    """Ids of pool records that match any eval prompt exactly or nearly (for decontamination)."""
    ev = [normalise(r["prompt"]) for rows in evals.values() for r in rows]
    ev_set = set(ev)
    norm = [normalise(r["prompt"]) for r in pool]
    bad = {pool[i]["id"] for i, t in enumerate(norm) if t in ev_set}
    bad |= {pool[i]["id"] for i, _, _ in near_duplicates(norm, ev, threshold, workers=workers)}
    return bad


def table_markdown(results: Sequence[PairResult], *, threshold: float, max_fraction: float) -> str:
    lines = [f"# Train/eval leakage (exact after normalisation; near: rapidfuzz ratio >= {threshold:g}; "
             f"fail above {max_fraction:g} of an eval set unless in-distribution)", "",
             "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in results:
        row = r.row()
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    flagged = [r for r in results if r.in_distribution]
    if flagged:
        lines += ["", "**In-distribution** (by the recipe's design, reported and not failed): "
                  + ", ".join(f"{r.train_split} -> {r.eval_set}" for r in flagged)]
    return "\n".join(lines) + "\n"
