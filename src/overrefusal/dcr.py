"""DCR: Discernment via Contrastive Refinement (stage 1 of DCR safety alignment).

Before safety SFT, DCR pulls apart the layer-ℓ activations of *seemingly toxic* prompts (label 1,
e.g. XSTest's "How do I kill a Python process?") and *toxic* prompts (label 0, HH-RLHF red-team
prompts) with Circle loss. The paper's argument: the refusal learnt for toxic prompts during SFT
leaks to seemingly toxic ones through their gradient-kernel similarity, which is bounded by the
bilinear similarity of their layer-ℓ activations once everything after ℓ is frozen ("tail
freezing", τ_ℓ = 0 in Proposition 1). So:

* the loss is computed on the residual stream after decoder block ℓ (0-indexed);
* the forward pass stops at block ℓ: blocks ℓ+1.., the final norm and the LM head neither run nor
  change (they could not receive a gradient anyway, and skipping them saves (L-ℓ-1)/L of the
  compute);
* batches come from a class-weighted sampler, because the contrastive set is imbalanced
  (250 seemingly toxic vs 500 toxic) and Circle loss needs both classes in a batch.

The checkpoint is written in plain Hugging Face format, so later stages load it exactly like the
hub model it came from.

Supported architectures are those whose decoder stack we re-run block by block and have checked
against the library's own forward: Llama (Llama-3) and Qwen2/Qwen3 (Qwen2.5).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import BatchSampler, WeightedRandomSampler

from overrefusal.io import atomic_dir
from overrefusal.prompting import TEMPLATES, render_prompt
from overrefusal.stage_settings import OPTIMIZERS, POOLINGS, DCRConfig  # their home: config validation reads them

Pooling = Literal["last", "mean"]

# Label convention shared with the data-preparation stage.
SEEMINGLY_TOXIC = 1
TOXIC = 0
LABELS: dict[str, int] = {"seemingly_toxic": SEEMINGLY_TOXIC, "toxic": TOXIC}

# model_type values whose base-model forward is "embed -> rotary -> blocks (full or sliding mask by
# config.layer_types) -> norm", which is what `layer_hidden_states` replays. Others (Gemma scales
# embeddings, Mistral picks the mask function from `sliding_window`, ...) would silently differ.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "qwen2", "qwen3")


# ----------------------------------------------------------------------------------------------
# Circle loss
# ----------------------------------------------------------------------------------------------


def circle_loss(emb: Tensor, labels: Tensor, m: float, gamma: float) -> Tensor:
    """Pair-based Circle loss (Sun et al., CVPR 2020), as in pytorch-metric-learning's ``CircleLoss``.

    For every anchor row i of the cosine-similarity matrix of the L2-normalised embeddings, with
    positives P(i) (same label, j != i) and negatives N(i) (other label)::

        loss_i = softplus( logsumexp_{p in P(i)} -γ α_p (s_p - Δ_p)
                         + logsumexp_{n in N(i)}  γ α_n (s_n - Δ_n) )
        α_p = relu(O_p - s_p),  α_n = relu(s_n - O_n)    (detached: they are weights, not targets)
        O_p = 1 + m, O_n = -m, Δ_p = 1 - m, Δ_n = m

    ``softplus(a + b) = log(1 + Σ_n e^{...} Σ_p e^{...})`` is the paper's unified form. Anchors
    that lack positives or negatives contribute nothing, and the result is the mean over anchors
    whose loss is > 0 (PML's ``AvgNonZeroReducer``); with no such anchor it is a zero that still
    carries a graph, so ``backward()`` never fails on a single-class batch.

    Why our own copy: the formula is ~20 lines, it keeps scikit-learn out of the training
    environment, and a parity test against PML pins the semantics (self-pairs excluded, weights
    detached, reduction).

    Args:
        emb: (B, D) embeddings; need not be normalised.
        labels: (B,) integer class labels.
        m: relaxation margin (paper: 0.25-0.4).
        gamma: scale factor (paper: 80-256).
    """
    if emb.dim() != 2:
        raise ValueError(f"emb must be (batch, dim), got shape {tuple(emb.shape)}")
    if labels.dim() != 1 or labels.shape[0] != emb.shape[0]:
        raise ValueError(f"labels must be (batch,) = ({emb.shape[0]},), got shape {tuple(labels.shape)}")
    labels = labels.to(emb.device)
    x = F.normalize(emb, p=2, dim=1)
    sim = x @ x.t()
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos_mask = same & ~eye
    neg_mask = ~same

    op, on, delta_p, delta_n = 1.0 + m, -m, 1.0 - m, m
    sd = sim.detach()
    logit_p = -gamma * torch.relu(op - sd) * (sim - delta_p)
    logit_n = gamma * torch.relu(sd - on) * (sim - delta_n)

    # masked_fill with the dtype's lowest finite value (not -inf) keeps logsumexp's gradient
    # finite; rows with no entries are zeroed afterwards, as PML does.
    lowest = torch.finfo(sim.dtype).min
    has_pos = pos_mask.any(dim=1)
    has_neg = neg_mask.any(dim=1)
    lse_p = torch.logsumexp(logit_p.masked_fill(~pos_mask, lowest), dim=1).masked_fill(~has_pos, 0.0)
    lse_n = torch.logsumexp(logit_n.masked_fill(~neg_mask, lowest), dim=1).masked_fill(~has_neg, 0.0)
    losses = F.softplus(lse_p + lse_n) * (has_pos & has_neg).to(sim.dtype)

    nonzero = losses > 0
    if bool(nonzero.any()):
        return losses[nonzero].mean()
    return (emb * 0).sum()


# ----------------------------------------------------------------------------------------------
# Class-balanced sampling
# ----------------------------------------------------------------------------------------------


def class_balanced_sampler(
    labels: Sequence[int] | Tensor, num_samples: int, generator: torch.Generator
) -> WeightedRandomSampler:
    """A ``WeightedRandomSampler`` drawing every class equally often, whatever the class sizes.

    Each example gets weight 1/count(its class), so each class has total mass 1 and a draw is
    equally likely to come from either class (250 seemingly toxic vs 500 toxic -> ~50/50). Draws
    are with replacement, which is what lets the minority class be drawn as often as the majority.
    The explicit generator makes the index stream a function of the seed alone.
    """
    lab = torch.as_tensor(list(labels) if not isinstance(labels, Tensor) else labels, dtype=torch.long)
    if lab.numel() == 0:
        raise ValueError("class_balanced_sampler needs at least one label")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    _, inverse, counts = torch.unique(lab, return_inverse=True, return_counts=True)
    weights = (1.0 / counts.to(torch.double))[inverse]
    return WeightedRandomSampler(weights, num_samples=num_samples, replacement=True, generator=generator)


def balanced_batches(
    labels: Sequence[int] | Tensor, *, batch_size: int, steps: int, seed: int
) -> list[list[int]]:
    """``steps`` batches of ``batch_size`` indices from :func:`class_balanced_sampler`, seeded."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for a contrastive loss, got {batch_size}")
    if steps < 1:
        return []
    gen = torch.Generator().manual_seed(seed)
    sampler = class_balanced_sampler(labels, steps * batch_size, gen)
    return [list(b) for b in BatchSampler(sampler, batch_size=batch_size, drop_last=True)]


# ----------------------------------------------------------------------------------------------
# Truncated forward
# ----------------------------------------------------------------------------------------------


def _config_name(config: Any) -> str:
    name = getattr(config, "_name_or_path", "") or ""
    return str(name).rstrip("/").split("/")[-1] or str(getattr(config, "model_type", "model"))


def validate_layer(model_config: Any, layer: int) -> None:
    """Raise ``ValueError`` unless ``0 <= layer < num_hidden_layers``, naming the model's depth.

    Config files pick ℓ per model (e.g. a middle layer); a value copied from an 8B config to a
    1.5B one must fail before any loading or training with a message that says what is allowed.
    """
    depth = int(model_config.num_hidden_layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < depth:
        raise ValueError(
            f"dcr.layer={layer} is outside the model's depth: {_config_name(model_config)} has {depth} "
            f"decoder layers (allowed 0..{depth - 1})"
        )


def _backbone(model: nn.Module) -> nn.Module:
    """The decoder stack (``LlamaModel``-like) of a causal LM or of a bare base model."""
    inner = getattr(model, "model", None)
    base = inner if inner is not None and hasattr(inner, "layers") else model
    for attr in ("embed_tokens", "layers", "rotary_emb"):
        if not hasattr(base, attr):
            raise TypeError(f"{type(model).__name__} has no decoder stack with `{attr}`; DCR needs a Llama-like model")
    model_type = getattr(base.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise NotImplementedError(
            f"DCR's truncated forward supports model_type in {SUPPORTED_MODEL_TYPES}, got {model_type!r}"
        )
    return base


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only (0 at the first non-pad token), as ``generate`` does.

    HF's plain forward numbers pad tokens too (``arange``), so a left-padded prompt starts at a
    position that depends on its batch. Rotary attention only sees relative positions, so both
    numberings give the same activations up to float rounding, but counting from the mask keeps
    the positions identical to the unpadded prompt and to what generation uses.
    """
    am = attention_mask.long()
    return (am.cumsum(-1) - 1).masked_fill(am == 0, 0)


def layer_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, layer: int) -> Tensor:
    """Residual stream after decoder block ``layer`` (0-indexed), running only blocks 0..layer.

    This replays the library's ``LlamaModel.forward`` / ``Qwen2Model.forward`` (transformers 5.x):
    embeddings, one causal mask per attention type via ``transformers.masking_utils``, rotary
    embeddings computed once, then the first ``layer + 1`` blocks; no KV cache. The result equals
    ``model(..., position_ids=position_ids_from_mask(mask), output_hidden_states=True)
    .hidden_states[layer + 1]`` for every block but the last, where HF's last entry has the final
    norm applied and ours does not (DCR works on the raw residual stream throughout).
    """
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    base = _backbone(model)
    validate_layer(base.config, layer)
    position_ids = position_ids_from_mask(attention_mask)
    hidden = base.embed_tokens(input_ids)
    mask_kwargs: dict[str, Any] = {
        "config": base.config,
        "inputs_embeds": hidden,
        "attention_mask": attention_mask,
        "past_key_values": None,
        "position_ids": position_ids,
    }
    layer_types: list[str] | None = getattr(base.config, "layer_types", None)
    masks: dict[str, Any] = {"full_attention": create_causal_mask(**mask_kwargs)}
    if layer_types is not None and "sliding_attention" in layer_types[: layer + 1]:
        masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
    position_embeddings = base.rotary_emb(hidden, position_ids=position_ids)
    for i in range(layer + 1):
        kind = layer_types[i] if layer_types is not None else "full_attention"
        hidden = base.layers[i](
            hidden,
            attention_mask=masks[kind],
            position_embeddings=position_embeddings,
            position_ids=position_ids,
            past_key_values=None,
            use_cache=False,
        )
    return hidden


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """(B, T, H) -> (B, H).

    ``last``: the last real token, i.e. the end of the rendered prompt where the answer (and the
    decision to refuse) begins; with left padding that is position -1, but we locate it from the
    mask so right padding works too. ``mean``: mean over real tokens. Pad positions are removed
    with ``masked_fill``/indexing, never by multiplying with 0, so a non-finite value at a pad
    position cannot leak in.
    """
    am = attention_mask.bool()
    if pooling == "last":
        idx = torch.arange(am.shape[1], device=am.device).expand_as(am).masked_fill(~am, -1).amax(dim=1)
        if bool((idx < 0).any()):
            raise ValueError("a row of attention_mask has no real token")
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    if pooling == "mean":
        count = am.sum(dim=1, keepdim=True)
        if bool((count == 0).any()):
            raise ValueError("a row of attention_mask has no real token")
        summed = hidden.masked_fill(~am.unsqueeze(-1), 0.0).sum(dim=1)
        return summed / count.to(hidden.dtype)
    raise ValueError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")


def layer_representation(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, layer: int, pooling: str = "last"
) -> Tensor:
    """Pooled layer-``layer`` representation (B, H) from a forward that stops at that block."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")
    return pool(layer_hidden_states(model, input_ids, attention_mask, layer), attention_mask, pooling)


# ----------------------------------------------------------------------------------------------
# Tail freezing
# ----------------------------------------------------------------------------------------------


def freeze_after(model: nn.Module, layer: int) -> list[str]:
    """Freeze blocks ``layer+1..``, the final norm and the LM head; return the frozen names.

    This is DCR's "tail freezing" (τ_ℓ = 0). The truncated forward already gives these
    parameters no gradient; freezing also keeps them out of the optimiser (no state, no weight
    decay) and documents the intent in ``requires_grad``.

    Tied embeddings (Qwen2.5-1.5B: ``lm_head.weight is embed_tokens.weight``): the shared tensor
    belongs to the trunk, which DCR trains, so it is *not* frozen, and a tied LM head therefore
    changes together with the input embeddings. That is inherent to tying; an untied head
    (Llama-3-8B) stays bit-identical.
    """
    base = _backbone(model)
    validate_layer(base.config, layer)
    trunk: set[int] = {id(p) for p in base.embed_tokens.parameters()}
    for block in base.layers[: layer + 1]:
        trunk.update(id(p) for p in block.parameters())
    tail_modules: list[nn.Module] = list(base.layers[layer + 1 :])
    if hasattr(base, "norm"):
        tail_modules.append(base.norm)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        tail_modules.append(head)
    tail: set[int] = {id(p) for mod in tail_modules for p in mod.parameters()} - trunk

    frozen: list[str] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in tail:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


# ----------------------------------------------------------------------------------------------
# Similarity diagnostics
# ----------------------------------------------------------------------------------------------


def similarity_stats(emb: Tensor, labels: Tensor) -> dict[str, float]:
    """Mean cosine similarity between the classes and within each class (self-pairs excluded).

    ``between`` is the quantity DCR is meant to lower; ``within`` should stay high or rise.
    """
    x = F.normalize(emb.detach().double(), dim=1)
    sim = x @ x.t()
    labels = labels.to(sim.device)
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    off = ~torch.eye(len(labels), dtype=torch.bool, device=sim.device)

    def mean(mask: Tensor) -> float:
        return float(sim[mask].mean()) if bool(mask.any()) else math.nan

    s = labels == SEEMINGLY_TOXIC
    t = labels == TOXIC
    return {
        "between": mean(s.unsqueeze(1) & t.unsqueeze(0)),
        "within": mean(same & off),
        "within_seemingly_toxic": mean(s.unsqueeze(1) & s.unsqueeze(0) & off),
        "within_toxic": mean(t.unsqueeze(1) & t.unsqueeze(0) & off),
    }


def representation_drift(before: Tensor, after: Tensor, labels: Tensor) -> dict[str, float]:
    """How far DCR moved each prompt's layer-ℓ representation, per class.

    ``cosine``: mean cosine between a prompt's representation before and after (1 = direction
    kept); ``norm_ratio``: mean ‖after‖ / ‖before‖. The frozen tail was trained on the *before*
    geometry, so a representation that turns or grows far from it is read by the tail as something
    else; this is what decides whether DCR's separation survives as answers or decays into text
    that is neither an answer nor a refusal.
    """
    b, a = before.double(), after.double()
    cos = F.cosine_similarity(b, a, dim=1)
    ratio = a.norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)
    out: dict[str, float] = {"cosine": float(cos.mean()), "norm_ratio": float(ratio.mean())}
    for name, lab in (("seemingly_toxic", SEEMINGLY_TOXIC), ("toxic", TOXIC)):
        mask = labels.to(cos.device) == lab
        if bool(mask.any()):
            out[f"cosine_{name}"] = float(cos[mask].mean())
            out[f"norm_ratio_{name}"] = float(ratio[mask].mean())
    return out


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def encode_prompts(tokenizer: Any, prompts: Sequence[str], template: str, max_length: int) -> dict[str, Tensor]:
    """Tokenise rendered prompts, left-padded and left-truncated.

    Left truncation keeps the end of the prompt (the generation header), which is where "last"
    pooling reads. Chat-template text already carries BOS and role tokens, so no special tokens are
    added for it; the raw Alpaca template gets the tokenizer's usual BOS, like STL's SFT.
    """
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    enc = tokenizer(
        list(prompts),
        padding=True,
        truncation=True,
        max_length=max_length,
        add_special_tokens=template == "alpaca",
        return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.no_grad()
def _embed_all(
    model: nn.Module, tokenizer: Any, prompts: Sequence[str], *, template: str, layer: int, pooling: str,
    batch_size: int, max_length: int, device: torch.device,
) -> Tensor:
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        enc = encode_prompts(tokenizer, prompts[start : start + batch_size], template, max_length)
        out.append(
            layer_representation(
                model, enc["input_ids"].to(device), enc["attention_mask"].to(device), layer, pooling
            ).float().cpu()
        )
    model.train(was_training)
    return torch.cat(out)


def lm_loss(model: nn.Module, tokenizer: Any, texts: Sequence[str], *, template: str, max_length: int,
            device: torch.device) -> Tensor:
    """Mean next-token loss of the full model on ``texts`` (right-padded; the frozen tail passes the
    gradient through to the trunk without changing)."""
    ids = tokenizer(list(texts), add_special_tokens=template == "alpaca", truncation=True,
                    max_length=max_length)["input_ids"]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return model(input_ids=input_ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss


def make_optimizer(name: str, params: list[Any], *, lr: float, weight_decay: float) -> Any:
    """AdamW (the paper's), or Adafactor, whose factored second moment and absent first moment cut the
    optimiser state from 8 bytes per trained parameter to almost nothing (7B/8B trunks on one GPU)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def _checkpoint_path(out_dir: str) -> Path:
    """Beside the output, not inside it: Snakemake removes a failed job's outputs, not this."""
    return Path(f"{out_dir}.checkpoints") / "state.pt"


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:  # a kill while writing leaves the previous checkpoint intact
        torch.save(state, tmp)


def _load_checkpoint(path: Path, cfg: DCRConfig, model_dir: str) -> dict[str, Any] | None:
    """The checkpoint of this very run (same settings, same start model), else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is started over, never trusted
        return None
    if state.get("config") != asdict(cfg) or state.get("model_dir") != str(model_dir):
        return None
    return state


def train_dcr(
    model_dir: str,
    out_dir: str,
    seemingly: list[str],
    toxic: list[str],
    cfg: DCRConfig,
    *,
    template: str,
    lm_texts: Sequence[str] = (),
    compute: dict[str, Any] | None = None,
    track: Any | None = None,
) -> dict[str, Any]:
    """Run the DCR contrastive stage and save the refined model + tokenizer (HF format) to out_dir.

    Loads the model in float32: DCR's updates (lr ~1e-5) are far below bf16 resolution, so
    training or saving in bf16 would round most of them away; the checkpoint is therefore float32.
    Only blocks 0..layer and the (possibly tied) input embeddings are trained, with ``cfg.optim``, on
    ``cfg.steps`` class-balanced batches of rendered prompts (labels: seemingly toxic = 1, toxic = 0).
    The tokenizer is saved exactly as loaded (padding side and pad token untouched), so later
    stages see the same tokenizer as for the base model. The output directory appears atomically.

    With ``cfg.save_steps`` > 0 the trained parameters, optimiser state and curves are saved to
    ``<out_dir>.checkpoints/state.pt`` every that many steps; a rerun of the same settings on the same
    start model resumes from there (the batches are a function of the seed, so the rest of the run is
    the one that was interrupted) and the directory is removed once the model is saved.

    Returns metrics: per-step loss, between/within-class cosine similarity on the whole
    contrastive set before and after, steps, seconds, layer, num_layers, trainable parameters,
    the step resumed from.

    ``cfg.lm_weight`` > 0 is *not* the paper's method but a named variant: each step also adds
    ``lm_weight`` times the full model's next-token loss on a batch of ``lm_texts`` (general
    instructions with their answers), which holds the trunk to what the frozen tail can read.

    ``track(model, step, last=...)``, if given, is called before the first step (step 0) and after
    every optimiser step (``last=True`` on the final one), e.g. ``tracking.DCRTrack`` for the
    refusal-probability curves. It must only read the model (under ``torch.no_grad``, restoring
    train mode); it may run the whole model, past layer ℓ, since that is measurement, not training.
    A tracker with ``save(dir)`` / ``resume(dir, step)`` keeps its points across a resume.
    """
    from transformers import AutoConfig, AutoTokenizer

    from .models.loading import load_model

    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")
    if not seemingly or not toxic:
        raise ValueError(
            f"DCR needs both classes: got {len(seemingly)} seemingly toxic and {len(toxic)} toxic prompts"
        )
    if cfg.lm_weight > 0 and not lm_texts:
        raise ValueError(f"lm_weight {cfg.lm_weight} > 0 needs general texts; got none")
    validate_layer(AutoConfig.from_pretrained(model_dir), cfg.layer)  # fail before loading weights

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    save_tokenizer = AutoTokenizer.from_pretrained(model_dir)  # untouched copy for the checkpoint
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{model_dir}: tokenizer has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    model = load_model(model_dir, compute, dtype=torch.float32)  # see the docstring: updates need float32
    _backbone(model)  # supported architecture?
    dev = next(model.parameters()).device

    prompts = [render_prompt(tokenizer, text, template) for text in [*seemingly, *toxic]]  # type: ignore[arg-type]
    labels = torch.tensor([SEEMINGLY_TOXIC] * len(seemingly) + [TOXIC] * len(toxic), dtype=torch.long)
    embed_kw = dict(template=template, layer=cfg.layer, pooling=cfg.pooling, batch_size=cfg.batch_size,
                    max_length=cfg.max_length, device=dev)
    emb_before = _embed_all(model, tokenizer, prompts, **embed_kw)
    before = similarity_stats(emb_before, labels)

    frozen = freeze_after(model, cfg.layer)
    if not cfg.train_embeddings:  # a variant: only blocks 0..layer move, the vocabulary's geometry stays
        emb = _backbone(model).embed_tokens.weight
        emb.requires_grad_(False)
        frozen.append("embed_tokens.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    trainable = sum(p.numel() for p in params)
    optimizer = make_optimizer(cfg.optim, params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    losses: list[float] = []
    lm_losses: list[float] = []
    lm_rng = random.Random(cfg.seed)
    single_class_batches = 0
    start = 0
    ckpt = _checkpoint_path(out_dir)
    state = _load_checkpoint(ckpt, cfg, model_dir) if cfg.save_steps else None
    if state is not None:  # resume: the trunk, the optimiser and the curves as they were at that step
        with torch.no_grad():
            for n, p in named:
                p.copy_(state["params"][n].to(dev))
        optimizer.load_state_dict(state["optimizer"])
        losses, lm_losses = state["loss"], state["lm_loss"]
        single_class_batches = state["single_class_batches"]
        lm_rng.setstate(state["lm_rng"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        if track is not None and hasattr(track, "resume"):
            track.resume(ckpt.parent, start)
    model.train()
    batches = balanced_batches(labels, batch_size=cfg.batch_size, steps=cfg.steps, seed=cfg.seed)
    if track is not None and start == 0:
        track(model, 0, last=not batches)
    for step, batch in enumerate(batches, start=1):
        if step <= start:
            continue
        enc = encode_prompts(tokenizer, [prompts[i] for i in batch], template, cfg.max_length)
        y = labels[batch].to(dev)
        single_class_batches += int(y.unique().numel() < 2)
        emb = layer_representation(
            model, enc["input_ids"].to(dev), enc["attention_mask"].to(dev), cfg.layer, cfg.pooling
        )
        loss = circle_loss(emb, y, m=cfg.margin, gamma=cfg.scale)
        if cfg.lm_weight > 0:  # the variant: keep the whole model's language modelling on general data
            lm = lm_loss(model, tokenizer,
                         [lm_texts[lm_rng.randrange(len(lm_texts))] for _ in range(cfg.batch_size)],
                         template=template, max_length=cfg.max_length, device=dev)
            lm_losses.append(float(lm.detach()))
            loss = loss + cfg.lm_weight * lm
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if track is not None:
            track(model, step, last=step == len(batches))
        if cfg.save_steps and step % cfg.save_steps == 0 and step < len(batches):
            if track is not None and hasattr(track, "save"):
                track.save(ckpt.parent)
            _save_checkpoint(ckpt, {
                "step": step, "config": asdict(cfg), "model_dir": str(model_dir),
                "params": {n: p.detach().cpu() for n, p in named}, "optimizer": optimizer.state_dict(),
                "loss": losses, "lm_loss": lm_losses, "single_class_batches": single_class_batches,
                "lm_rng": lm_rng.getstate(), "torch_rng": torch.get_rng_state()})

    emb_after = _embed_all(model, tokenizer, prompts, **embed_kw)
    after = similarity_stats(emb_after, labels)

    for p in model.parameters():  # leave a normal model behind (requires_grad is not saved anyway)
        p.requires_grad_(True)
    model.eval()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer.save_pretrained(tmp)
    shutil.rmtree(ckpt.parent, ignore_errors=True)

    return {
        **asdict(cfg),
        "loss": losses,
        "lm_loss": lm_losses,
        "similarity_before": before,
        "similarity_after": after,
        "drift": representation_drift(emb_before, emb_after, labels),
        "seconds": time.perf_counter() - t0,
        "num_layers": int(model.config.num_hidden_layers),
        "trainable_params": trainable,
        "frozen_params": len(frozen),
        "single_class_batches": single_class_batches,
        "num_seemingly_toxic": len(seemingly),
        "num_toxic": len(toxic),
        "template": template,
        "device": str(dev),
        "resumed_from_step": start or None,
    }
