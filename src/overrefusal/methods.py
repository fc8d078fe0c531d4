"""The alignment methods, by kind, and how a configured method instance resolves to plain params.

A method *instance* is a named entry under ``methods:`` in the config (e.g. ``dcr_stl`` or a sweep
variant ``dcr_stl_l1``); its ``kind`` says what it does. Params are merged from the kind's config
section and the instance's overrides into one plain dict, so Snakemake sees every value that
matters and reruns exactly what a change affects.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MethodKind:
    name: str
    sft_data: tuple[str, ...]  # which curated splits make up its SFT data
    reflections: bool  # TBR: a safety reflection precedes refusals
    dcr: bool  # DCR: a contrastive stage precedes SFT
    paper: str
    description: str
    options: frozenset[str] = frozenset({"sft"})  # keys a method instance of this kind may override
    intervention: bool = False  # an inference-time intervention (steering, ablation) on an unchanged model

    @property
    def trains(self) -> bool:
        """Whether it changes the weights (and so runs once per training seed)."""
        return bool(self.sft_data) or self.dcr


KINDS: dict[str, MethodKind] = {
    k.name: k
    for k in [
        MethodKind("base", (), False, False, "both", "the pretrained model, evaluated without alignment",
                   frozenset()),
        MethodKind("no_safety", ("sft_general",), False, False, "both", "SFT on general instructions only"),
        MethodKind("stl", ("sft_general", "sft_safety"), False, False, "both",
                   "Safety-Tuned LLaMAs: general + (harmful prompt, refusal) pairs"),
        MethodKind("stl_aug", ("sft_general", "sft_safety", "sft_aug"), False, False, "DCR",
                   "STL plus seemingly toxic prompts with helpful answers"),
        MethodKind("tbr", ("sft_general", "sft_safety"), True, False, "TBR",
                   "Think-Before-Refusal: a safety reflection precedes the refusal on a proportion gamma",
                   frozenset({"sft", "reflection", "gamma"})),
        MethodKind("dcr", ("sft_general", "sft_safety"), False, True, "DCR",
                   "Discernment via Contrastive Refinement (Circle loss at layer l), then STL",
                   frozenset({"sft", "layer", "steps", "margin", "scale", "pooling", "lr", "batch_size",
                              "train_embeddings", "lm_weight"})),
    ]
}


def method_params(config: dict[str, Any], method: str) -> dict[str, Any]:
    """Plain-dict params of a method instance: kind, SFT data, and its stage settings."""
    methods = config["methods"]
    if method not in methods:
        raise KeyError(f"unknown method {method!r}; configured methods: {', '.join(methods)}")
    spec = dict(methods[method])
    kind = KINDS[spec.pop("kind")]
    params: dict[str, Any] = {"kind": kind.name, "sft_data": list(kind.sft_data)}
    if kind.reflections:
        params["tbr"] = {**config["tbr"], **{k: v for k, v in spec.items() if k in config["tbr"]}}
    if kind.dcr:
        params["dcr"] = {**config["dcr"], **{k: v for k, v in spec.items() if k in config["dcr"]}}
    params["sft"] = {**config["sft"], **spec.get("sft", {})}
    return copy.deepcopy(params)  # never aliases the config's nested dicts
