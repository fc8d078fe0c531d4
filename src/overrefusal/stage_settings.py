"""The settings of each stage: config sections ``dcr``, ``scans``, ``surgical`` and ``sft``, one dataclass each.

Each key's type, bounds, choices and help live here only: the schema's sections are generated from these
classes (``overrefusal.config.load_schema``), and the stages build them from their params (``from_params``).
This module imports no torch, because config validation reads it before any job starts.

Defaults are for library callers (tests, bench/); the config states every value (the schema requires every
key). Where config.yaml's value differs from a default, tests/unit/test_settings.py lists why.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings, setting

POOLINGS: tuple[str, ...] = ("last", "mean")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adafactor")
PAPER_DEPTH = 32  # SCANS' layer ranges are for 32-block Llama-2-7B


@dataclass(frozen=True)
class DCRConfig(Settings):
    """DCR's contrastive stage, TRL-style: one field per setting, with its help, checked on creation.

    Built from the config's ``dcr`` section (a method instance's overrides merged in) by
    :meth:`from_params`; an unknown key is an error, not a silently ignored setting.
    """

    SECTION = "dcr"

    layer: int = setting("0-indexed decoder block whose output Circle loss refines; must be below the model depth",
                         minimum=0)
    steps: int = setting("optimiser steps (class-balanced batches)", 40, minimum=1)
    lr: float = setting("learning rate (Adafactor: relative to each weight's RMS)", 1e-4, exclusive_minimum=0)
    batch_size: int = setting("prompts per batch, both classes (a contrastive loss needs 2)", 32, minimum=2)
    margin: float = setting("Circle loss m: relaxation margin", 0.25, minimum=0, maximum=1)
    scale: float = setting("Circle loss gamma: scale factor", 64.0, exclusive_minimum=0)
    pooling: str = setting("last prompt token | mean over prompt tokens", "last", choices=POOLINGS)
    seed: int = setting("sampler, initial state and LM-batch seed", 0, minimum=0)
    max_length: int = setting("prompt tokens kept (left truncation)", 128, minimum=1)
    weight_decay: float = setting("the optimiser's weight decay", 0.0, minimum=0)
    train_embeddings: bool = setting("train the input embeddings with blocks 0..layer (the paper's trunk)", True)
    lm_weight: float = setting("0 is the paper; > 0 adds the full model's LM loss on general data (a variant)", 0.0,
                               minimum=0)
    optim: str = setting("adamw (the paper); adafactor keeps almost no optimiser state (7B/8B)", "adamw",
                         choices=OPTIMIZERS)
    save_steps: int = setting("checkpoint every n steps so a killed job resumes; 0: never", 0, minimum=0)


def default_steer_layers(depth: int) -> tuple[int, int]:
    start = 10 * depth // PAPER_DEPTH
    return start, max(start + 1, 20 * depth // PAPER_DEPTH)


def default_classify_layers(depth: int) -> tuple[int, int]:
    return 10 * depth // PAPER_DEPTH, depth


# The section's `apply_to` picks the checkpoint the workflow intervenes on (methods.intervened_method); it is
# the rule's input, not a setting of the fit.
INTERVENTION_KEYS = frozenset({"apply_to"})


@dataclass(frozen=True)
class ScansConfig(Settings):
    """SCANS settings (config section ``scans``); layer ranges ``None`` scale the paper's to the depth."""

    SECTION = "scans"
    CONSUMED_ELSEWHERE = INTERVENTION_KEYS

    n_anchors: int = setting("harmful and harmless anchors each (the paper: 64)", 64, minimum=2)
    alpha: float = setting("steering strength (the paper: 3.5)", 3.5, minimum=0)
    threshold: float | None = setting(
        "mean cosine at or above which a query is unsafe; null: midway between the anchor sets' mean cosines", 0.75,
        minimum=-1, maximum=1)
    steer_layers: tuple[int, int] | None = setting(
        "[start, end) decoder blocks steered; null scales the paper's range (32 blocks) to the model's depth", None,
        minimum=0)
    classify_layers: tuple[int, int] | None = setting(
        "[start, end) decoder blocks classifying; null scales the paper's range (32 blocks) to the model's depth",
        None, minimum=0)
    affirmative: str = setting("first answer token of the unsafe transition (the paper: Sure)", "Sure", min_length=1)
    seed: int = setting("anchor sampling seed", 0, minimum=0)
    batch_size: int = setting("prompts per forward pass", 32, minimum=1)
    max_length: int = setting("prompt tokens kept (left truncation)", 256, minimum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steer_layers", "classify_layers"):
            rng = getattr(self, name)
            if rng is not None:  # YAML gives a list; the type check above has made sure of two integers
                object.__setattr__(self, name, tuple(rng))

    def layer_ranges(self, depth: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(steering, classification) ``[start, end)`` ranges for a model of ``depth`` blocks."""
        return (self.steer_layers or default_steer_layers(depth),
                self.classify_layers or default_classify_layers(depth))


@dataclass(frozen=True)
class SurgicalConfig(Settings):
    """Surgical settings (config section ``surgical``), with the paper's defaults."""

    SECTION = "surgical"
    CONSUMED_ELSEWHERE = INTERVENTION_KEYS

    n_train: int = setting("train prompts per pool", 128, minimum=1)
    n_val: int = setting("validation prompts per pool", 32, minimum=1)
    ortho_lambda: float = setting("share of the true-refusal component projected out of r_or", 1.0, minimum=0)
    kl_threshold: float = setting("largest KL on harmless prompts a candidate may cause", 0.2, minimum=0)
    prune_layer_fraction: float = setting("last fraction of blocks never selected", 0.2, minimum=0,
                                          exclusive_maximum=1)
    positions: int | None = setting("trailing post-instruction positions searched; null: all", None, minimum=1)
    filter: bool = setting("keep only prompts the model treats as their pool says", True)
    min_prompts: int = setting("fewest prompts a pool part may keep after filtering", 8, minimum=1)
    ablation_coeff: float = setting("strength of the directional ablation at inference (1: the paper)", 1.0,
                                    minimum=0)
    seed: int = setting("pool split seed", 0, minimum=0)
    batch_size: int = setting("prompts per forward pass", 32, minimum=1)
    max_length: int = setting("prompt tokens kept (left truncation)", 256, minimum=1)


@dataclass(frozen=True)
class LoraSettings(Settings):
    """LoRA adapters of SFT (``sft.lora``), merged into the saved model."""

    SECTION = "sft.lora"

    enabled: bool = setting("train LoRA adapters instead of every weight")
    r: int = setting("adapter rank", minimum=1)
    alpha: float = setting("LoRA alpha (the update is scaled by alpha / r)", exclusive_minimum=0)
    dropout: float = setting("dropout on the adapters' input", minimum=0, maximum=1)
    target_modules: str | list[str] = setting(
        "modules given adapters: names, or all-linear", schema={"oneOf": [
            {"type": "string", "enum": ["all-linear"]}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]})


@dataclass(frozen=True)
class SFTConfig(Settings):
    """TRL SFTTrainer settings (config section ``sft``); every version-dependent TRL default is one of them.

    No defaults: the config states every value, and the values reach TRL unchanged (``sft.build_trainer``).
    """

    SECTION = "sft"

    lr: float = setting("learning rate", exclusive_minimum=0)
    epochs: float = setting("passes over the data (unless max_steps)", exclusive_minimum=0)
    max_steps: int = setting("optimiser steps; -1: train for `epochs`", minimum=-1)
    batch_size: int = setting("examples per device batch", minimum=1)
    grad_accum: int = setting("batches per optimiser step", minimum=1)
    warmup_steps: int = setting("learning-rate warm-up steps", minimum=0)
    lr_scheduler: str = setting("learning-rate schedule", choices=("linear", "cosine", "constant",
                                                                   "constant_with_warmup"))
    weight_decay: float = setting("the optimiser's weight decay", minimum=0)
    max_length: int = setting("tokens kept per example", minimum=1)
    completion_only_loss: bool = setting("loss on the completion only (false: the full sequence, STL's code)")
    bf16: bool = setting("bf16 autocast over float32 master weights")
    seed: int = setting("initialisation and data-order seed", minimum=0)
    logging_steps: int = setting("optimiser steps between logged losses", minimum=1)
    save_steps: int = setting("optimiser steps between checkpoints (a rerun resumes from the last)", minimum=1)
    lora: LoraSettings = setting("LoRA adapters (enabled: false trains every weight)")
    gradient_checkpointing: bool = setting("recompute activations in backward: less memory, more compute (7B/8B)")
    optim: str = setting("transformers optimiser (transformers 5's default adamw_torch_fused); adafactor saves "
                         "optimiser memory for 7B/8B", choices=("adamw_torch", "adamw_torch_fused", "adafactor", "sgd"))


# config section -> its settings; the schema's $defs of these names get their properties from the class
SECTIONS: dict[str, type[Settings]] = {"dcr": DCRConfig, "scans": ScansConfig, "surgical": SurgicalConfig,
                                       "sft": SFTConfig}
