"""Refusal-probability tracking during DCR's contrastive stage and safety SFT.

The quantity is the *refusal score* of Arditi et al. and of Surgical (andyrdt/refusal_direction,
mainlp/False-Refusal-Mitigation ``select_direction.py:refusal_score``), which DCR's
"targeted refusal probability" curves also track: at the last prompt position, i.e. where the
first answer token is predicted,

    P(R) = Σ_{t ∈ refusal tokens} softmax(z)[t]
    refusal log-odds = log P(R) − log(1 − P(R))

averaged over three probe sets: *seemingly toxic* (benign prompts that share trigger words with
harmful ones), *toxic*, and *general* prompts. Both log-terms come from one ``log_softmax``
(``logsumexp`` over the refusal ids and over the complement), so the value stays finite and exact
when P(R) is within float rounding of 0 or 1.

Refusal tokens are derived from the tokenizer at run time, never hard-coded
(:func:`refusal_token_ids`). The rule: take these refusal phrases, in this order,

1. the refusals the safety data teaches (the ``response`` of every ``sft_safety`` record: the
   toy world's "sorry , i cannot help with that .", the real data's refusals);
2. the JailbreakBench refusal phrases of the ``jbb_substring_v1`` judge ("I'm sorry", "I cannot",
   "As an AI", ...), the list Arditi and Surgical take their refusal tokens from;
3. the apology branch of the ``xstest_strmatch_v1`` judge ("sorry", "i'm sorry", "i apologize", ...);

tokenise each phrase on its own (no special tokens) and keep its *first* token, unless that token
is a special token or the unknown token (a phrase the vocabulary cannot spell says nothing about
the model). On Llama-3 and Qwen2.5 this gives 'I' and 'As', which is Arditi's hand-picked set for
Qwen ([40, 2121]) and a superset of the one for Llama-3 ([40]). XSTest's second branch ("no,",
"it is not ...") is left out on purpose: "no" and "it" open ordinary answers. The same token set
is used for every method of a run, so the curves of different methods are comparable.

A TBR model that reflects first opens its answer with the reflection tag, not a refusal token, so
for TBR this first-token score measures *direct* refusals only; its reflected refusals come later
in the answer (see the generations and the judged evaluations for those).

Tracking only reads the model: it runs under ``torch.no_grad`` in eval mode (no dropout, hence no
random numbers drawn), restores the previous train/eval mode, and uses its own tokenizer instance,
so the trained weights and the training losses are bit-identical with and without it (tested).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import TrainerCallback

from .io import read_jsonl, write_json
from .judges.strmatch import JBB_REFUSAL_SUBSTRINGS, XSTEST_APOLOGY_PREFIXES
from .prompting import Template, encode_prompt
from .records import user_text

PROBE_SETS: tuple[str, ...] = ("seemingly_toxic", "toxic", "general")
KERNEL_QUANTITY = ("DCR's normalised eNTK on first-answer-token logits, K~(x',x) = ||K(x',x)||_F / ||K(x',x')||_F, "
                   "3x3 probe-set block means (overrefusal.analysis.entk)")


@dataclass(frozen=True)
class KernelTracking:
    """eNTK over training steps (DCR's ||K_t|| curves): ``n_per_class`` prompts of each probe set, at step 0,
    every ``every_steps`` optimiser steps and at the last step."""

    n_per_class: int
    every_steps: int
    entk: Any  # analysis.entk.EntkConfig (imported lazily: tracking without it needs no torch.func)
QUANTITY = "refusal_logodds"
DEFINITION = ("log P(R) - log(1 - P(R)), P(R) = sum over the refusal token ids of softmax(logits) at the last "
              "prompt position (the first answer token); averaged over each probe set")
TOKEN_RULE = ("first token (tokenizer, no special tokens) of each refusal phrase: the sft_safety refusals, then "
              "the jbb_substring_v1 phrases, then the xstest_strmatch_v1 apology prefixes; special and unknown "
              "tokens dropped")
SIDECAR = "refusal_tracking.json"  # kept next to the Trainer's checkpoints, for resumed runs


# ----------------------------------------------------------------------------------------------
# Refusal tokens
# ----------------------------------------------------------------------------------------------


def refusal_phrases(trained_refusals: Iterable[str]) -> list[tuple[str, str]]:
    """(phrase, source) pairs in rule order, duplicates removed (first source wins)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    groups = [("sft_safety", trained_refusals), ("jbb_substring_v1", JBB_REFUSAL_SUBSTRINGS),
              ("xstest_strmatch_v1", XSTEST_APOLOGY_PREFIXES)]
    for source, phrases in groups:
        for phrase in phrases:
            p = phrase.strip()
            if p and p not in seen:
                seen.add(p)
                out.append((p, source))
    return out


@dataclass
class RefusalTokens:
    ids: list[int]
    table: list[dict[str, Any]]  # one row per kept id: id, token, phrases that start with it
    skipped: list[dict[str, str]] = field(default_factory=list)  # phrases whose first token was dropped


def refusal_token_ids(tokenizer: Any, phrases: Sequence[tuple[str, str]]) -> RefusalTokens:
    """The refusal token ids by :data:`TOKEN_RULE`; raise if none survives."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    rows: dict[int, dict[str, Any]] = {}
    skipped: list[dict[str, str]] = []
    for phrase, source in phrases:
        ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        if not ids:
            skipped.append({"phrase": phrase, "source": source, "reason": "tokenises to nothing"})
            continue
        tid = int(ids[0])
        tok = tokenizer.convert_ids_to_tokens(tid)
        if tid == unk or tid in special:
            skipped.append({"phrase": phrase, "source": source, "reason": f"first token {tok!r} is special/unknown"})
            continue
        row = rows.setdefault(tid, {"id": tid, "token": tok, "phrases": []})
        row["phrases"].append(phrase)
    if not rows:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(f"no refusal token: the first token of every refusal phrase is special or unknown to "
                         f"tokenizer {name!r} ({len(phrases)} phrases tried)")
    table = sorted(rows.values(), key=lambda r: r["id"])
    return RefusalTokens(ids=[r["id"] for r in table], table=table, skipped=skipped)


def refusal_logodds(logits: Tensor, refusal_ids: Sequence[int] | Tensor) -> Tensor:
    """(B, V) next-token logits -> (B,) ``log P(R) - log(1 - P(R))`` in float32 or wider."""
    logp = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    mask = torch.zeros(logp.shape[-1], dtype=torch.bool, device=logp.device)
    mask[torch.as_tensor(list(refusal_ids) if not isinstance(refusal_ids, Tensor) else refusal_ids,
                         dtype=torch.long, device=logp.device)] = True
    if bool(mask.all()):
        raise ValueError("every vocabulary id is a refusal token; log(1 - P(R)) is undefined")
    return torch.logsumexp(logp[:, mask], dim=-1) - torch.logsumexp(logp[:, ~mask], dim=-1)


# ----------------------------------------------------------------------------------------------
# Probe sets
# ----------------------------------------------------------------------------------------------


@dataclass
class ProbeSet:
    name: str
    source: str
    ids: list[str]
    texts: list[str]


def load_probe_set(name: str, path: str | os.PathLike[str], n_probe: int | None,
                   key: str = "tracking.n_probe") -> ProbeSet:
    """The first ``n_probe`` rows (None: all) of a record file (``prompt`` [+ ``input``]) or a capability file
    (``question``). A file with fewer rows is an error naming ``key``, the config key ``n_probe`` comes from."""
    rows = read_jsonl(path)
    if n_probe is not None:
        if n_probe > len(rows):
            raise ValueError(f"{key} = {n_probe} but probe set {name} ({path}) holds {len(rows)} prompts")
        rows = rows[:n_probe]
    texts: list[str] = []
    for i, r in enumerate(rows):
        if isinstance(r.get("prompt"), str):
            texts.append(user_text(r))  # type: ignore[arg-type]
        elif isinstance(r.get("question"), str):
            texts.append(r["question"])
        else:
            raise ValueError(f"{path}: line {i + 1}: probe rows need a 'prompt' or a 'question' field")
    if not texts:
        raise ValueError(f"{path}: probe set {name!r} is empty")
    return ProbeSet(name=name, source=str(path), ids=[str(r.get("id", i)) for i, r in enumerate(rows)], texts=texts)


# ----------------------------------------------------------------------------------------------
# The tracker
# ----------------------------------------------------------------------------------------------


class RefusalTracker:
    """Measures the refusal log-odds of a model on fixed probe sets and keeps the records.

    Prompts are rendered and encoded as generation encodes them (chat template without extra
    special tokens, Alpaca/plain with them), truncated from the left to ``max_length``,
    left-padded, with position ids counted over real tokens; the logits at the last position are
    the ones that pick the first answer token.
    """

    def __init__(self, tokenizer: Any, probe_sets: Sequence[ProbeSet], refusal: RefusalTokens, *,
                 template: Template, max_length: int = 256, batch_size: int = 64,
                 kernel: KernelTracking | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.kernel = kernel
        self.kernel_records: list[dict[str, Any]] = []
        self.tokenizer = tokenizer
        self.probe_sets = list(probe_sets)
        self.refusal = refusal
        self.template = template
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self.encoded: dict[str, list[list[int]]] = {}
        for ps in self.probe_sets:
            enc = []
            for text in ps.texts:
                enc.append(encode_prompt(tokenizer, text, template)[-max_length:])
            self.encoded[ps.name] = enc
        self.records: list[dict[str, Any]] = []
        self.resumed_from_step: int | None = None

    # -- measurement -------------------------------------------------------------------------

    @torch.no_grad()
    def measure(self, model: torch.nn.Module) -> dict[str, list[float]]:
        """Per-prompt refusal log-odds for each probe set (reads the model only)."""
        from .dcr import position_ids_from_mask

        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            out: dict[str, list[float]] = {}
            for name, seqs in self.encoded.items():
                vals: list[float] = []
                for start in range(0, len(seqs), self.batch_size):
                    chunk = seqs[start:start + self.batch_size]
                    width = max(len(s) for s in chunk)
                    ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                    mask = torch.zeros((len(chunk), width), dtype=torch.long)
                    for i, s in enumerate(chunk):
                        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
                        mask[i, width - len(s):] = 1
                    ids, mask = ids.to(device), mask.to(device)
                    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                                   use_cache=False).logits[:, -1, :]
                    vals.extend(float(v) for v in refusal_logodds(logits, self.refusal.ids).cpu())
                out[name] = vals
            return out
        finally:
            model.train(was_training)

    def record_kernel(self, model: torch.nn.Module, step: int) -> None:
        """The eNTK between the probe sets' first ``kernel.n_per_class`` prompts (``analysis.entk``), in eval
        mode; it reads the model only (parameters bit-identical, no random numbers drawn by the jvp/exact/fd
        estimators)."""
        from .analysis.entk import entk_report

        assert self.kernel is not None
        was_training = model.training
        model.eval()
        try:
            sets = {ps.name: ps.texts[:self.kernel.n_per_class] for ps in self.probe_sets}
            rep = entk_report(model, self.tokenizer, self.template, sets, self.kernel.entk)
        finally:
            model.train(was_training)
        self.kernel_records = [r for r in self.kernel_records if r["step"] != step]
        # "auto" resolves per measurement (by the Jacobian's size), so each record names the estimator that ran
        self.kernel_records.append({"step": int(step), "block_means": rep["block_means"],
                                    "seconds": round(rep["seconds"], 3), "estimator": rep["config"]["estimator"]})

    @property
    def kernel_steps(self) -> list[int]:
        return sorted(r["step"] for r in self.kernel_records)

    def record(self, model: torch.nn.Module, step: int, *, epoch: float | None = None,
               final: bool = False) -> dict[str, Any]:
        """Measure and append one record per probe set; returns {set: mean log-odds}. With kernel tracking,
        the kernel too at step 0, every ``kernel.every_steps`` and at the ``final`` step."""
        if self.kernel is not None and (final or step % self.kernel.every_steps == 0):
            self.record_kernel(model, step)
        values = self.measure(model)
        self.records = [r for r in self.records if r["step"] != step]
        means: dict[str, Any] = {}
        for name, vals in values.items():
            mean = sum(vals) / len(vals)
            var = sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)
            probs = [1.0 / (1.0 + math.exp(-v)) for v in vals]
            self.records.append({
                "step": int(step), "epoch": None if epoch is None else float(epoch), "probe_set": name,
                "n": len(vals), "mean_logodds": mean, "std_logodds": math.sqrt(var) if len(vals) > 1 else 0.0,
                "mean_p_refusal": sum(probs) / len(probs), "logodds": vals,
            })
            means[name] = mean
        return means

    @property
    def steps(self) -> list[int]:
        return sorted({r["step"] for r in self.records})

    # -- persistence ---------------------------------------------------------------------------

    def save_sidecar(self, directory: str | os.PathLike[str]) -> None:
        write_json(Path(directory) / SIDECAR, {"records": self.records, "kernel_records": self.kernel_records})

    def load_sidecar(self, directory: str | os.PathLike[str], up_to_step: int) -> int:
        """Records of an interrupted run up to ``up_to_step`` (the checkpoint resumed from); count kept."""
        path = Path(directory) / SIDECAR
        if not path.is_file():
            self.records = []
            return 0
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            rows, kernel_rows = doc["records"], doc.get("kernel_records", [])
        except (json.JSONDecodeError, KeyError):
            rows, kernel_rows = [], []
        self.records = [r for r in rows if r["step"] <= up_to_step]
        self.kernel_records = [r for r in kernel_rows if r["step"] <= up_to_step]
        return len(self.records)

    def to_json(self, *, stage: str, model: str, method: str, every_steps: int, total_steps: int,
                extra: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "enabled": True,
            "stage": stage,
            "model": model,
            "method": method,
            **({"seed": seed} if seed is not None else {}),
            "quantity": QUANTITY,
            "definition": DEFINITION,
            "position": "last_prompt_token",
            "template": self.template,
            "every_steps": every_steps,
            "total_steps": total_steps,
            "resumed_from_step": self.resumed_from_step,
            "refusal_token_rule": TOKEN_RULE,
            "refusal_tokens": self.refusal.table,
            "skipped_phrases": self.refusal.skipped,
            "probe_sets": {ps.name: {"source": ps.source, "n": len(ps.texts), "ids": ps.ids} for ps in self.probe_sets},
            "records": sorted(self.records, key=lambda r: (r["step"], PROBE_SETS.index(r["probe_set"])
                                                          if r["probe_set"] in PROBE_SETS else len(PROBE_SETS))),
            **({"kernel": {"quantity": KERNEL_QUANTITY, "n_per_class": self.kernel.n_per_class,
                           "every_steps": self.kernel.every_steps, "config": asdict(self.kernel.entk),
                           "records": sorted(self.kernel_records, key=lambda r: r["step"])}}
               if self.kernel is not None else {}),
            **(extra or {}),
        }


def disabled_json(*, stage: str, model: str, method: str, seed: int | None = None) -> dict[str, Any]:
    """What a run writes when ``tracking.enabled`` is false (the rule's output must still exist)."""
    return {"schema_version": 1, "enabled": False, "stage": stage, "model": model, "method": method,
            **({"seed": seed} if seed is not None else {}), "quantity": QUANTITY, "records": []}


def kernel_tracking(params: dict[str, Any] | None) -> KernelTracking | None:
    """``tracking.kernel`` of the config as a :class:`KernelTracking` (None when absent or disabled)."""
    if not params or not params.get("enabled"):
        return None
    from .analysis.entk import EntkConfig

    entk = EntkConfig(params="last_n+head", last_n=params["last_n"], top_k=params["top_k"],
                      estimator=params["estimator"], max_length=params["max_length"])
    return KernelTracking(n_per_class=params["n_per_class"], every_steps=params["every_steps"], entk=entk)


def build_tracker(model_dir: str, probe_paths: dict[str, str], safety_path: str, *, template: Template,
                  n_probe: int, max_length: int, batch_size: int,
                  kernel: KernelTracking | None = None) -> RefusalTracker:
    """A tracker for ``model_dir``'s tokenizer: probe sets from files, refusal tokens by the rule."""
    from .models.loading import load_tokenizer

    missing = [s for s in PROBE_SETS if s not in probe_paths]
    if missing:
        raise ValueError(f"missing probe set(s) {', '.join(missing)}; need {', '.join(PROBE_SETS)}")
    tok = load_tokenizer(model_dir)  # our own instance: the trainer's tokenizer is never touched
    refusals = [r["response"] for r in read_jsonl(safety_path) if r.get("label") == "toxic" and r.get("response")]
    tokens = refusal_token_ids(tok, refusal_phrases(refusals))
    sets = [load_probe_set(name, probe_paths[name], n_probe) for name in PROBE_SETS]
    if kernel is not None and kernel.n_per_class > n_probe:
        raise ValueError(f"tracking.kernel.n_per_class ({kernel.n_per_class}) exceeds tracking.n_probe ({n_probe})")
    return RefusalTracker(tok, sets, tokens, template=template, max_length=max_length, batch_size=batch_size,
                          kernel=kernel)


# ----------------------------------------------------------------------------------------------
# Hooks: a TrainerCallback for SFT, a plain callable for DCR
# ----------------------------------------------------------------------------------------------


class RefusalTrackingCallback(TrainerCallback):
    """Log the refusal log-odds at step 0, every ``every_steps`` optimiser steps and at the end.

    Records also go to a sidecar file in the Trainer's ``output_dir`` (where checkpoints live), so a
    run resumed from ``checkpoint-k`` keeps the records up to step k and continues from there.
    """

    def __init__(self, tracker: RefusalTracker, every_steps: int) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.tracker = tracker
        self.every_steps = every_steps

    def _record(self, args: Any, state: Any, model: Any) -> None:
        self.tracker.record(model, state.global_step, epoch=state.epoch)
        if state.is_world_process_zero:
            self.tracker.save_sidecar(args.output_dir)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step > 0:  # resumed from a checkpoint: keep the points measured before the kill
            self.tracker.load_sidecar(args.output_dir, state.global_step)
            self.tracker.resumed_from_step = int(state.global_step)
        else:
            self.tracker.records = []
            self._record(args, state, model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step % self.every_steps == 0:
            self._record(args, state, model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step not in self.tracker.steps:
            self.tracker.record(model, state.global_step, epoch=state.epoch, final=True)
        elif self.tracker.kernel is not None and state.global_step not in self.tracker.kernel_steps:
            self.tracker.record_kernel(model, state.global_step)
        else:
            return
        if state.is_world_process_zero:
            self.tracker.save_sidecar(args.output_dir)


class DCRTrack:
    """The ``track(model, step)`` callable ``dcr.train_dcr`` calls; it records every ``every_steps`` steps.

    ``train_dcr`` calls it at step 0 and after every optimiser step with ``last=True`` on the
    final one. DCR's own forward stops at layer ℓ; this one runs the whole model (under no_grad),
    which is measurement only and touches no parameter, gradient or optimiser state.
    """

    def __init__(self, tracker: RefusalTracker, every_steps: int) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.tracker = tracker
        self.every_steps = every_steps

    def __call__(self, model: torch.nn.Module, step: int, last: bool = False) -> None:
        if step == 0 or last or step % self.every_steps == 0:
            self.tracker.record(model, step, final=last)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Keep the points so far beside DCR's checkpoint (called just before it is written)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.tracker.save_sidecar(directory)

    def resume(self, directory: str | os.PathLike[str], step: int) -> None:
        """Continue a curve from DCR's checkpoint at ``step``: the points measured before the kill."""
        self.tracker.load_sidecar(directory, step)
        self.tracker.resumed_from_step = int(step)
