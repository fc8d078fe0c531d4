"""Surgical: ablating a false-refusal vector (Wang et al., ICLR 2025, arXiv 2410.03415).

1. **Pools.** Harmful, harmless and pseudo-harmful prompts (OR-Bench-Hard in the paper; by default
   the world's own seemingly toxic training set), each split into a train and a validation part
   with a seed, then **filtered by refusal score** at the last prompt token: harmful and
   pseudo-harmful prompts the model does refuse (score > 0), harmless ones it does not (< 0).
2. **Candidates.** Difference of means of every block's residual-stream input at each
   post-instruction position: ``r_harm = μ(harmful) − μ(harmless)`` and
   ``r_or = μ(pseudo) − μ(harmless)``, in float64.
3. **Orthogonalisation** of the false-refusal vector against the true-refusal one, per
   (position, block): ``r_or⊥ = r_or − λ ⟨r_or, r_harm⟩ / ‖r_harm‖² · r_harm``, normalised.
4. **Selection** of one (position, block): with ``r_or⊥`` ablated everywhere, the mean refusal score
   of the pseudo-harmful validation prompts (lower is better). Candidates are discarded when the
   score is not finite, when the block lies in the last ``prune_layer_fraction`` of the depth, or
   when the KL divergence of the harmless validation prompts' next-token distribution from the
   unablated one exceeds ``kl_threshold``. If every candidate is discarded, the fit fails and says
   why; it never picks one at random.
5. **Inference**: directional ablation of ``r_or⊥`` at every block's input, attention output and
   MLP output (:func:`.activations.directional_ablation`), weights untouched.

Every candidate's scores and the reason for each discard go into the selection report.
Departures from mainlp/False-Refusal-Mitigation@916dcac: positions come from the tokenised chat
template, not per-model literal strings; the validation parts are filtered like the train parts;
the optional harm-direction addition (``addact_coeff``, 0 in the paper's config) is not built.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from ..prompting import Template
from ..stage_settings import SurgicalConfig
from ..tracking import refusal_logodds
from .activations import (
    decoder_layers,
    directional_ablation,
    encode_all,
    last_logits,
    last_position_activations,
    pad_id_of,
    post_instruction_positions,
)

POOLS: tuple[str, ...] = ("harmful", "harmless", "pseudo_harmful")
KEEP_SIGN = {"harmful": 1, "harmless": -1, "pseudo_harmful": 1}  # refusal score > 0, < 0, > 0


class SelectionError(ValueError):
    """No usable candidate direction, or too few prompts; ``report`` says why."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def split_pools(pools: dict[str, Sequence[str]], cfg: SurgicalConfig) -> dict[str, dict[str, list[str]]]:
    """{pool: {"train": [...], "val": [...]}}, disjoint, drawn with the seed."""
    out = {}
    need = cfg.n_train + cfg.n_val
    for name in POOLS:
        pool = list(pools.get(name) or [])
        if len(pool) < need:
            raise ValueError(f"Surgical: pool {name!r} holds {len(pool)} prompts; n_train {cfg.n_train} + n_val "
                             f"{cfg.n_val} = {need} are needed")
        drawn = random.Random(f"{cfg.seed}:{name}").sample(pool, need)
        out[name] = {"train": drawn[:cfg.n_train], "val": drawn[cfg.n_train:]}
    return out


def _refusal_scores(model: Any, seqs: Sequence[Sequence[int]], refusal_ids: Sequence[int], pad: int,
                    batch_size: int) -> Tensor:
    return refusal_logodds(last_logits(model, seqs, pad_id=pad, batch_size=batch_size), refusal_ids)


def _kl(base_logits: Tensor, logits: Tensor) -> float:
    """Mean KL(base ‖ ablated) of the next-token distributions."""
    p = torch.log_softmax(base_logits.double(), -1)
    q = torch.log_softmax(logits.double(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


@torch.no_grad()
def fit_surgical(model: Any, tokenizer: Any, pools: dict[str, Sequence[str]], refusal_ids: Sequence[int],
                 cfg: SurgicalConfig, *, template: Template) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Pick the false-refusal direction; return ``{"direction", "harm_direction"}`` and the report."""
    depth = len(decoder_layers(model))
    pad = pad_id_of(tokenizer)
    n_pos = post_instruction_positions(tokenizer, template)
    if cfg.positions and cfg.positions > n_pos:
        raise ValueError(f"surgical.positions = {cfg.positions} but template {template!r} has {n_pos} "
                         "post-instruction positions (null searches all of them)")
    k = cfg.positions or n_pos
    parts = split_pools(pools, cfg)
    enc = {name: {s: encode_all(tokenizer, texts, template, cfg.max_length) for s, texts in sp.items()}
           for name, sp in parts.items()}
    report: dict[str, Any] = {"config": asdict(cfg), "depth": depth, "post_instruction_positions": n_pos,
                              "positions_searched": k, "pools": {}}
    for name in POOLS:
        for split in ("train", "val"):
            seqs = enc[name][split]
            scores = _refusal_scores(model, seqs, refusal_ids, pad, cfg.batch_size)
            keep = (scores * KEEP_SIGN[name] > 0) if cfg.filter else torch.ones_like(scores, dtype=torch.bool)
            enc[name][split] = [s for s, ok in zip(seqs, keep.tolist(), strict=True) if ok]
            report["pools"].setdefault(name, {})[split] = {
                "n": len(seqs), "kept": len(enc[name][split]), "mean_refusal_score": float(scores.mean())}
    short = {f"{n}/{s}": v["kept"] for n, sp in report["pools"].items() for s, v in sp.items()
             if v["kept"] < cfg.min_prompts}
    if short:
        raise SelectionError(
            f"Surgical: too few prompts left after filtering by refusal score (min_prompts {cfg.min_prompts}): "
            + ", ".join(f"{k_} kept {v} of {report['pools'][k_.split('/')[0]][k_.split('/')[1]]['n']}"
                        for k_, v in short.items()), report)

    means = {name: last_position_activations(model, enc[name]["train"], site="input", k=k, pad_id=pad,
                                             batch_size=cfg.batch_size).double().mean(0)
             for name in POOLS}  # (L, k, d)
    r_harm = means["harmful"] - means["harmless"]
    r_or = means["pseudo_harmful"] - means["harmless"]
    coef = (r_or * r_harm).sum(-1, keepdim=True) / (r_harm * r_harm).sum(-1, keepdim=True).clamp_min(1e-30)
    r_or_perp = r_or - cfg.ortho_lambda * coef * r_harm
    norms = r_or_perp.norm(dim=-1)  # (L, k)
    # e.g. block 0's input at a template token is that token's embedding, the same in every prompt
    degenerate = norms <= 1e-6 * norms.max().clamp_min(1e-30)
    r_or_perp = r_or_perp / norms.unsqueeze(-1).clamp_min(1e-30)

    base_harmless = last_logits(model, enc["harmless"]["val"], pad_id=pad, batch_size=cfg.batch_size)
    base_or = float(_refusal_scores(model, enc["pseudo_harmful"]["val"], refusal_ids, pad, cfg.batch_size).mean())
    max_layer = int(depth * (1 - cfg.prune_layer_fraction))
    candidates = []
    for layer in range(depth):
        for p in range(k):
            pos = p - k  # negative: counted from the prompt's end
            cand: dict[str, Any] = {"layer": layer, "position": pos}
            if layer >= max_layer:
                cand.update(discarded="pruned", why=f"block {layer} is in the last "
                            f"{cfg.prune_layer_fraction:g} of the depth")
                candidates.append(cand)
                continue
            if bool(degenerate[layer, p]):
                cand.update(discarded="degenerate", why="the pools' means do not differ here")
                candidates.append(cand)
                continue
            direction = r_or_perp[layer, p].float()
            with directional_ablation(model, direction, coeff=cfg.ablation_coeff):
                score = float(_refusal_scores(model, enc["pseudo_harmful"]["val"], refusal_ids, pad,
                                              cfg.batch_size).mean())
                kl = _kl(base_harmless, last_logits(model, enc["harmless"]["val"], pad_id=pad,
                                                     batch_size=cfg.batch_size))
            cand.update(refusal_score=score, kl=kl, cosine_with_harm=float(torch.nn.functional.cosine_similarity(
                r_or[layer, p], r_harm[layer, p], dim=0)))
            if not (math.isfinite(score) and math.isfinite(kl)):
                cand.update(discarded="not_finite", why="score or KL is not finite")
            elif kl > cfg.kl_threshold:
                cand.update(discarded="kl", why=f"KL {kl:.4g} > kl_threshold {cfg.kl_threshold:g}")
            candidates.append(cand)
    report.update(candidates=candidates, baseline_refusal_score=base_or)
    kept = [c for c in candidates if "discarded" not in c]
    if not kept:
        reasons: dict[str, int] = {}
        for c in candidates:
            reasons[c["discarded"]] = reasons.get(c["discarded"], 0) + 1
        report["selected"] = None
        raise SelectionError(f"Surgical: every one of the {len(candidates)} candidate directions was discarded ("
                             + ", ".join(f"{r}: {n}" for r, n in reasons.items()) + f"; kl_threshold "
                             f"{cfg.kl_threshold:g}, prune_layer_fraction {cfg.prune_layer_fraction:g})", report)
    best = min(kept, key=lambda c: (c["refusal_score"], c["layer"], c["position"]))
    report["selected"] = {"layer": best["layer"], "position": best["position"],
                          "refusal_score": best["refusal_score"], "kl": best["kl"]}
    p = best["position"] + k
    tensors = {"direction": r_or_perp[best["layer"], p].float().contiguous(),
               "harm_direction": (r_harm[best["layer"], p] / r_harm[best["layer"], p].norm()).float().contiguous()}
    return tensors, report
