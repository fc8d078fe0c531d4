"""The empirical neural tangent kernel between prompts on the first answer token's logits (DCR's analysis).

DCR (arXiv 2603.03323) explains over-refusal with the learning-dynamics decomposition of Ren & Sutherland
("Learning Dynamics of LLM Finetuning", ICLR 2025): one gradient step on prompt ``x_u`` moves the logits
of prompt ``x_o`` by ``-eta K(x_o, x_u) G(x_u)``, where

    K(x_o, x_u) = (d z(x_o) / d theta) (d z(x_u) / d theta)^T

is the empirical NTK and ``z(x)`` are the next-token logits at the last prompt position, i.e. those of
the first generated token. If refusing a toxic prompt has a large kernel with seemingly toxic ones,
safety training drags them along. DCR reports the normalised similarity

    K~(x', x) = ||K(x', x)||_F / ||K(x', x')||_F        (each row divided by its diagonal)

and its means over 3x3 blocks of prompt classes (seemingly toxic, toxic, general), within-class blocks
over off-diagonal entries only.

DCR's own script (``experiment/KT_similarity_jvp.py``; reconstructed in /work/shared/notes/research.md,
section E) restricts each block to the top-k tokens (k = 10) of each prompt's own logits: rows of block
``(o, u)`` are ``x_o``'s top-k tokens, columns ``x_u``'s. The Jacobian is taken over a parameter subset
(``pick_params``: all, LoRA only, or the last N blocks + head, N = 2), prompts are cut to 64 tokens,
and everything runs in fp32. Per column ``(x_u, t)``: a VJP gives ``g = d z_u[t] / d theta``, and a
forward finite difference ``(z_o(theta + eps g) - z_o(theta)) / eps`` with eps = 1e-3 gives
``J_o g``, a column of ``J_o J_u^T``, for all ``x_o`` in one perturbed forward.

Estimators of the n x n matrix ``||K(x_i, x_j)||_F`` (all use ``torch.func.functional_call`` with
detached parameter copies, so the model is never modified):

* ``exact``: Jacobians of the selected logits by vmapped VJPs (``jacrev``'s method), stacked into
  a ``(sum |T_i|) x P`` matrix and contracted. Memory grows as n |T| P. With
  ``top_k`` it is exact *on DCR's top-k blocks*, not for the full-vocabulary kernel.
  When the stacked Jacobian exceeds ``EXACT_AUTO_BYTES`` it is built in parts: an embedding matrix's
  Jacobian is zero outside the rows of the prompts' own tokens and the token sets (an input embedding
  is looked up only at the prompt's tokens, an output row enters only its own logit), so only those rows
  are kept (checked: a non-zero gradient outside them is an error); the kept columns are split into
  groups that fit the bound, and each group's VJPs are taken (with respect to that group alone) and
  contracted, the Gram matrices summed. A tied 49152 x 576 head (SmolLM2) then costs the rows of a few
  hundred tokens instead of 28M columns per Jacobian row.
* ``fd``: DCR's method, VJP + forward finite difference with DCR's raw step ``eps g`` (g unnormalised).
  Its error is truncation, O(eps ||g||^2 curvature), not rounding: on random Llamas (bench/bench_entk.py)
  eps = 1e-3 gives 0.6% (hidden 32) and 2% (hidden 256) against ``jvp``, largest on the diagonal, the
  normaliser of K~; eps = 1e-4 gives ~1e-3. Kept as DCR wrote it, to reproduce their numbers.
  ``fd_scheme="central"`` takes ``(z_o(theta + eps g) - z_o(theta - eps g)) / (2 eps)`` instead: one more
  forward per column, truncation O(eps^2). On the bench's random Llamas (fp32, bench/bench_entk.py sweeps
  the step) it is within 1.2e-4 of ``jvp`` at eps = 1e-4, where forward differences are at 6e-4 to 1e-3;
  below 1e-4 rounding takes over for both.
* ``jvp``: the same columns with forward-mode ``torch.func.jvp`` instead of differences (no step error).
* ``hutchinson``: ``||K||_F^2 = E_v ||K v||^2`` for Rademacher ``v`` over ``x_u``'s token set (Hutchinson
  1990; as for the Frobenius norm of an implicit matrix in Meyer et al., "Hutch++", 2021). ``K v =
  J_o (J_u^T v)`` is one VJP of ``z_u . v`` and one forward-mode JVP over all ``x_o``, so the cost is
  ``probes`` columns per prompt instead of |T| (|T| = V on the full vocabulary). It uses
  ``torch.func.jvp`` rather than finite differences so that its only error is the Monte Carlo one.
  The squared-norm estimate is unbiased; its variance is ``2(||K^T K||_F^2 - sum_i (K^T K)_ii^2) /
  probes``, zero for a diagonal K and largest for a rank-one K (relative s.e. of ||K||_F about
  ``1/sqrt(2 probes)`` = 12.5% at 32 probes). The report carries the per-entry relative s.e.
* ``auto``: ``exact`` when its Jacobian (prompts x token-set size x selected parameters) fits in
  ``EXACT_AUTO_BYTES``, or needs at most n groups past it; else ``jvp``. Both give the same kernel up to
  rounding (1e-6 relative at the toy model's size). In one piece the contraction is 4x (12 prompts) to 7x
  (24) faster than the column loop: n Jacobian passes instead of n x k JVP columns (bench/bench_entk.py,
  (d)); in g <= n groups it makes g x n single-prompt VJP passes, against the column loop's n x k JVP
  passes over all n prompts. The report records which one ran.

Columns are processed in vmapped chunks (several tangents through one batched forward), rows in left-
padded batches of ``batch_size`` prompts with positions counted over real tokens, as generation does.
Forward-mode AD has no rule for SDPA's flash and memory-efficient kernels (pytorch#117629, #128971), so
all kernel computations run under the math SDPA backend; eager attention works as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, jvp, vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..interventions.activations import decoder_layers, left_pad, pad_id_of
from ..prompting import Template, encode_prompt

PARAM_MODES: tuple[str, ...] = ("last_n+head", "lora", "all")
ESTIMATORS: tuple[str, ...] = ("auto", "exact", "fd", "jvp", "hutchinson")
FD_SCHEMES: tuple[str, ...] = ("forward", "central")
# Tangent memory (floats) per vmapped chunk of columns: a chunk holds one copy of the selected
# parameters per column, so big subsets (lm_head of a 150k vocabulary) get small chunks.
_CHUNK_FLOATS = 2**27
_MAX_CHUNK = 32
# "auto" contracts the exact Jacobian up to this size: a laptop's spare memory, and well past the toy model's
# (24 prompts x top-5 x 0.4M parameters = 192 MB in fp32).
EXACT_AUTO_BYTES = 256 * 2**20


@dataclass(frozen=True)
class EntkConfig:
    """How to compute the kernel. Defaults are DCR's script (lastN+head, N = 2, top-10, FD, eps 1e-3, 64 tokens)."""

    params: str = "last_n+head"
    last_n: int = 2
    top_k: int | None = 10  # None: the full vocabulary
    estimator: str = "fd"
    eps: float = 1e-3  # finite-difference step (estimator "fd")
    fd_scheme: str = "forward"  # estimator "fd": forward (DCR's) | central
    probes: int = 32  # Rademacher probes (estimator "hutchinson")
    max_length: int = 64  # prompts keep their last max_length tokens
    batch_size: int = 16  # prompts per forward on the row side
    seed: int = 0  # Hutchinson probes

    def __post_init__(self) -> None:
        if self.params not in PARAM_MODES:
            raise ValueError(f"EntkConfig.params must be one of {PARAM_MODES}, got {self.params!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"EntkConfig.estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        for name in ("last_n", "probes", "max_length", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EntkConfig.{name} must be an integer >= 1, got {value!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"EntkConfig.top_k must be None (full vocabulary) or an integer >= 1, got {self.top_k!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not (
                math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"EntkConfig.eps must be a finite number > 0, got {self.eps!r}")
        if self.fd_scheme not in FD_SCHEMES:
            raise ValueError(f"EntkConfig.fd_scheme must be one of {FD_SCHEMES}, got {self.fd_scheme!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"EntkConfig.seed must be an integer, got {self.seed!r}")


# ---------------------------------------------------------------------------------------------
# Parameter subsets
# ---------------------------------------------------------------------------------------------


def _unwrapped(model: Any) -> Any:
    # A PEFT wrapper keeps the decoder under base_model.model; its parameters are the same objects.
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def select_params(model: Any, mode: str, last_n: int = 2) -> dict[str, Tensor]:
    """The named parameters the kernel differentiates, in ``model.named_parameters()`` order.

    ``last_n+head``: the last ``last_n`` decoder blocks, the final norm and the output embedding
    (a tied output embedding is the input embedding's weight and appears once, under its first name);
    ``lora``: parameters whose name contains ``lora_``; ``all``: every parameter. Parameters are
    chosen by structure, whether or not they require grad (a PEFT base is frozen but still has a kernel).
    """
    named = list(model.named_parameters())  # de-duplicated: tied weights appear once
    if mode == "all":
        chosen = dict(named)
    elif mode == "lora":
        chosen = {n: p for n, p in named if "lora_" in n}
    elif mode == "last_n+head":
        base = _unwrapped(model)
        blocks = decoder_layers(base)
        if isinstance(last_n, bool) or not isinstance(last_n, int) or not 1 <= last_n <= len(blocks):
            raise ValueError(f"last_n must be between 1 and the model's {len(blocks)} decoder blocks, got {last_n!r}")
        modules = [*blocks[len(blocks) - last_n:], getattr(getattr(base, "model", None), "norm", None),
                   base.get_output_embeddings()]
        ids = {id(p) for m in modules if m is not None for p in m.parameters()}
        chosen = {n: p for n, p in named if id(p) in ids}
    else:
        raise ValueError(f"unknown parameter mode {mode!r}; allowed: {PARAM_MODES}")
    if not chosen:
        raise ValueError(f"parameter mode {mode!r} selects no parameters of {type(model).__name__}"
                         + (" (no parameter name contains 'lora_': is the model LoRA-wrapped?)" if mode == "lora"
                            else ""))
    return chosen


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------


class _Problem:
    """Prompts, selected parameters and token sets, with the logits as a function of the parameters."""

    def __init__(self, model: Any, seqs: Sequence[Sequence[int]], cfg: EntkConfig, pad_id: int) -> None:
        if not seqs or any(len(s) == 0 for s in seqs):
            raise ValueError("need at least one prompt, each with at least one token")
        self.model, self.cfg, self.pad_id = model, cfg, pad_id
        self.seqs = [list(s)[-cfg.max_length:] for s in seqs]
        self.params = {n: p.detach() for n, p in select_params(model, cfg.params, cfg.last_n).items()}
        self.n_params = sum(p.numel() for p in self.params.values())
        self.device = next(iter(self.params.values())).device
        self.chunk = max(1, min(_MAX_CHUNK, _CHUNK_FLOATS // self.n_params))
        # Token sets from each prompt's own logits, computed alone as on the VJP side.
        first = [self.logits(self.params, [s]) for s in self.seqs]
        self.vocab = first[0].shape[-1]
        if cfg.top_k is not None and cfg.top_k > self.vocab:
            raise ValueError(f"top_k={cfg.top_k} exceeds the vocabulary size {self.vocab}")
        # (n, k) token ids, or None for the full vocabulary.
        self.tokens: Tensor | None = (None if cfg.top_k is None else
                                      torch.cat([z.topk(cfg.top_k, dim=-1).indices for z in first]))

    def logits(self, params: Mapping[str, Tensor], seqs: Sequence[Sequence[int]]) -> Tensor:
        """(B, V) last-position logits of left-padded ``seqs`` under ``params`` (the rest of the model as is)."""
        ids, mask, pos = left_pad(seqs, self.pad_id, self.device)
        out = functional_call(self.model, dict(params), (), {
            "input_ids": ids, "attention_mask": mask, "position_ids": pos, "use_cache": False, "logits_to_keep": 1})
        return out.logits[:, -1, :]

    def rows_per_prompt(self) -> int:
        return self.vocab if self.tokens is None else self.tokens.shape[1]

    def exact_bytes(self) -> int:
        """Memory of the exact estimator's stacked Jacobian."""
        return self.row_bytes() * self.n_params

    def row_bytes(self) -> int:
        """Bytes of one Jacobian column (all rows) per selected parameter entry."""
        return len(self.seqs) * self.rows_per_prompt() * next(iter(self.params.values())).element_size()

    def embedding_rows(self) -> Tensor | None:
        """The rows an embedding matrix's Jacobian can be non-zero in: every prompt token and every token
        set's token (None on the full vocabulary, where nothing is left out)."""
        if self.tokens is None:
            return None
        ids = {t for s in self.seqs for t in s} | set(self.tokens.flatten().tolist())
        return torch.tensor(sorted(ids), dtype=torch.long, device=self.device)

    def compressed_rows(self) -> dict[str, Tensor]:
        """``{name: rows}`` for the selected embedding matrices (input or output), kept at :meth:`embedding_rows`."""
        kept = self.embedding_rows()
        if kept is None:
            return {}
        base = _unwrapped(self.model)
        ids = {id(m.weight) for m in base.modules() if isinstance(m, torch.nn.Embedding)}
        out_emb = base.get_output_embeddings()
        if out_emb is not None:
            ids.add(id(out_emb.weight))
        named = dict(self.model.named_parameters())
        return {name: kept for name in self.params if id(named[name]) in ids and kept.numel() < named[name].shape[0]}

    def pieces(self, budget: int) -> list[list[tuple[str, Tensor | None]]]:
        """The selected parameters as groups of ``(name, rows)`` whose stacked Jacobian fits ``budget`` bytes.

        ``rows`` None is the whole parameter; an embedding matrix keeps :meth:`embedding_rows`; a parameter
        wider than the budget is cut by rows (its first dimension), one row per group at the least.
        """
        compressed = self.compressed_rows()
        per_entry = self.row_bytes()
        groups: list[list[tuple[str, Tensor | None]]] = []
        group: list[tuple[str, Tensor | None]] = []
        used = 0
        for name, p in self.params.items():
            rows = compressed.get(name)
            n_rows = p.shape[0] if p.dim() else 1
            row_width = p[0].numel() if p.dim() else 1
            todo = torch.arange(n_rows, device=self.device) if rows is None else rows
            whole = rows is None
            while todo.numel():
                room = max(0, budget - used) // (per_entry * row_width)
                if room == 0 and group:
                    groups.append(group)
                    group, used = [], 0
                    continue
                take = todo[:max(1, room)]
                piece = None if whole and take.numel() == todo.numel() == n_rows else take
                group.append((name, piece))
                used += take.numel() * row_width * per_entry
                todo = todo[take.numel():]
                whole = False
        if group:
            groups.append(group)
        return groups

    def group_pullback(self, u: int, names: Sequence[str]) -> Callable[[Tensor], dict[str, Tensor]]:
        """:meth:`pullback` with respect to ``names`` only (the other parameters held as constants)."""
        const = {k: v for k, v in self.params.items() if k not in names}
        _, fn = vjp(lambda p: self.logits({**const, **p}, [self.seqs[u]])[0], {k: self.params[k] for k in names})
        return vmap(lambda c: fn(c)[0])

    def token_set(self, i: int) -> Tensor:
        return torch.arange(self.vocab, device=self.device) if self.tokens is None else self.tokens[i]

    def row_batches(self) -> Iterator[slice]:
        n = len(self.seqs)
        for start in range(0, n, self.cfg.batch_size):
            yield slice(start, min(n, start + self.cfg.batch_size))

    def pullback(self, u: int) -> Callable[[Tensor], dict[str, Tensor]]:
        """``cot (c, V) -> {name: (c, *shape)}``: the VJPs ``J_u^T cot_r`` of prompt u's logits, vmapped."""
        _, fn = vjp(lambda p: self.logits(p, [self.seqs[u]])[0], self.params)
        return vmap(lambda c: fn(c)[0])

    def squared_rows(self, tangents: dict[str, Tensor], how: str,
                     base: list[Tensor] | None = None) -> Tensor:
        """(c, n) float64: ``||(J_o t_r)[T_o]||^2`` for each tangent r (leading dim of ``tangents``) and prompt o.

        ``how`` is "fd" (finite differences: forward from the cached ``base`` logits, or central) or "jvp"
        (forward mode).
        """
        out = []
        eps = self.cfg.eps
        for b, sl in enumerate(self.row_batches()):
            seqs = self.seqs[sl]
            if how == "fd" and self.cfg.fd_scheme == "central":
                d = vmap(lambda t, seqs=seqs: (
                    self.logits({k: p + eps * t[k] for k, p in self.params.items()}, seqs)
                    - self.logits({k: p - eps * t[k] for k, p in self.params.items()}, seqs)) / (2 * eps))(tangents)
            elif how == "fd":
                assert base is not None
                d = vmap(lambda t, seqs=seqs, b=b: (self.logits(
                    {k: p + eps * t[k] for k, p in self.params.items()}, seqs) - base[b]) / eps)(tangents)
            else:
                d = vmap(lambda t, seqs=seqs: jvp(lambda p: self.logits(p, seqs), (self.params,), (t,))[1])(tangents)
            d = d.double()
            if self.tokens is not None:
                idx = self.tokens[sl].unsqueeze(0).expand(d.shape[0], -1, -1)
                d = d.gather(2, idx)
            out.append(d.pow(2).sum(-1))
        return torch.cat(out, dim=1)


def _chunks(x: Tensor, size: int) -> Iterator[Tensor]:
    for start in range(0, x.shape[0], size):
        yield x[start:start + size]


def _one_hot(tokens: Tensor, vocab: int) -> Tensor:
    cot = torch.zeros(tokens.numel(), vocab, device=tokens.device)
    cot[torch.arange(tokens.numel(), device=tokens.device), tokens] = 1.0
    return cot


def _columns(pb: _Problem, how: str) -> np.ndarray:
    """DCR's column loop: per (x_u, t), ``g = J_u^T e_t`` then ``J_o g`` for all o at once."""
    n = len(pb.seqs)
    base = None
    if how == "fd" and pb.cfg.fd_scheme == "forward":
        base = [pb.logits(pb.params, pb.seqs[sl]) for sl in pb.row_batches()]
    sq = torch.zeros(n, n, dtype=torch.float64)
    for u in range(n):
        pull = pb.pullback(u)
        for toks in _chunks(pb.token_set(u), pb.chunk):
            cot = _one_hot(toks, pb.vocab).to(next(iter(pb.params.values())).dtype)
            sq[:, u] += pb.squared_rows(pull(cot), how, base).sum(0).cpu()
    return sq.sqrt().numpy()


def _hutchinson(pb: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """``||K(x_o, x_u)||_F`` from ``probes`` Rademacher vectors per u, and the delta-method relative s.e."""
    n, s = len(pb.seqs), pb.cfg.probes
    gen = torch.Generator().manual_seed(pb.cfg.seed)
    dtype = next(iter(pb.params.values())).dtype
    samples = torch.zeros(s, n, n, dtype=torch.float64)  # [probe, o, u] = ||K(o, u) v||^2
    for u in range(n):
        toks = pb.token_set(u)
        # Drawn on CPU in a fixed order so the estimate does not depend on the device.
        v = (torch.randint(0, 2, (s, toks.numel()), generator=gen) * 2 - 1).to(pb.device, dtype)
        cot = torch.zeros(s, pb.vocab, device=pb.device, dtype=dtype)
        cot[:, toks] = v
        pull = pb.pullback(u)
        done = 0
        for c in _chunks(cot, pb.chunk):
            samples[done:done + c.shape[0], :, u] = pb.squared_rows(pull(c), "jvp").cpu()
            done += c.shape[0]
    mean = samples.mean(0)
    # se(sqrt(m)) / sqrt(m) = se(m) / (2 m) by the delta method.
    se = samples.std(0, correction=1) / math.sqrt(s) if s > 1 else torch.full_like(mean, math.nan)
    rel = torch.where(mean > 0, se / (2 * mean), torch.zeros_like(mean))
    return mean.sqrt().numpy(), rel.numpy()


def _exact(pb: _Problem) -> np.ndarray:
    """Jacobians of every token set stacked as rows, then the Gram matrix and its block norms."""
    if pb.exact_bytes() > EXACT_AUTO_BYTES:
        return _exact_grouped(pb, pb.pieces(EXACT_AUTO_BYTES))
    dtype = next(iter(pb.params.values())).dtype
    n = len(pb.seqs)
    k = pb.rows_per_prompt()
    jac = torch.empty(n * k, pb.n_params, dtype=dtype, device=pb.device)  # filled in place: no second copy
    row = 0
    for u in range(n):
        pull = pb.pullback(u)
        for toks in _chunks(pb.token_set(u), pb.chunk):
            g = pull(_one_hot(toks, pb.vocab).to(dtype))
            col = 0
            for t in g.values():
                width = t[0].numel()
                jac[row:row + t.shape[0], col:col + width] = t.reshape(t.shape[0], -1)
                col += width
            row += toks.numel()
    gram = (jac @ jac.T).double()
    return gram.reshape(n, k, n, k).pow(2).sum(dim=(1, 3)).sqrt().cpu().numpy()


def _exact_grouped(pb: _Problem, groups: list[list[tuple[str, Tensor | None]]]) -> np.ndarray:
    """:func:`_exact` by parts: per group of (parameter, rows), its VJPs, its Jacobian and its Gram matrix."""
    dtype = next(iter(pb.params.values())).dtype
    n, k = len(pb.seqs), pb.rows_per_prompt()
    compressed = pb.compressed_rows()
    gram = torch.zeros(n * k, n * k, dtype=torch.float64, device=pb.device)
    for group in groups:
        names = list(dict.fromkeys(name for name, _ in group))
        width = sum((pb.params[name][0].numel() if pb.params[name].dim() else 1)
                    * (pb.params[name].shape[0] if rows is None else rows.numel()) for name, rows in group)
        jac = torch.empty(n * k, width, dtype=dtype, device=pb.device)
        row = 0
        for u in range(n):
            pull = pb.group_pullback(u, names)
            for toks in _chunks(pb.token_set(u), pb.chunk):
                g = pull(_one_hot(toks, pb.vocab).to(dtype))
                for name in names:
                    if name in compressed:
                        _check_rows(name, g[name], compressed[name])
                col = 0
                for name, rows in group:
                    t = g[name] if rows is None else g[name].index_select(1, rows)
                    t = t.reshape(t.shape[0], -1)
                    jac[row:row + t.shape[0], col:col + t.shape[1]] = t
                    col += t.shape[1]
                row += toks.numel()
        gram += (jac @ jac.T).double()
        del jac
    return gram.reshape(n, k, n, k).pow(2).sum(dim=(1, 3)).sqrt().cpu().numpy()


def _check_rows(name: str, grad: Tensor, rows: Tensor) -> None:
    """An embedding matrix's gradient must vanish outside the rows kept for it (else the kernel would be wrong)."""
    outside = grad.ne(0).flatten(2).any(dim=2).any(dim=0)
    outside[rows] = False
    if bool(outside.any()):
        bad = outside.nonzero().flatten()[:5].tolist()
        raise RuntimeError(f"the Jacobian of {name} is non-zero in rows {bad} outside the prompts' tokens and "
                           "token sets; this model's embedding is not row-sparse: use estimator 'jvp'")


@dataclass(frozen=True)
class KernelEstimate:
    """``fro[i, j] = ||K(x_i, x_j)||_F``; ``rel_se``: Hutchinson's per-entry relative standard error
    (delta method on the probe sample), None for the other estimators."""

    fro: np.ndarray
    rel_se: np.ndarray | None
    param_names: list[str]
    n_params: int
    estimator: str  # the one that ran ("auto" resolved)


def kernel_estimate(model: Any, seqs: Sequence[Sequence[int]], cfg: EntkConfig, *, pad_id: int = 0) -> KernelEstimate:
    """:func:`kernel_fro` with Hutchinson's standard errors and the parameter subset it used."""
    dtype = next(iter(model.parameters())).dtype
    if cfg.estimator == "fd" and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"finite differences need fp32 or fp64 weights (eps={cfg.eps} is below {dtype}'s "
                         "resolution); load the model in float32 or use estimator 'jvp'")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    rel: np.ndarray | None = None
    try:
        # Outer no_grad stops ordinary autograd graphs on the model's own parameters; torch.func's
        # transforms ignore it. The math SDPA backend is the one with forward-mode and vmap rules.
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            pb = _Problem(model, seqs, cfg, pad_id)
            estimator = cfg.estimator
            if estimator == "auto":
                fits = pb.exact_bytes() <= EXACT_AUTO_BYTES or len(pb.pieces(EXACT_AUTO_BYTES)) <= len(pb.seqs)
                estimator = "exact" if fits else "jvp"
            if estimator == "exact":
                k = _exact(pb)
            elif estimator == "hutchinson":
                k, rel = _hutchinson(pb)
            else:
                k = _columns(pb, estimator)
    finally:
        for m, training in modes.items():
            m.training = training
    return KernelEstimate(k, rel, list(pb.params), pb.n_params, estimator)


def kernel_fro(model: Any, seqs: Sequence[Sequence[int]], cfg: EntkConfig, *, pad_id: int = 0) -> np.ndarray:
    """The n x n float64 matrix ``||K(x_i, x_j)||_F`` (row i: x_o = seqs[i]; column j: x_u = seqs[j]).

    ``seqs`` are token-id lists (cut to their last ``cfg.max_length`` tokens). The model's parameters
    are not touched and its modules' train/eval modes are restored; it runs in eval mode (no dropout).
    """
    return kernel_estimate(model, seqs, cfg, pad_id=pad_id).fro


# ---------------------------------------------------------------------------------------------
# Normalisation and class blocks
# ---------------------------------------------------------------------------------------------


def normalise(k: np.ndarray) -> np.ndarray:
    """DCR's ``K~(x', x) = ||K(x', x)||_F / ||K(x', x')||_F``: row i divided by ``k[i, i]``."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"need a square matrix, got shape {k.shape}")
    diag = np.diag(k)
    if np.any(diag == 0) or not np.all(np.isfinite(diag)):
        bad = [int(i) for i in np.flatnonzero((diag == 0) | ~np.isfinite(diag))]
        raise ValueError(f"cannot normalise: zero or non-finite diagonal at rows {bad}")
    return k / diag[:, None]


def block_means(kn: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{row class: {column class: mean}}``; a within-class block averages its off-diagonal entries only
    (the diagonal of a normalised kernel is 1 by construction)."""
    kn = np.asarray(kn, dtype=np.float64)
    labels = list(labels)
    if kn.shape != (len(labels), len(labels)):
        raise ValueError(f"kernel shape {kn.shape} does not match {len(labels)} labels")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    idx = {c: np.flatnonzero(np.asarray(labels) == c) for c in classes}
    small = {c: len(i) for c, i in idx.items() if len(i) < 2}
    if small:
        raise ValueError(f"each class needs at least 2 prompts for within-class means; got {small}")
    out: dict[str, dict[str, float]] = {}
    for a in classes:
        out[a] = {}
        for b in classes:
            block = kn[np.ix_(idx[a], idx[b])]
            if a == b:
                block = block[~np.eye(len(idx[a]), dtype=bool)]
            out[a][b] = float(block.mean())
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def entk_report(model: Any, tokenizer: Any, template: Template, sets: Mapping[str, Sequence[str]],
                cfg: EntkConfig) -> dict[str, Any]:
    """DCR's kernel analysis on prompt classes (e.g. seemingly_toxic / toxic / general), as a JSON-able dict.

    Prompts are encoded as generation does and keep their last ``cfg.max_length`` tokens, so the
    answer position survives truncation.
    """
    classes = list(sets)
    sizes = {c: len(sets[c]) for c in classes}
    small = {c: n for c, n in sizes.items() if n < 2}
    if not classes or small:
        raise ValueError(f"each class needs at least 2 prompts; got {sizes}")
    labels = [c for c in classes for _ in sets[c]]
    seqs = [encode_prompt(tokenizer, text, template)[-cfg.max_length:] for c in classes for text in sets[c]]
    t0 = time.perf_counter()
    est = kernel_estimate(model, seqs, cfg, pad_id=pad_id_of(tokenizer))
    seconds = time.perf_counter() - t0
    kn = normalise(est.fro)
    return {
        "config": {**asdict(cfg), "estimator": est.estimator, "estimator_requested": cfg.estimator},
        "classes": classes,
        "n": sizes,
        "labels": labels,
        "kernel_fro": est.fro.tolist(),
        "normalised": kn.tolist(),
        "block_means": block_means(kn, labels, classes),
        "hutchinson_rel_se": None if est.rel_se is None else est.rel_se.tolist(),
        "n_params": int(est.n_params),
        "param_names": {"first": est.param_names[:8], "count": len(est.param_names)},
        "seconds": seconds,
    }
