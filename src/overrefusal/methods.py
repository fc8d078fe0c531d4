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
    section: str | None = None  # its config section, whose keys an instance may override (schemas: $defs)
    intervention: bool = False  # an inference-time intervention (steering, ablation) on another method's model

    @property
    def trains(self) -> bool:
        """Whether it changes the weights (and so runs once per training seed)."""
        return bool(self.sft_data) or self.dcr


KINDS: dict[str, MethodKind] = {
    k.name: k
    for k in [
        MethodKind("base", (), False, False, "both", "the pretrained model, evaluated without alignment"),
        MethodKind("no_safety", ("sft_general",), False, False, "both", "SFT on general instructions only"),
        MethodKind("stl", ("sft_general", "sft_safety"), False, False, "both",
                   "Safety-Tuned LLaMAs: general + (harmful prompt, refusal) pairs"),
        MethodKind("stl_aug", ("sft_general", "sft_safety", "sft_aug"), False, False, "DCR",
                   "STL plus seemingly toxic prompts with helpful answers"),
        MethodKind("tbr", ("sft_general", "sft_safety"), True, False, "TBR",
                   "Think-Before-Refusal: a safety reflection precedes the refusal on a proportion gamma", "tbr"),
        MethodKind("dcr", ("sft_general", "sft_safety"), False, True, "DCR",
                   "Discernment via Contrastive Refinement (Circle loss at layer l), then STL", "dcr"),
        MethodKind("scans", (), False, False, "DCR",
                   "SCANS: per-query refusal steering (+/- alpha v) of another method's model (the paper: STL)",
                   "scans", intervention=True),
        MethodKind("surgical", (), False, False, "DCR",
                   "Surgical: a false-refusal direction ablated from another method's model (the paper: STL)",
                   "surgical", intervention=True),
    ]
}


def sweep_instances(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """dcr_sweep.settings as DCR method instances dcrsweep_<setting> (target dcr_sweep)."""
    settings = (config.get("dcr_sweep") or {}).get("settings") or {}
    return {f"dcrsweep_{name}": {"kind": "dcr", **over} for name, over in settings.items()}


def tune_grids(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """tune.grids with each grid's seeds resolved (default: the first training seed) and its instance names."""
    grids = (config.get("tune") or {}).get("grids") or {}
    return {g: {"seeds": [int(s) for s in grid.get("seeds") or config["seeds"][:1]],
                "methods": {f"tune_{g}_{name}": dict(spec) for name, spec in grid["settings"].items()}}
            for g, grid in grids.items()}


def tune_instances(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every tune grid setting as the method instance tune_<grid>_<setting> (target tune)."""
    return {m: spec for grid in tune_grids(config).values() for m, spec in grid["methods"].items()}


def method_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every method instance a run can build: the configured ones, the DCR sweep's and the tune grids'. The
    config itself is never extended with them."""
    return {**config["methods"], **sweep_instances(config), **tune_instances(config)}


def method_params(config: dict[str, Any], method: str) -> dict[str, Any]:
    """Plain-dict params of a method instance: kind, SFT data (and, where set, how many of each split's
    examples it trains on), and its stage settings."""
    methods = method_specs(config)
    if method not in methods:
        raise KeyError(f"unknown method {method!r}; configured methods: {', '.join(methods)}")
    spec = dict(methods[method])
    kind = KINDS[spec.pop("kind")]
    params: dict[str, Any] = {"kind": kind.name, "sft_data": list(kind.sft_data)}
    if spec.get("sft_n"):  # only when set, so instances without it keep the params they always had
        params["sft_n"] = dict(spec["sft_n"])
    if kind.section:
        section = config[kind.section]
        params[kind.section] = {**section, **{k: v for k, v in spec.items() if k in section}}
    params["sft"] = {**config["sft"], **spec.get("sft", {})}
    return copy.deepcopy(params)  # never aliases the config's nested dicts


def intervened_method(config: dict[str, Any], method: str) -> str | None:
    """The method whose checkpoint an intervention method runs on (None for any other kind)."""
    spec = method_specs(config)[method]
    kind = KINDS[spec["kind"]]
    return spec.get("apply_to", config[kind.section]["apply_to"]) if kind.intervention and kind.section else None
