"""Token attribution of the refusal log-odds (TBR's attribution analysis).

TBR (Think-Before-Refusal, arXiv 2503.17882) argues that safety-reflection fine-tuning lowers the
contribution of sensitive *trigger* tokens ("kill", "murder", ...) to a refusal, compared with plain
safety tuning (STL). We measure, for every input token, its contribution to the quantity refusal
tracking follows (:func:`overrefusal.tracking.refusal_logodds`): the refusal log-odds
``f = log P(R) - log(1 - P(R))`` of the first answer token, i.e. of the next-token logits at the last
prompt position. Gradients are taken w.r.t. the input embeddings ``x_i`` (the output of
``model.get_input_embeddings()``, fed back as ``inputs_embeds``), and a token's score is a scalar
obtained by summing over the hidden dimension:

* ``grad_x_input``: ``s_i = Σ_h x_ih · ∂f/∂x_ih`` at x (gradient × input; Shrikumar et al. 2016,
  "Not just a black box", arXiv 1605.01713, building on the saliency gradients of Simonyan et al. 2014,
  arXiv 1312.6034). One forward and one backward pass; exact for a linear f with f(0) = 0 but not
  complete in general.
* ``integrated_gradients``: ``s_i = Σ_h (x_ih - x'_ih) ∫_0^1 ∂f/∂x_ih(x' + α(x - x')) dα``
  (Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep networks", ICML, arXiv 1703.01365).
  The integral is a midpoint Riemann sum over ``steps`` points, run in batches, and *completeness*
  (Σ_i s_i = f(x) - f(x')) is reported per prompt as ``completeness_gap = Σ_i s_i - (f(x) - f(x'))``.

Quadrature grid. ``grid="uniform"`` is the textbook rule, ``α_k = t_k = (k + ½)/steps`` with weight
1/steps. It converges badly from the zero baseline on RMSNorm models: the first norm maps αx to
αx / sqrt(α²·ms(x) + ε), which jumps from 0 to x/rms(x) within α ≈ sqrt(ε)/rms(x) of zero and is
nearly constant after, so most of f(x) - f(0) is made in a thin layer next to the baseline that a
uniform grid misses (on the tiny test Llama, ε = 1e-6, rms ≈ 0.02: the gap stays at 55-85 % of
f(x) - f(0) from 8 to 128 steps). ``grid="cubic"`` (the default) substitutes α = t³, i.e. the
midpoint rule in t for ∫_0^1 g(t³)·3t² dt: the points crowd towards the baseline and the integrand
in t is smooth, so the error shrinks as O(1/steps²) again (same model: 0.15 % of f(x) - f(0) at 32
steps in float32/64; bfloat16 rounding alone leaves ~2 %). The weights 3t_k²/steps are renormalised
to sum to 1, so a linear f is attributed exactly (IG = grad×input from zero) at any ``steps``.

Baseline x'. The default is the all-zero embedding at every position (Sundararajan et al.'s choice for
text models): a "no information" input that is the same for every model, so the scores of an STL model
and a TBR model built on the same base are measured from the same reference. Every position, template
and special tokens included, moves from zero, so completeness holds over *all* tokens and the
template tokens get scores of their own; the summaries read the user-text tokens only. The
alternative ``baseline="pad"`` puts the pad token's embedding at every position (a "blank prompt"
reference, which is in-distribution for the embedding layer but depends on the model's pad token).

Words. Each token is mapped to the user-text word it belongs to with the fast tokenizer's offset
mapping on the rendered prompt text, so the BPE pieces of "murderous" all map to one word.
Words are the whitespace-separated pieces of the user text, lower-cased, with leading and trailing
punctuation stripped (:func:`normalize_word`); the trigger lexicon uses the same rule.

Trigger words are derived from the data (:func:`trigger_lexicon`): the words whose document
frequency is most over-represented in toxic prompts relative to general prompts, by the z-score of
the smoothed log-odds ratio (the variance-scaled log-odds of Monroe, Colaresi & Quinn 2008,
"Fightin' words", Political Analysis 16(4), here on 2×2 document-frequency tables with add-α smoothing).

The analysis only reads the model: eval mode, parameters temporarily frozen (so no graph is built for
them) and restored, and gradients obtained with ``torch.autograd.grad`` w.r.t. the embeddings only,
so no ``.grad`` is accumulated into any parameter.
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..prompting import Template, encode_prompt, render_prompt
from ..tracking import refusal_logodds

Method = Literal["grad_x_input", "integrated_gradients"]
Baseline = Literal["zero", "pad"]
Grid = Literal["cubic", "uniform"]
METHODS: tuple[str, ...] = ("grad_x_input", "integrated_gradients")
BASELINES: tuple[str, ...] = ("zero", "pad")
GRIDS: tuple[str, ...] = ("cubic", "uniform")
_PLACEHOLDER = "QZXUSERTEXTQZX"  # letters only, so no template filter (trim, escape) changes it
_WORD = re.compile(r"\S+")


# ----------------------------------------------------------------------------------------------
# Core: attributions of token ids (no tokenizer needed)
# ----------------------------------------------------------------------------------------------


@dataclass
class IdAttribution:
    scores: list[float]
    f_x: float
    f_baseline: float | None = None  # integrated gradients only
    completeness_gap: float | None = None  # Σ scores − (f_x − f_baseline), integrated gradients only


def _check_refusal_ids(refusal_ids: Sequence[int] | Tensor) -> list[int]:
    ids = [int(i) for i in (refusal_ids.tolist() if isinstance(refusal_ids, Tensor) else refusal_ids)]
    if not ids:
        raise ValueError("no refusal token ids: the refusal log-odds needs at least one")
    return ids


def _forward_logodds(model: torch.nn.Module, embeds: Tensor, refusal_ids: list[int]) -> Tensor:
    """(B, L, H) embeddings of unpadded prompts -> (B,) refusal log-odds at the last position."""
    b, seq = embeds.shape[:2]
    mask = torch.ones((b, seq), dtype=torch.long, device=embeds.device)
    # No padding, so the positions counted over real tokens are just 0..L-1 (as in generation).
    pos = torch.arange(seq, device=embeds.device).unsqueeze(0).expand(b, seq)
    out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False)
    return refusal_logodds(out.logits[:, -1, :], refusal_ids)


def quadrature(steps: int, grid: Grid = "cubic", *, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Points α_k in (0, 1) and weights (summing to 1) of the IG path integral; see the module doc."""
    t = (torch.arange(steps, dtype=dtype, device=device) + 0.5) / steps
    if grid == "uniform":
        return t, torch.full_like(t, 1.0 / steps)
    if grid == "cubic":
        w = 3 * t * t
        return t ** 3, w / w.sum()
    raise ValueError(f"unknown quadrature grid {grid!r}; allowed: {', '.join(GRIDS)}")


def attribute_ids(model: torch.nn.Module, ids: Sequence[int] | Tensor, refusal_ids: Sequence[int] | Tensor, *,
                  method: Method = "grad_x_input", steps: int = 32, baseline: Baseline = "zero",
                  pad_id: int | None = None, grid: Grid = "cubic", batch_size: int = 16) -> IdAttribution:
    """Per-token attribution of the refusal log-odds of the prompt ``ids`` (one unpadded sequence).

    ``steps``, ``grid``, ``baseline`` and ``batch_size`` (interpolation points per forward/backward)
    matter for integrated gradients only; ``pad_id`` is needed for ``baseline="pad"``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; allowed: {', '.join(METHODS)}")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; allowed: {', '.join(BASELINES)}")
    if grid not in GRIDS:
        raise ValueError(f"unknown quadrature grid {grid!r}; allowed: {', '.join(GRIDS)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    rids = _check_refusal_ids(refusal_ids)
    id_list = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
    if not id_list:
        raise ValueError("cannot attribute an empty token sequence")
    if baseline == "pad" and pad_id is None:
        raise ValueError("baseline='pad' needs a pad_id")

    emb_layer = model.get_input_embeddings()
    device = emb_layer.weight.device
    was_training = model.training
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()  # no dropout: the scores are a deterministic function of the weights
    try:
        for p, _ in frozen:
            p.requires_grad_(False)  # only the embeddings need a graph; restored below
        with torch.enable_grad():  # callers may hold a no_grad context
            tok = torch.tensor([id_list], dtype=torch.long, device=device)
            x = emb_layer(tok).detach()  # (1, L, H) in the model's dtype
            dtype = x.dtype
            acc = torch.promote_types(dtype, torch.float32)  # half-precision models accumulate in float32
            if method == "grad_x_input":
                xg = x.clone().requires_grad_(True)
                f = _forward_logodds(model, xg, rids)
                (grad,) = torch.autograd.grad(f.sum(), xg)
                scores = (grad.to(acc) * x.to(acc)).sum(-1)[0]
                return IdAttribution(scores=[float(s) for s in scores.cpu()], f_x=float(f.detach()[0]))

            x32 = x.to(acc)
            if baseline == "zero":
                base32 = torch.zeros_like(x32)
            else:
                pad = torch.full_like(tok, int(pad_id))  # type: ignore[arg-type]
                base32 = emb_layer(pad).detach().to(acc)
            delta = x32 - base32
            alphas, weights = quadrature(steps, grid, dtype=acc, device=device)
            total = torch.zeros_like(x32[0])  # Σ_k w_k · grad at α_k
            for start in range(0, steps, batch_size):
                a = alphas[start:start + batch_size].view(-1, 1, 1)
                path = (base32 + a * delta).to(dtype).requires_grad_(True)
                f_path = _forward_logodds(model, path, rids)
                (grad,) = torch.autograd.grad(f_path.sum(), path)
                total += (grad.to(acc) * weights[start:start + batch_size].view(-1, 1, 1)).sum(0)
            scores = (delta[0] * total).sum(-1)
            with torch.no_grad():
                f_x = float(_forward_logodds(model, x, rids)[0])
                f_0 = float(_forward_logodds(model, base32.to(dtype), rids)[0])
            score_list = [float(s) for s in scores.cpu()]
            return IdAttribution(scores=score_list, f_x=f_x, f_baseline=f_0,
                                 completeness_gap=math.fsum(score_list) - (f_x - f_0))
    finally:
        for p, req in frozen:
            p.requires_grad_(req)
        model.train(was_training)


# ----------------------------------------------------------------------------------------------
# Tokens -> user-text words
# ----------------------------------------------------------------------------------------------


def normalize_word(piece: str) -> str | None:
    """Lower-case, leading/trailing punctuation stripped; None when nothing is left ("--", "?")."""
    w = piece.strip(string.punctuation + "“”‘’«»…").lower()
    return w or None


def user_span(tokenizer: Any, user: str, template: Template, rendered: str | None = None) -> tuple[int, int]:
    """Character span [start, end) of the user text inside the rendered prompt.

    The prompt is rendered once more with a placeholder as the user text; what surrounds the
    placeholder is the template, so the user text is whatever lies between that prefix and suffix
    in the real rendering. This survives templates that trim the message and never matches a
    user text that also occurs in the system prompt or the role names.
    """
    text = render_prompt(tokenizer, user, template) if rendered is None else rendered
    probe = render_prompt(tokenizer, _PLACEHOLDER, template)
    at = probe.find(_PLACEHOLDER)
    if at >= 0 and probe.count(_PLACEHOLDER) == 1:
        prefix, suffix = probe[:at], probe[at + len(_PLACEHOLDER):]
        if text.startswith(prefix) and text.endswith(suffix) and len(prefix) + len(suffix) <= len(text):
            return len(prefix), len(text) - len(suffix)
    stripped = user.strip()  # a template that renders per call (e.g. a date) breaks the above
    at = text.rfind(stripped) if stripped else -1
    if at < 0:
        raise ValueError(f"cannot locate the user text inside the rendered {template!r} prompt")
    return at, at + len(stripped)


@dataclass
class Attribution:
    prompt: str
    method: str
    tokens: list[str]  # each id decoded on its own
    ids: list[int]
    scores: list[float]
    user_mask: list[bool]  # True for tokens inside the user text, False for template/special tokens
    words: list[str | None]  # the normalised user-text word of each token, None outside words
    f_x: float
    f_baseline: float | None = None
    completeness_gap: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _token_words(tokenizer: Any, prompt: str, template: Template, max_length: int
                 ) -> tuple[list[int], list[bool], list[str | None]]:
    """Encoded prompt ids (as generation feeds them, left-truncated) with user mask and words."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("token-to-word mapping needs a fast tokenizer (offset mapping)")
    rendered = render_prompt(tokenizer, prompt, template)
    enc = tokenizer(rendered, add_special_tokens=(template != "chat"), return_offsets_mapping=True)
    ids = [int(i) for i in enc["input_ids"]]
    if ids != encode_prompt(tokenizer, prompt, template):
        raise ValueError("offset-mapped encoding differs from encode_prompt; cannot align tokens with words")
    start, end = user_span(tokenizer, prompt, template, rendered)
    spans = [(m.start(), m.end(), normalize_word(m.group())) for m in _WORD.finditer(rendered, start, end)]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    mask: list[bool] = []
    words: list[str | None] = []
    for tid, (a, b) in zip(ids, enc["offset_mapping"], strict=True):
        lo, hi = max(a, start), min(b, end)
        inside = tid not in special and lo < hi
        mask.append(inside)
        word = None
        if inside:
            # A byte-level token carries its leading space: the word is the one of its first
            # non-space character (a whitespace-only token belongs to no word).
            first = next((c for c in range(lo, hi) if not rendered[c].isspace()), None)
            if first is not None:
                word = next((w for s, e, w in spans if s <= first < e), None)
        words.append(word)
    keep = slice(-max_length, None)  # same left truncation as refusal tracking
    return ids[keep], mask[keep], words[keep]


def token_attributions(model: torch.nn.Module, tokenizer: Any, prompt: str, template: Template,
                       refusal_ids: Sequence[int] | Tensor, *, method: Method = "grad_x_input", steps: int = 32,
                       max_length: int = 128, baseline: Baseline = "zero", grid: Grid = "cubic",
                       batch_size: int = 16) -> Attribution:
    """Attribution of the refusal log-odds of ``prompt`` (rendered with ``template``) to its tokens."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    ids, mask, words = _token_words(tokenizer, prompt, template, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    raw = attribute_ids(model, ids, refusal_ids, method=method, steps=steps, baseline=baseline,
                        pad_id=None if pad is None else int(pad), grid=grid, batch_size=batch_size)
    return Attribution(prompt=prompt, method=method, tokens=[tokenizer.decode([i]) for i in ids], ids=ids,
                       scores=raw.scores, user_mask=mask, words=words, f_x=raw.f_x, f_baseline=raw.f_baseline,
                       completeness_gap=raw.completeness_gap)


# ----------------------------------------------------------------------------------------------
# Trigger lexicon
# ----------------------------------------------------------------------------------------------


def prompt_words(text: str) -> set[str]:
    """The distinct lexicon candidates of a prompt: normalised words with at least 3 letters.

    The length rule stands in for a stop-word list (it drops "a", "i", "to", "of", ...); the common
    longer function words that survive ("the", "how") are about as frequent in both corpora, so
    their log-odds ratio is near zero and they do not rank.
    """
    out: set[str] = set()
    for piece in text.split():
        w = normalize_word(piece)
        if w is not None and sum(c.isalpha() for c in w) >= 3:
            out.add(w)
    return out


def trigger_table(toxic: Sequence[str], general: Sequence[str], *, alpha: float = 0.5,
                  min_count: int = 2) -> list[dict[str, Any]]:
    """Every word over-represented in ``toxic``, with its statistics, best first.

    Per word, the 2×2 table (toxic/general × prompt contains the word or not) of document counts,
    each cell plus ``alpha`` (0.5: the Haldane–Anscombe correction, finite for zero cells), gives the
    log-odds ratio δ and its variance σ² = Σ 1/(cell + α); words are ranked by z = δ/σ, so a word
    seen in two toxic prompts does not outrank one seen in fifty (Monroe et al. 2008). Only words in
    at least ``min_count`` toxic prompts and with δ > 0 are listed; ties are broken by the word.
    """
    if not toxic or not general:
        raise ValueError(f"need toxic and general prompts, got {len(toxic)} and {len(general)}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    df_t: dict[str, int] = {}
    df_g: dict[str, int] = {}
    for corpus, df in ((toxic, df_t), (general, df_g)):
        for text in corpus:
            for w in prompt_words(text):
                df[w] = df.get(w, 0) + 1
    n_t, n_g = len(toxic), len(general)
    rows: list[dict[str, Any]] = []
    for w, a in df_t.items():
        if a < min_count:
            continue
        c = df_g.get(w, 0)
        cells = (a + alpha, n_t - a + alpha, c + alpha, n_g - c + alpha)
        delta = math.log(cells[0] / cells[1]) - math.log(cells[2] / cells[3])
        if delta <= 0:
            continue
        z = delta / math.sqrt(sum(1.0 / x for x in cells))
        rows.append({"word": w, "toxic_df": a, "general_df": c, "log_odds_ratio": delta, "z": z})
    rows.sort(key=lambda r: (-r["z"], r["word"]))
    return rows


def trigger_lexicon(toxic: list[str], general: list[str], *, top_n: int = 20, min_count: int = 2,
                    alpha: float = 0.5) -> list[str]:
    """The ``top_n`` trigger words of :func:`trigger_table`, best first."""
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    return [r["word"] for r in trigger_table(toxic, general, alpha=alpha, min_count=min_count)[:top_n]]


# ----------------------------------------------------------------------------------------------
# Summaries and the report
# ----------------------------------------------------------------------------------------------


def _mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def attribution_summary(attrs: Sequence[Attribution], triggers: Iterable[str]) -> dict[str, Any]:
    """Trigger vs other tokens, over user-text tokens only (``user_mask``), JSON-able.

    A token is a trigger token when its word is in ``triggers`` (compared lower-case); every other
    user-text token, whitespace pieces included, is "other". Token means pool the tokens of all
    prompts; ``mean_paired_diff`` averages the per-prompt difference over prompts with both kinds;
    ``abs_share_trigger`` is Σ|trigger scores| / Σ|all user scores| per prompt, averaged over prompts
    with a trigger token, next to ``token_share_trigger``, the share the trigger tokens would get by
    count alone. Prompts without any trigger token only enter ``mean_no_trigger_prompts``.
    """
    trig = {t.lower() for t in triggers}
    trig_scores: list[float] = []
    other_scores: list[float] = []  # user tokens of prompts with a trigger token
    none_scores: list[float] = []  # user tokens of prompts without one
    paired: list[float] = []
    abs_share: list[float] = []
    count_share: list[float] = []
    n_tokens = n_with = 0
    for at in attrs:
        t = [s for s, m, w in zip(at.scores, at.user_mask, at.words, strict=True) if m and w in trig]
        o = [s for s, m, w in zip(at.scores, at.user_mask, at.words, strict=True) if m and w not in trig]
        n_tokens += len(t) + len(o)
        if not t:
            none_scores.extend(o)
            continue
        n_with += 1
        trig_scores.extend(t)
        other_scores.extend(o)
        if o:
            paired.append(math.fsum(t) / len(t) - math.fsum(o) / len(o))
        total = math.fsum(abs(s) for s in t + o)
        if total > 0:
            abs_share.append(math.fsum(abs(s) for s in t) / total)
        count_share.append(len(t) / (len(t) + len(o)))
    mean_t, mean_o = _mean(trig_scores), _mean(other_scores)
    return {
        "n_prompts": len(attrs),
        "n_prompts_with_trigger": n_with,
        "n_prompts_without_trigger": len(attrs) - n_with,
        "n_tokens": n_tokens,
        "n_trigger_tokens": len(trig_scores),
        "n_other_tokens": len(other_scores),
        "n_no_trigger_prompt_tokens": len(none_scores),
        "mean_trigger": mean_t,
        "mean_other": mean_o,
        "diff": None if mean_t is None or mean_o is None else mean_t - mean_o,
        "mean_paired_diff": _mean(paired),
        "abs_share_trigger": _mean(abs_share),
        "token_share_trigger": _mean(count_share),
        "mean_no_trigger_prompts": _mean(none_scores),
    }


def attribution_report(model: torch.nn.Module, tokenizer: Any, template: Template, prompts: Sequence[str],
                       refusal_ids: Sequence[int] | Tensor, triggers: Iterable[str], *,
                       method: Method = "integrated_gradients", steps: int = 32, n_examples: int = 4,
                       max_length: int = 128, baseline: Baseline = "zero", grid: Grid = "cubic",
                       batch_size: int = 16) -> dict[str, Any]:
    """Attributions of every prompt, summarised against ``triggers``; a JSON-able dict."""
    if not prompts:
        raise ValueError("attribution_report needs at least one prompt")
    _check_refusal_ids(refusal_ids)
    trig = sorted({t.lower() for t in triggers})
    t0 = time.perf_counter()
    attrs = [token_attributions(model, tokenizer, p, template, refusal_ids, method=method, steps=steps,
                                max_length=max_length, baseline=baseline, grid=grid, batch_size=batch_size)
             for p in prompts]
    report: dict[str, Any] = {
        "method": method,
        "steps": steps if method == "integrated_gradients" else None,
        "baseline": baseline if method == "integrated_gradients" else None,
        "grid": grid if method == "integrated_gradients" else None,
        "template": template,
        "max_length": max_length,
        "n_prompts": len(attrs),
        "triggers": trig,
        "mean_f_x": _mean([a.f_x for a in attrs]),
        "summary": attribution_summary(attrs, trig),
        "examples": [{"prompt": a.prompt, "tokens": a.tokens, "scores": a.scores, "user_mask": a.user_mask,
                      "words": a.words} for a in attrs[:max(0, n_examples)]],
    }
    if method == "integrated_gradients":
        gaps = [float(a.completeness_gap) for a in attrs if a.completeness_gap is not None]
        report["mean_completeness_gap"] = _mean(gaps)
        report["mean_abs_completeness_gap"] = _mean([abs(g) for g in gaps])
    report["seconds"] = time.perf_counter() - t0
    return report
