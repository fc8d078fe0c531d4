"""The residual stream of a decoder, read and edited through hooks: what SCANS and Surgical share.

Both baselines work on an unchanged checkpoint: they read activations at a few prompt positions,
build directions from class means, and at inference add to or project out of the residual
stream. Everything here goes through ``register_forward_(pre_)hook`` on the library's own modules,
so the model runs its own forward (any Llama- or Qwen2-style decoder) and a hook that is removed
leaves no trace.

Positions are derived from the tokenised prompt, never from a literal template string: the
*post-instruction* tokens are those that follow the user's text in the rendered prompt (the chat
template's end-of-turn and assistant header, Alpaca's "### Response:"), found by rendering two
different user texts and taking the common token suffix (:func:`instruction_suffix`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..dcr import position_ids_from_mask
from ..prompting import Template, encode_prompt

SITES: tuple[str, ...] = ("input", "output")  # a block's residual-stream input, or its output


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder blocks of a Llama- or Qwen2-style causal LM (``model.model.layers``)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise TypeError(f"{type(model).__name__}: no decoder blocks at model.model.layers; SCANS and Surgical "
                        "support Llama- and Qwen2-style decoders")
    return layers


def hidden_of(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output: Any, hidden: Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def instruction_suffix(tokenizer: Any, template: Template) -> list[int]:
    """Token ids that follow the user's text in every rendered prompt (may be empty: ``plain``)."""
    a = encode_prompt(tokenizer, "alpha", template)
    b = encode_prompt(tokenizer, "beta gamma ?", template)
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:]


def post_instruction_positions(tokenizer: Any, template: Template) -> int:
    """How many trailing prompt positions are post-instruction (at least 1: the last prompt token)."""
    return max(1, len(instruction_suffix(tokenizer, template)))


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded ids, attention mask and positions counted over real tokens (as generation does)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device), position_ids_from_mask(mask).to(device)


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def encode_all(tokenizer: Any, texts: Sequence[str], template: Template, max_length: int) -> list[list[int]]:
    """Prompts as generation encodes them, cut from the left to ``max_length`` (the end is kept)."""
    return [encode_prompt(tokenizer, t, template)[-max_length:] for t in texts]


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def last_position_activations(model: Any, seqs: Sequence[Sequence[int]], *, site: str, k: int, pad_id: int,
                              batch_size: int, layers: Sequence[int] | None = None) -> Tensor:
    """(N, n_layers, k, d) float32 activations at each sequence's last ``k`` positions, at the input
    (``site="input"``) or output of every block in ``layers`` (default: all)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    blocks = decoder_layers(model)
    chosen = list(range(len(blocks))) if layers is None else list(layers)
    device = next(model.parameters()).device
    out: list[Tensor] = []
    for sl in _batches(len(seqs), batch_size):
        caught: dict[int, Tensor] = {}

        def catch(i: int, caught: dict[int, Tensor] = caught) -> Any:
            if site == "input":
                return lambda m, args, kwargs: caught.__setitem__(
                    i, (args[0] if args else kwargs["hidden_states"])[:, -k:, :].float())
            return lambda m, args, output: caught.__setitem__(i, hidden_of(output)[:, -k:, :].float())

        handles = [blocks[i].register_forward_pre_hook(catch(i), with_kwargs=True) if site == "input"
                   else blocks[i].register_forward_hook(catch(i)) for i in chosen]
        try:
            ids, mask, pos = left_pad(seqs[sl], pad_id, device)
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        out.append(torch.stack([caught[i] for i in chosen], dim=1).cpu())
    return torch.cat(out, dim=0)


@torch.no_grad()
def last_logits(model: Any, seqs: Sequence[Sequence[int]], *, pad_id: int, batch_size: int) -> Tensor:
    """(N, V) float32 next-token logits at each sequence's last position."""
    device = next(model.parameters()).device
    out = []
    for sl in _batches(len(seqs), batch_size):
        ids, mask, pos = left_pad(seqs[sl], pad_id, device)
        out.append(model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
                   .logits[:, -1, :].float().cpu())
    return torch.cat(out, dim=0)


def project_out(x: Tensor, unit: Tensor, coeff: float = 1.0) -> Tensor:
    """``x - coeff (x . r) r`` for a unit vector ``r``, in ``x``'s dtype."""
    r = unit.to(dtype=x.dtype, device=x.device)
    return x - coeff * (x @ r).unsqueeze(-1) * r


@contextlib.contextmanager
def directional_ablation(model: Any, direction: Tensor, *, coeff: float = 1.0) -> Iterator[None]:
    """Project ``direction`` out of the residual stream everywhere (Arditi et al.; Surgical): at every
    block's input, and at every attention and MLP output, so no block writes it back."""
    unit = direction.float() / direction.float().norm()
    handles = []
    for block in decoder_layers(model):
        def pre(m: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (project_out(args[0], unit, coeff), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": project_out(kwargs["hidden_states"], unit, coeff)}

        def post(m: Any, args: tuple, output: Any) -> Any:
            return with_hidden(output, project_out(hidden_of(output), unit, coeff))

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.self_attn.register_forward_hook(post))
        handles.append(block.mlp.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
