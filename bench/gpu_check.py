"""GPU check: each GPU preset's stages at the paper models' real sizes, measured beside the memory estimate.

The README's promise that every DCR preset (Qwen2.5-1.5B, Qwen2.5-7B, LLaMA-3-8B) and TBR's full fine-tuning
of LLaMA-2-7B fit one 80 GB GPU rests on ``overrefusal.models.memory``, an estimate. This script measures it.
For each preset's model, smallest first, it builds the model from the ``config.json`` committed under
``bench/gpu_configs/<hub name>/`` (the hub's architecture; ``tests/unit/test_gpu_check.py`` holds the
dimensions equal to ``memory.ARCHITECTURES``) with seeded random weights (memory and speed depend on shapes,
dtypes and kernels, not on weight values; no hub access is needed), then runs three stages, each on a fresh
model that is freed before the next:

* **dcr**: the contrastive stage as ``overrefusal.dcr.train_dcr`` runs it: float32 weights, the tail frozen
  by ``freeze_after``, input embeddings trained unless ``dcr.train_embeddings`` is false, the preset's
  optimiser from ``make_optimizer``, class-balanced label batches from ``balanced_batches`` over the preset's
  contrastive split sizes, and each step ``layer_representation`` (the forward that stops at block ℓ) then
  ``circle_loss``, backward and the optimiser step. Prompts are random token ids, ``dcr.batch_size`` rows
  left-padded to ``dcr.max_length`` (the longest row fills it, the rest are shorter, as
  ``encode_prompts`` pads a batch): the widest batch the preset can produce (the README's table assumes
  64 tokens).
* **sft**: what ``overrefusal.sft.build_trainer`` configures, driven by a plain loop, because ``SFTTrainer``
  needs TRL and ``datasets``, which the GPU image lacks. The model in the dtype ``build_trainer`` loads it in
  (float32 for full fine-tuning; the compute dtype, bfloat16 on a GPU, under LoRA), the same
  ``peft.LoraConfig``, the optimiser class and arguments that ``transformers.Trainer`` picks for
  ``sft.optim`` (``Trainer.get_optimizer_cls_and_kwargs``), non-reentrant activation checkpointing when
  ``sft.gradient_checkpointing`` is set, and bf16 autocast when ``sft.bf16`` is. Each step is one micro-batch
  of ``sft.batch_size`` × ``sft.max_length`` tokens (right-padded, the longest row full) through forward with
  labels, backward and an optimiser step; ``sft.grad_accum`` such micro-batches make one optimiser step of the
  real run, which changes its time but not its peak. Not covered: TRL's own per-step metrics on the logits
  (token accuracy, entropy) and its collator.
* **generation**: one batch of ``eval.batch_size`` prompts of ``--gen-prompt-tokens`` tokens (left-padded,
  as ``overrefusal.generate`` batches them), greedy ``model.generate`` with the generation config
  ``generate`` builds, forced to the full ``eval.max_new_tokens`` (``min_new_tokens``; random weights would
  otherwise stop at a random EOS), in the compute dtype. A 2-token warm-up on the same batch comes first.

Per stage it records the peak memory over the stage's own start (on CUDA ``torch.cuda.max_memory_allocated``,
tensors only, plus ``max_memory_reserved``, what the caching allocator held; on the CPU the process's peak RSS
sampled every millisecond), ``overrefusal.models.memory``'s estimate for the same setting (``dcr_memory`` at
the batch's width, ``sft_memory``, ``generation_memory``), and seconds per step (warm-up steps excluded;
generation: per decoding step, and tokens per second). The CUDA context is in neither.

Before a model starts, its largest stage estimate is compared with the device's memory (on CUDA the card's
total, on the CPU the machine's RAM; ``--device-memory-gib`` overrides): one that does not fit stops the run
with an error naming the estimate and the device's memory, or with ``--skip-unfit`` is recorded as skipped
with that reason. A stage that runs out of memory anyway is recorded (``oom``, with its peak) and the next
stage starts. ``<out>.json`` and ``<out>.md`` are rewritten atomically after every stage, so a run killed
at its time limit keeps everything measured until then.

Sizing (the whole check must fit 8 minutes on one H100, so that a failed first try leaves time for a second):
1 warm-up and 2 timed steps per training stage (the optimiser's state, the last part of the peak, exists from
the first step), and one generation batch. By arithmetic, not measurement (no GPU has run this yet): the
largest float32 step is DCR's on LLaMA-3-8B (ℓ = 16: 17 of 32 blocks, 3.7e9 weights, 32 × 128 tokens, 3 × 2
FLOP per weight and token: 9e13 FLOP, 1.4 s at the H100 SXM's spec-sheet 67 TFLOP/s without TF32, which
torch leaves off); TBR's full fine-tuning step is 6.7e9 weights × 16 × 512 tokens × 8 FLOP (recomputation
included) = 4.4e14 FLOP under bf16 autocast, 0.45 s at the spec-sheet 989 TFLOP/s; a LoRA step is under
5e13. Even at a tenth of those rates the 7 training stages take about 2 minutes. Generation is 256 decoding steps
of one batch per model, bounded by per-step launch overhead rather than FLOPs. ``--budget-s`` (default 420 s)
stops starting new models after that much time, recording them as skipped, so the run ends inside 8 minutes
whatever the first models cost. Models run smallest first: a failure shows on the cheapest model.

``--tiny`` shrinks each architecture to 4 blocks of the same family (model_type, tied or untied head, the
same query/KV head ratio, the same MLP/hidden ratio, head dim 8, vocabulary 512), ℓ scaled to the depth, and
caps batch sizes and lengths (``TINY_CAPS``; the table's setting column shows what ran): the same code path,
every stage and function above, in seconds on a CPU (``tests/unit/test_gpu_check.py``). Its numbers test
the plumbing, not the estimate: at these sizes RSS is mostly the allocator's and the libraries' own.

Usage::

    PYTHONPATH=src python bench/gpu_check.py --device cuda --out results/bench/gpu_check
    PYTHONPATH=src python -m bench.gpu_check --tiny --device cpu --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "src", REPO):  # `python bench/gpu_check.py` on a machine where the package is not installed
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


from overrefusal import presets  # noqa: E402
from overrefusal.io import atomic_path, write_json  # noqa: E402
from overrefusal.methods import KINDS  # noqa: E402
from overrefusal.models.memory import (  # noqa: E402
    GIB,
    dcr_memory,
    generation_memory,
    sft_memory,
    total_params,
)

CONFIG_DIR = REPO / "bench" / "gpu_configs"
PRESETS: tuple[str, ...] = ("dcr_qwen2.5-1.5b", "dcr_qwen2.5-7b", "dcr_llama3-8b", "tbr")
STAGES: tuple[str, ...] = ("dcr", "sft", "generation")
TINY_LAYERS, TINY_HEAD_DIM, TINY_VOCAB = 4, 8, 512
# --tiny also caps the workload (section -> key -> cap): at the presets' own sizes a tiny run took minutes of a
# loaded 2-core CPU, most of it TBR's 16 x 512-token full fine-tuning step under bf16 autocast.
TINY_CAPS: dict[str, dict[str, int]] = {"dcr": {"batch_size": 8, "max_length": 32},
                                        "sft": {"batch_size": 2, "max_length": 64},
                                        "eval": {"batch_size": 4, "max_new_tokens": 8}}
TINY_PROMPT_TOKENS = 16
TARGET = "every stage runs, and its measured peak is at most its estimate"


class DoesNotFit(RuntimeError):
    """A model's estimated peak exceeds the device's memory; raised before the model is built."""


# ---- presets ----


def load_preset(name: str, root: Path = REPO) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.yaml with the preset's files merged over it, the preset's files alone)."""
    return presets.load_preset(name, root)


def config_dir(repo_id: str) -> Path:
    return CONFIG_DIR / repo_id.split("/")[-1]


def tiny_overrides(arch: dict[str, Any]) -> dict[str, Any]:
    """4 blocks of the same family: model_type and tying kept, the query/KV head ratio and MLP/hidden ratio
    kept, head dim 8 and a 512-token vocabulary, with BOS/EOS moved inside it."""
    heads = int(arch["num_attention_heads"])
    kv = int(arch.get("num_key_value_heads") or heads)
    ratio = heads // kv
    tiny_kv = 2 if ratio > 1 else 4
    hidden = ratio * tiny_kv * TINY_HEAD_DIM
    inter = max(8, round(hidden * int(arch["intermediate_size"]) / int(arch["hidden_size"]) / 8) * 8)
    out: dict[str, Any] = {"hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": TINY_LAYERS,
                           "num_attention_heads": ratio * tiny_kv, "num_key_value_heads": tiny_kv,
                           "vocab_size": TINY_VOCAB, "bos_token_id": 1, "eos_token_id": 2}
    if "max_window_layers" in arch:
        out["max_window_layers"] = TINY_LAYERS
    return out


def scaled_layer(layer: int, depth: int, new_depth: int) -> int:
    return min(new_depth - 1, max(0, round(layer * new_depth / depth)))


@dataclass
class Plan:
    """One preset's model and the settings of its stages, as the check will run them."""

    model: str  # the preset's model key, e.g. qwen2.5-7b
    preset: str
    repo_id: str
    config_path: Path
    arch: dict[str, Any]  # config.json, shrunk under --tiny
    overrides: dict[str, Any]  # what --tiny changed; empty: the committed config.json as it is
    real_params: int  # the real architecture's, for the order
    dcr: dict[str, Any] | None  # the preset's dcr section (layer scaled under --tiny); None: no DCR method
    contrastive: tuple[int, int]  # (seemingly toxic, toxic) split sizes the sampler balances
    sft: dict[str, Any]
    eval: dict[str, Any]
    prompt_tokens: int  # the generation batch's prompt width
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)


def plan_models(presets: Sequence[str] = PRESETS, *, tiny: bool = False, gen_prompt_tokens: int = 128,
                compute_bytes: int = 2, root: Path = REPO) -> list[Plan]:
    """Every preset's own hub model with its stages' settings and estimates, smallest model first."""
    plans = []
    for name in presets:
        cfg, own = load_preset(name, root)
        uses_dcr = any(KINDS[m["kind"]].dcr and m.get("enabled", True) for m in cfg["methods"].values())
        for key, spec in (own.get("models") or {}).items():
            if spec.get("enabled") is False or "repo_id" not in spec:
                continue
            path = config_dir(spec["repo_id"]) / "config.json"
            real = json.loads(path.read_text())
            overrides = tiny_overrides(real) if tiny else {}
            arch = {**real, **overrides}
            dcr = dict(cfg["dcr"]) if uses_dcr else None
            sections = {"dcr": dcr, "sft": dict(cfg["sft"]), "eval": dict(cfg["eval"])}
            if tiny:
                for sec, caps in TINY_CAPS.items():
                    if sections[sec] is not None:
                        sections[sec].update({k: min(int(sections[sec][k]), cap) for k, cap in caps.items()})
                if dcr is not None:
                    dcr["layer"] = scaled_layer(int(dcr["layer"]), int(real["num_hidden_layers"]), TINY_LAYERS)
            splits = (cfg.get("data", {}).get("real") or {}).get("splits") or {}
            contrastive = (int((splits.get("contrastive_seemingly") or {}).get("n", 1)),
                           int((splits.get("contrastive_toxic") or {}).get("n", 1)))
            plan = Plan(key, name, spec["repo_id"], path, arch, overrides, total_params(real), dcr, contrastive,
                        sections["sft"], sections["eval"],
                        min(gen_prompt_tokens, TINY_PROMPT_TOKENS) if tiny else gen_prompt_tokens)
            plan.estimates = estimates(plan, compute_bytes=compute_bytes)
            plans.append(plan)
    return sorted(plans, key=lambda p: p.real_params)


def estimates(plan: Plan, *, compute_bytes: int) -> dict[str, dict[str, float]]:
    out = {}
    if plan.dcr is not None:
        d = plan.dcr
        out["dcr"] = dcr_memory(plan.arch, layer=int(d["layer"]), optim=d["optim"],
                                train_embeddings=bool(d["train_embeddings"]), batch_size=int(d["batch_size"]),
                                tokens=int(d["max_length"]))
    out["sft"] = sft_memory(plan.arch, plan.sft)
    out["generation"] = generation_memory(plan.arch, batch_size=int(plan.eval["batch_size"]),
                                          prompt_tokens=plan.prompt_tokens,
                                          new_tokens=int(plan.eval["max_new_tokens"]), dtype_bytes=compute_bytes)
    return out


def stage_setting(plan: Plan, stage: str) -> str:
    if stage == "dcr":
        d = plan.dcr or {}
        trunk = "blocks 0..ℓ + embeddings" if d.get("train_embeddings") else "blocks 0..ℓ"
        return (f"ℓ={d.get('layer')}, batch {d.get('batch_size')} × {d.get('max_length')} tok, {d.get('optim')}, "
                f"{trunk}")
    if stage == "sft":
        s, lora = plan.sft, plan.sft["lora"]
        kind = f"LoRA r={lora['r']} {'+'.join(lora['target_modules'])}" if lora["enabled"] else "full"
        extras = [x for x, on in (("bf16 autocast", s.get("bf16")), ("checkpointing", s.get("gradient_checkpointing")))
                  if on]
        return (f"{kind}, batch {s['batch_size']} × {s['max_length']} tok, {s.get('optim', 'adamw_torch_fused')}"
                + "".join(f", {x}" for x in extras) + f", grad accum {s.get('grad_accum', 1)}")
    return (f"batch {plan.eval['batch_size']}, {plan.prompt_tokens} prompt + {plan.eval['max_new_tokens']} new tok, "
            "greedy")


# ---- measuring ----


class Meter:
    """Peak memory over the stage's start: CUDA's allocator counters, or the process's sampled RSS."""

    def __init__(self, device: Any) -> None:
        self.device, self.cuda = device, device.type == "cuda"
        self.peak = self.reserved = 0
        self._sampler: Any = None

    def __enter__(self) -> Self:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            from bench.bench_sft_memory import PeakRSS, _rss_bytes

            self.base = _rss_bytes()
            self._sampler = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
            self.reserved = torch.cuda.max_memory_reserved(self.device)
        else:
            self._sampler.__exit__(*exc)
            self.peak = self._sampler.peak - self.base


def timed(device: Any, fn: Callable[..., Any], *args: Any) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def free_memory(device: Any) -> float | None:
    """Collect and hand cached blocks back; on CUDA, the GiB still allocated (~0 unless something leaked)."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return torch.cuda.memory_allocated(device) / GIB
    return None  # the CPU allocator keeps no such count


def build_model(plan: Plan, dtype: Any, device: Any, seed: int) -> Any:
    """The architecture from its committed config.json, random weights initialised directly on the device in
    ``dtype``. A tiny config is built afresh from the merged fields: ``from_pretrained``'s keyword overrides
    would keep attributes derived at load time (LLaMA's head_dim 128 from the real hidden size)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if plan.overrides:
        config = AutoConfig.for_model(**plan.arch)
    else:
        config = AutoConfig.from_pretrained(str(plan.config_path.parent))
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def padded(batch: int, width: int, vocab: int, gen: Any, *, left: bool) -> tuple[Any, Any]:
    """Random ids, the first row ``width`` long and the others shorter (down to half), padded to ``width``."""
    import torch

    ids = torch.randint(3, vocab, (batch, width), generator=gen)
    lengths = width - torch.randint(0, width // 2 + 1, (batch,), generator=gen)
    lengths[0] = width
    pos = torch.arange(width).expand(batch, width)
    mask = (pos >= width - lengths[:, None]) if left else (pos < lengths[:, None])
    return ids.masked_fill(~mask, 0), mask.long()


def dcr_stage(plan: Plan, device: Any, *, steps: int, warmup: int, seed: int) -> dict[str, Any]:
    import torch

    from overrefusal.dcr import (
        SEEMINGLY_TOXIC,
        TOXIC,
        DCRConfig,
        balanced_batches,
        circle_loss,
        freeze_after,
        layer_representation,
        make_optimizer,
    )

    assert plan.dcr is not None
    cfg = DCRConfig.from_params(plan.dcr)
    t0 = time.perf_counter()
    model = build_model(plan, torch.float32, device, seed)  # train_dcr: updates vanish in bf16
    build_s = time.perf_counter() - t0
    freeze_after(model, cfg.layer)
    if not cfg.train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg.optim, params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_seem, n_tox = plan.contrastive
    labels = torch.tensor([SEEMINGLY_TOXIC] * n_seem + [TOXIC] * n_tox)
    batches = balanced_batches(labels, batch_size=cfg.batch_size, steps=warmup + steps, seed=cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []

    def step(ids: Any, mask: Any, y: Any) -> None:  # train_dcr's step, on synthetic prompts
        emb = layer_representation(model, ids.to(device), mask.to(device), cfg.layer, cfg.pooling)
        loss = circle_loss(emb, y.to(device), m=cfg.margin, gamma=cfg.scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    model.train()
    times = []
    for batch in batches:
        ids, mask = padded(cfg.batch_size, cfg.max_length, int(plan.arch["vocab_size"]), gen, left=True)
        times.append(timed(device, step, ids, mask, labels[batch]))
    return {"dtype": "float32", "build_seconds": build_s, "step_seconds": times,
            "trained_params": sum(p.numel() for p in params), "loss_finite": all(map(math.isfinite, losses)),
            **({"note": f"lm_weight {cfg.lm_weight} (the LM-loss variant) is not run"} if cfg.lm_weight else {})}


def enable_checkpointing(model: Any) -> None:
    """What ``Trainer`` does for ``activation_checkpointing`` (non-reentrant, as ``sft.build_trainer`` asks),
    through the older name on a transformers that predates the new one."""
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def sft_stage(plan: Plan, device: Any, compute_dtype: Any, *, steps: int, warmup: int, seed: int) -> dict[str, Any]:
    import torch
    from transformers import Trainer, TrainingArguments

    sft, lora = plan.sft, plan.sft["lora"]
    dtype = compute_dtype if lora["enabled"] else torch.float32  # as sft.build_trainer loads the model
    t0 = time.perf_counter()
    model = build_model(plan, dtype, device, seed)
    if lora["enabled"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                 target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    build_s = time.perf_counter() - t0
    if sft.get("gradient_checkpointing"):
        enable_checkpointing(model)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        args = TrainingArguments(output_dir=tmp, optim=sft.get("optim", "adamw_torch_fused"), learning_rate=sft["lr"],
                                 weight_decay=sft.get("weight_decay", 0.0), use_cpu=device.type == "cpu",
                                 report_to=[])
        opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = opt_cls(params, **opt_kwargs)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []

    def step(ids: Any, mask: Any) -> None:  # one micro-batch as the Trainer runs it (accelerate's autocast)
        labels = ids.masked_fill(mask == 0, -100)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(sft.get("bf16"))):
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    model.train()
    times = []
    for _ in range(warmup + steps):
        ids, mask = padded(int(sft["batch_size"]), int(sft["max_length"]), int(plan.arch["vocab_size"]), gen,
                           left=False)
        times.append(timed(device, step, ids, mask))
    frozen = sorted({_dtype(p) for p in model.parameters() if not p.requires_grad})
    trained = sorted({_dtype(p) for p in params})
    return {"dtype": "/".join(frozen) + " frozen, " + "/".join(trained) + " trained" if frozen else "/".join(trained),
            "build_seconds": build_s, "step_seconds": times, "trained_params": sum(p.numel() for p in params),
            "optimizer": f"{opt_cls.__module__}.{opt_cls.__name__}", "loss_finite": all(map(math.isfinite, losses))}


def generation_stage(plan: Plan, device: Any, compute_dtype: Any, *, seed: int) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig

    t0 = time.perf_counter()
    model = build_model(plan, compute_dtype, device, seed).eval()
    build_s = time.perf_counter() - t0
    batch, new, prompt_tokens = int(plan.eval["batch_size"]), int(plan.eval["max_new_tokens"]), plan.prompt_tokens
    ids, mask = padded(batch, prompt_tokens, int(plan.arch["vocab_size"]), torch.Generator().manual_seed(seed),
                       left=True)
    ids, mask = ids.to(device), mask.to(device)
    eos = plan.arch.get("eos_token_id")

    def run(n: int) -> Any:
        cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                               eos_token_id=eos)
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)

    out: list[Any] = []
    warm = timed(device, run, 2)
    seconds = timed(device, lambda: out.append(run(new)))
    produced = int(out[0].shape[1]) - prompt_tokens
    return {"dtype": str(compute_dtype).removeprefix("torch."), "build_seconds": build_s, "warmup_seconds": warm,
            "seconds": seconds, "new_tokens": produced, "step_seconds": [seconds / max(produced, 1)],
            "tokens_per_second": batch * produced / seconds}


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")




# ---- the run ----


def device_info(device: Any, override_gib: float | None) -> dict[str, Any]:
    import accelerate
    import peft
    import torch
    import transformers

    from bench.suite import machine_info

    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__,
                            "transformers": transformers.__version__, "peft": peft.__version__,
                            "python": platform.python_version(),
                            "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / GIB, cuda=torch.version.cuda,
                    multiprocessors=props.multi_processor_count)
    else:
        m = machine_info()
        info.update(name=m["cpu_model"], logical_cores=m["logical_cores"],
                    memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB)
    info["memory_source"] = "total" if override_gib is None else "--device-memory-gib"
    if override_gib is not None:
        info["detected_memory_gib"], info["memory_gib"] = info["memory_gib"], override_gib
    # The project is tested at its pins; a device image with other versions says so in the output.
    found = {"transformers": transformers.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__}
    req = REPO / "requirements.txt"
    pinned = re.findall(r"^(transformers|peft|accelerate)==(\S+)$", req.read_text() if req.is_file() else "",
                        re.MULTILINE)
    info["pins"] = {name: {"pinned": version, "found": found[name]} for name, version in pinned}
    return info


def check_fits(plan: Plan, memory_gib: float, device_name: str, stages: Sequence[str]) -> None:
    need = {s: e["total_gib"] for s, e in plan.estimates.items() if s in stages}
    if not need:
        return
    stage = max(need, key=lambda s: need[s])
    if need[stage] > memory_gib:
        raise DoesNotFit(f"{plan.model} ({plan.preset}): the {stage} stage's estimate of {need[stage]:.2f} GiB "
                         f"exceeds the device's memory, {memory_gib:.2f} GiB ({device_name}); not started")


def run_model(plan: Plan, device: Any, compute_dtype: Any, *, stages: Sequence[str], steps: int, warmup: int,
              seed: int, on_stage: Callable[[], None], record: dict[str, Any]) -> None:
    import torch

    oom_errors: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)
    for stage in stages:
        row: dict[str, Any] = {"stage": stage, "setting": stage_setting(plan, stage)}
        record["stages"].append(row)
        if stage == "dcr" and plan.dcr is None:
            row.update(status="not run", reason="the preset enables no DCR method")
            on_stage()
            continue
        est = plan.estimates[stage]
        row.update(estimate_gib=est["total_gib"], estimate=est)
        meter = Meter(device)
        try:
            with meter:
                if stage == "dcr":
                    got = dcr_stage(plan, device, steps=steps, warmup=warmup, seed=seed)
                elif stage == "sft":
                    got = sft_stage(plan, device, compute_dtype, steps=steps, warmup=warmup, seed=seed)
                else:
                    got = generation_stage(plan, device, compute_dtype, seed=seed)
        except oom_errors as exc:
            row.update(status="oom", error=str(exc)[:600])
        except Exception as exc:  # noqa: BLE001 - one broken stage must not cost the other stages' measurements
            row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:600],
                       traceback=traceback.format_exc()[-3000:])
        else:
            timed_steps = got["step_seconds"] if stage == "generation" else got["step_seconds"][warmup:]
            row.update(status="ok", **got, seconds_per_step=sum(timed_steps) / max(len(timed_steps), 1))
        row["peak_gib"] = meter.peak / GIB
        if device.type == "cuda":
            row["reserved_gib"] = meter.reserved / GIB
        row["peak_over_estimate"] = row["peak_gib"] / est["total_gib"] if est["total_gib"] else None
        row["within_estimate"] = row["status"] == "ok" and row["peak_gib"] <= est["total_gib"]
        row["left_allocated_gib"] = free_memory(device)
        error = f"; {row['error']}" if "error" in row else ""
        print(f"    {stage}: {row['status']}, peak {row['peak_gib']:.3f} GiB, estimate {est['total_gib']:.3f} GiB, "
              f"{row.get('seconds_per_step', float('nan')):.3g} s/step{error}", flush=True)
        on_stage()


def render_markdown(result: dict[str, Any]) -> str:
    dev = result["device"]
    cuda = dev["device"].startswith("cuda")
    unit, scale = ("MiB", 1024.0) if result["tiny"] else ("GiB", 1.0)  # tiny peaks are a few MiB
    peak = f"peak allocated ({unit})" if cuda else f"peak RSS added ({unit})"
    reserved = f" reserved ({unit}) |" if cuda else ""
    memory = f"{dev['memory_gib']:.1f} GiB" + ("" if dev["memory_source"] == "total" else f", {dev['memory_source']}")
    lines = [
        "# GPU check: measured peak memory and step time beside `overrefusal.models.memory`'s estimate", "",
        f"Device: {dev.get('name')} ({memory}); torch {dev['torch']}, transformers {dev['transformers']}, "
        f"peft {dev['peft']}" + (f", CUDA {dev['cuda']}" if cuda else "") + f"; {dev['date']}.",
        f"{result['steps']} timed step(s) after {result['warmup']} warm-up per training stage; one generation batch. "
        + ("**Tiny configs** (4 blocks of each family, capped batches): the code path, not the estimate, is what "
           "this run checks." if result["tiny"] else "The hub architectures, random weights."),
        "", (f"| model | preset | stage | setting | dtype | {peak} |{reserved} estimate ({unit}) | peak / estimate | "
             "s / step | status |"),
        "|---|---|---|---|---|---|" + ("---|" if cuda else "") + "---|---|---|---|",
    ]
    blank = "– | " * (7 if cuda else 6)
    for m in result["models"]:
        head = f"| {m['model']} | {m['preset']} | "
        if not m["stages"]:
            lines.append(head + "– | " + blank + f"{m['status']}: {m.get('reason', '')} |")
        for st in m["stages"]:
            if "peak_gib" not in st:
                lines.append(head + f"{st['stage']} | " + blank + f"{st['status']}: {st.get('reason', '')} |")
                continue
            ratio = "–" if st.get("peak_over_estimate") is None else f"{st['peak_over_estimate']:.2f}"
            sps = f"{st['seconds_per_step']:.3g}" if "seconds_per_step" in st else "–"
            status = st["status"] if st["status"] != "ok" or st["within_estimate"] else "ok, above estimate"
            if "error" in st:
                status += ": " + st["error"].splitlines()[0].replace("|", "/")[:120]
            res = f" {_num(st['reserved_gib'] * scale)} |" if cuda else ""
            lines.append(head + f"{st['stage']} | {st['setting']} | {st.get('dtype', '–')} | "
                         f"{_num(st['peak_gib'] * scale)} |{res} {_num(st['estimate_gib'] * scale)} | {ratio} | "
                         f"{sps} | {status} |")
    verdict = {True: "met", False: "missed", None: "not judged (tiny configs or no GPU)"}[result["meets_target"]]
    lines += ["", (f"Target: {result['target']}: {verdict}. Generation's s / step is per decoding step of the "
                   "whole batch. The CUDA context is in neither column."), "", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def render_plan(plans: Sequence[Plan], info: dict[str, Any], stages: Sequence[str]) -> str:
    """Markdown: what a run would do and the estimates it would compare with, before any device time."""
    lines = [f"Estimates against {info.get('name')} ({info['memory_gib']:.1f} GiB):", "",
             "| model | preset | stage | setting | estimate (GiB) | fits |", "|---|---|---|---|---|---|"]
    for plan in plans:
        for stage in stages:
            if stage not in plan.estimates:
                continue
            gib = plan.estimates[stage]["total_gib"]
            lines.append(f"| {plan.model} | {plan.preset} | {stage} | {stage_setting(plan, stage)} | {_num(gib)} | "
                         f"{'yes' if gib <= info['memory_gib'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}"


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    write_json(out.with_name(out.name + ".json"), result)
    with atomic_path(out.with_name(out.name + ".md")) as tmp:
        tmp.write_text(render_markdown(result), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()  # the budget counts the heavy imports below too
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    models = [p.model for p in plan_models()]
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), cuda, or cpu")
    ap.add_argument("--models", nargs="+", choices=models, metavar="MODEL",
                    help=f"a subset, run in size order ({', '.join(models)})")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--steps", type=int, default=2, help="timed steps per training stage")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them (memory still counted)")
    ap.add_argument("--out", type=Path, default=Path("results/bench/gpu_check"), help="writes OUT.json and OUT.md")
    ap.add_argument("--tiny", action="store_true", help="4-block configs of each family: the code path on a CPU")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                    help="compute dtype of LoRA's frozen base and of generation (compute.dtype; auto: bfloat16 on "
                         "a GPU, float32 on the CPU)")
    ap.add_argument("--gen-prompt-tokens", type=int, default=128, help="prompt width of the generation batch")
    ap.add_argument("--device-memory-gib", type=float, default=None,
                    help="the memory a model must fit in (default: the device's total)")
    ap.add_argument("--skip-unfit", action="store_true",
                    help="record a model that would not fit as skipped and go on, instead of stopping")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no new model after this many seconds (recorded as skipped)")
    ap.add_argument("--plan", action="store_true",
                    help="print each model's stages, settings and estimates, build nothing, write nothing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    cli = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(cli)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")

    import torch

    from overrefusal.models.loading import resolve_device, resolve_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    # Imported before any stage is metered: on the CPU a first import would count as that stage's memory.
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM, GenerationConfig, Trainer  # noqa: F401

    import overrefusal.dcr  # noqa: F401

    device = torch.device(resolve_device(args.device))
    compute_dtype = resolve_dtype(args.dtype, device.type)
    plans = [p for p in plan_models(tiny=args.tiny, gen_prompt_tokens=args.gen_prompt_tokens,
                                    compute_bytes=torch.tensor([], dtype=compute_dtype).element_size())
             if not args.models or p.model in args.models]
    info = device_info(device, args.device_memory_gib)
    if args.plan:
        print(render_plan(plans, info, [s for s in STAGES if s in args.stages]), end="")
        return 0
    result: dict[str, Any] = {
        "command": "python bench/gpu_check.py" + ("" if not cli else " " + shlex.join(cli)), "tiny": args.tiny,
        "steps": args.steps, "warmup": args.warmup, "gen_prompt_tokens": args.gen_prompt_tokens,
        "compute_dtype": str(compute_dtype).removeprefix("torch."), "device": info, "target": TARGET,
        "meets_target": None, "models": [],
    }
    out: Path = args.out

    def save() -> None:
        result["seconds"] = time.perf_counter() - t_start
        rows = [s for m in result["models"] for s in m["stages"] if s["status"] != "not run"]
        judged = device.type == "cuda" and not args.tiny
        unrun = any(m["status"] != "ok" for m in result["models"])
        result["meets_target"] = (not unrun and all(s["within_estimate"] for s in rows)) if judged else None
        write_outputs(out, result)

    for plan in plans:
        record: dict[str, Any] = {
            "model": plan.model, "preset": plan.preset, "repo_id": plan.repo_id,
            "config": str(plan.config_path.relative_to(REPO)), "tiny_overrides": plan.overrides,
            "params_b": total_params(plan.arch) / 1e9,
            "max_estimate_gib": max((e["total_gib"] for s, e in plan.estimates.items() if s in args.stages),
                                    default=0.0),
            "status": "ok", "stages": [],
        }
        result["models"].append(record)
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            record.update(status="skipped", reason=f"time budget: {elapsed:.0f} s > --budget-s {args.budget_s:g}")
            save()
            continue
        try:
            check_fits(plan, info["memory_gib"], str(info.get("name")), args.stages)
        except DoesNotFit as exc:
            record.update(status="skipped" if args.skip_unfit else "refused", reason=str(exc))
            save()
            if not args.skip_unfit:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"skipped: {exc}", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"{plan.model} ({plan.preset}, {record['params_b']:.3g}B parameters) ...", flush=True)
        run_model(plan, device, compute_dtype, stages=[s for s in STAGES if s in args.stages], steps=args.steps,
                  warmup=args.warmup, seed=args.seed, on_stage=save, record=record)
        record["seconds"] = time.perf_counter() - t0
        save()
    save()
    print(f"wrote {out}.json and {out}.md; {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
