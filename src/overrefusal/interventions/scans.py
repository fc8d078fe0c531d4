"""SCANS: safety-conscious activation steering (Cao et al., AAAI 2025, arXiv 2408.11491).

Fitted once per checkpoint from two anchor sets, then applied at inference through hooks:

1. **Refusal steering vectors.** For every block ℓ, the block's output at the last prompt token,
   averaged over harmful anchors minus the average over harmless ones, normalised:
   ``v_ℓ = normalise(mean_harm − mean_harmless)``.
2. **Unsafe reference transition vector.** Each harmful anchor's prompt is followed by an
   affirmative first answer token ("Sure"); ``t_ℓ = mean (h_ℓ[s1] − h_ℓ[aff])`` where ``s1`` is the
   last prompt token (not normalised, as in the original).
3. **Classification** of a query: the same transition ``h_ℓ[s1] − h_ℓ[aff]`` for the query, its
   cosine with ``t_ℓ`` averaged over the classification layers; ``≥ threshold`` means unsafe. The
   paper sets the threshold per model (0.75, 0.70, 0.65); for a model it gives none, ``threshold:
   null`` derives it by a fixed rule from the anchors alone: midway between the harmful and the
   harmless anchors' mean cosines.
4. **Steering**: on the steering layers, ``+α v_ℓ`` (unsafe) or ``−α v_ℓ`` (safe) is added to the
   block output at every position from the end of the instruction on: the post-instruction
   template tokens and every generated token.

Departures from the public code (zouyingcao/SCANS@9dc20d2), each for portability or
reproducibility: the chat template comes from ``apply_chat_template`` and positions from the
tokenised prompt (the original hard-codes Llama-2's ``[INST]``); anchors are drawn with a seed
(the original's ``random`` is unseeded); the layer ranges scale with depth (the original's 10–19
steering and 10–31 classification layers are for 32-block models); the block output is read with
a forward hook, so the last block's output is the residual stream before the final norm (HF's
``hidden_states[-1]``, which the original reads, is after it).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from ..prompting import Template
# ScansConfig and the layer-range defaults live with the other stage settings (config validation reads them)
from ..stage_settings import PAPER_DEPTH, ScansConfig, default_classify_layers, default_steer_layers  # noqa: F401
from .activations import (
    decoder_layers,
    encode_all,
    hidden_of,
    instruction_suffix,
    last_position_activations,
    pad_id_of,
    with_hidden,
)


def check_layers(cfg: ScansConfig, depth: int) -> None:
    for name, (a, b) in zip(("steer_layers", "classify_layers"), cfg.layer_ranges(depth), strict=True):
        if not 0 <= a < b <= depth:
            raise ValueError(f"scans.{name} [{a}, {b}) is outside the model's {depth} blocks")


def sample_anchors(pool: Sequence[str], n: int, seed: int, name: str) -> list[str]:
    """``n`` prompts of ``pool`` drawn with ``seed``; too small a pool is an error with the counts."""
    if len(pool) < n:
        raise ValueError(f"SCANS needs {n} {name} anchors but the pool holds {len(pool)} prompts")
    return random.Random(f"{seed}:{name}").sample(list(pool), n)


def affirmative_id(tokenizer: Any, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"scans.affirmative {word!r} tokenises to nothing")
    return int(ids[0])


@dataclass
class ScansVectors:
    steer: Tensor  # (L, d) unit refusal steering vectors, one per block
    transition: Tensor  # (L, d) unsafe reference transition vectors
    settings: dict[str, Any]  # alpha, threshold, layer ranges, affirmative id, suffix ids

    def tensors(self) -> dict[str, Tensor]:
        return {"steer": self.steer.contiguous(), "transition": self.transition.contiguous()}


def _transitions(model: Any, seqs: Sequence[Sequence[int]], aff: int, layers: Sequence[int], pad_id: int,
                 batch_size: int) -> Tensor:
    """(N, len(layers), d): h[s1] − h[aff] at each block's output."""
    acts = last_position_activations(model, [[*s, aff] for s in seqs], site="output", k=2, pad_id=pad_id,
                                     batch_size=batch_size, layers=layers)
    return acts[:, :, 0, :] - acts[:, :, 1, :]


def classify_scores(transitions: Tensor, reference: Tensor) -> Tensor:
    """(N,) cosine of each query's transitions with the reference's, averaged over the layers."""
    return torch.nn.functional.cosine_similarity(transitions, reference.unsqueeze(0), dim=-1).mean(dim=-1)


@torch.no_grad()
def fit_scans(model: Any, tokenizer: Any, harmful: Sequence[str], harmless: Sequence[str], cfg: ScansConfig, *,
              template: Template, probes: dict[str, Sequence[str]] | None = None) -> tuple[ScansVectors, dict]:
    """Fit the steering and transition vectors; return them and a JSON-able report.

    ``probes`` (name -> prompts) are classified with the fitted vectors for the report: the anchors
    themselves and, e.g., seemingly toxic prompts, whose unsafe share is what SCANS gets wrong.
    """
    depth = len(decoder_layers(model))
    check_layers(cfg, depth)
    steer_rng, cls_rng = cfg.layer_ranges(depth)
    pad = pad_id_of(tokenizer)
    harm = encode_all(tokenizer, sample_anchors(harmful, cfg.n_anchors, cfg.seed, "harmful"), template,
                      cfg.max_length)
    safe = encode_all(tokenizer, sample_anchors(harmless, cfg.n_anchors, cfg.seed, "harmless"), template,
                      cfg.max_length)
    acts = {name: last_position_activations(model, s, site="output", k=1, pad_id=pad, batch_size=cfg.batch_size)
            [:, :, 0, :].double() for name, s in (("harmful", harm), ("harmless", safe))}
    diff = acts["harmful"].mean(0) - acts["harmless"].mean(0)
    steer = (diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()
    aff = affirmative_id(tokenizer, cfg.affirmative)
    transition = _transitions(model, harm, aff, range(depth), pad, cfg.batch_size).double().mean(0).float()
    settings = {
        "alpha": cfg.alpha, "threshold_rule": "config" if cfg.threshold is not None else "anchor_midpoint",
        "steer_layers": list(steer_rng),
        "classify_layers": list(cls_rng), "affirmative": cfg.affirmative, "affirmative_id": aff,
        "suffix_ids": instruction_suffix(tokenizer, template), "depth": depth,
    }
    cls = list(range(*cls_rng))
    scores = {}
    for name, texts in {"harmful_anchors": None, "harmless_anchors": None, **(probes or {})}.items():
        seqs = harm if name == "harmful_anchors" else safe if name == "harmless_anchors" else encode_all(
            tokenizer, texts, template, cfg.max_length)
        scores[name] = classify_scores(_transitions(model, seqs, aff, cls, pad, cfg.batch_size), transition[cls])
    threshold = cfg.threshold if cfg.threshold is not None else float(
        (scores["harmful_anchors"].mean() + scores["harmless_anchors"].mean()) / 2)
    settings["threshold"] = threshold
    report: dict[str, Any] = {"settings": settings, "config": asdict(cfg), "classified_unsafe": {
        name: {"n": len(v), "share_unsafe": float((v >= threshold).float().mean()), "mean_cosine": float(v.mean())}
        for name, v in scores.items()}}
    return ScansVectors(steer=steer, transition=transition, settings=settings), report


def _find_last(row: list[int], pattern: list[int]) -> int | None:
    for start in range(len(row) - len(pattern), -1, -1):
        if row[start:start + len(pattern)] == pattern:
            return start
    return None


class ScansSteering:
    """SCANS at inference: classify each new sequence, then steer its post-instruction positions.

    A forward pre-hook on the model sees every call. A call that starts a sequence (no cache, or an
    empty one: generation's prefill, or an lm-eval scoring pass) is classified first, with steering
    off, on its prompt up to the end of the post-instruction tokens followed by the affirmative
    token; the sign and the steered positions are kept for the decoding steps that follow, which
    steer their one new position.
    """

    def __init__(self, model: Any, vectors: ScansVectors) -> None:
        self.model = model
        s = vectors.settings
        self.alpha = float(s["alpha"])
        self.threshold = float(s["threshold"])
        self.steer_layers = list(range(*s["steer_layers"]))
        self.cls_layers = list(range(*s["classify_layers"]))
        self.aff = int(s["affirmative_id"])
        self.suffix = [int(i) for i in s["suffix_ids"]]
        depth = len(decoder_layers(model))
        if int(s["depth"]) != depth:
            raise ValueError(f"SCANS vectors were fitted on {s['depth']} blocks, the model has {depth}")
        device = next(model.parameters()).device
        self.steer = vectors.steer.to(device)
        self.reference = vectors.transition[self.cls_layers].to(device)
        self._busy = False
        self._signs: Tensor | None = None
        self._positions: Tensor | None = None
        self.last_scores: Tensor | None = None  # the latest classification's cosines (for tests and logs)

    def _starts(self, ids: Tensor, mask: Tensor | None) -> tuple[list[int], list[int]]:
        """Per row: where the post-instruction tokens start, and where the prompt ends."""
        starts, ends = [], []
        for r in range(ids.shape[0]):
            real = ids[r].tolist() if mask is None else [t for t, m in zip(ids[r].tolist(), mask[r].tolist(),
                                                                           strict=True) if m]
            offset = ids.shape[1] - len(real) if mask is not None and bool(mask[r, -1]) else 0
            found = _find_last(real, self.suffix) if self.suffix else None
            end = len(real) if found is None else found + len(self.suffix)
            start = end - 1 if found is None else found
            starts.append(offset + start)
            ends.append(offset + end)
        return starts, ends

    def _classify(self, ids: Tensor, mask: Tensor | None, ends: list[int]) -> Tensor:
        seqs = []
        for r, end in enumerate(ends):
            row = ids[r, :end].tolist()
            if mask is not None:
                row = [t for t, m in zip(row, mask[r, :end].tolist(), strict=True) if m]
            seqs.append(row)
        # pad_id 0: padded positions are masked out, so the id is never read
        trans = _transitions(self.model, seqs, self.aff, self.cls_layers, 0, batch_size=len(seqs))
        scores = classify_scores(trans.to(self.reference.device), self.reference)
        self.last_scores = scores.detach().cpu()
        return torch.where(scores >= self.threshold, 1.0, -1.0)

    def _before(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self._busy:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise ValueError("SCANS steering needs input_ids (the prompt's tokens decide the steered positions)")
        cache = kwargs.get("past_key_values")
        if cache is not None and cache.get_seq_length() > 0:
            self._positions = None  # a decoding step: its one new position is steered
            return
        mask = kwargs.get("attention_mask")
        starts, ends = self._starts(ids, mask)
        self._busy = True
        try:
            signs = self._classify(ids, mask, ends)
        finally:
            self._busy = False
        self._signs = signs.to(ids.device)
        cols = torch.arange(ids.shape[1], device=ids.device)
        self._positions = cols.unsqueeze(0) >= torch.tensor(starts, device=ids.device).unsqueeze(1)

    def _steer(self, layer: int) -> Any:
        def hook(m: Any, args: tuple, output: Any) -> Any:
            if self._busy or self._signs is None:
                return None
            h = hidden_of(output)
            add = (self._signs.to(h.dtype)[:, None, None] * self.alpha) * self.steer[layer].to(h.dtype)
            if self._positions is not None and self._positions.shape[1] == h.shape[1]:
                add = add * self._positions.to(h.dtype).unsqueeze(-1)
            return with_hidden(output, h + add)
        return hook

    @contextlib.contextmanager
    def attached(self) -> Iterator[ScansSteering]:
        blocks = decoder_layers(self.model)
        handles = [self.model.register_forward_pre_hook(self._before, with_kwargs=True)]
        handles += [blocks[i].register_forward_hook(self._steer(i)) for i in self.steer_layers]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            self._signs = self._positions = None
