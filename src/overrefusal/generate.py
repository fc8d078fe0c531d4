"""Greedy, batched, sharded and resumable generation of model responses to prompt records.

Why it looks like this:

- Greedy decoding (``do_sample=False``, one beam) as both papers report; the seed is still set
  and recorded so any future sampling option stays reproducible.
- Batched with left padding, prompts sorted by token length inside a shard (longest first, so an
  out-of-memory batch size fails in the first seconds) while rows are written in input order.
  Position ids come from the attention mask, so a left-padded row decodes exactly as it would on
  its own (checked by tests in float32; in bf16 on GPU, padding can flip near-tied argmaxes,
  which is why ``batch_size`` is part of the resume fingerprint).
- Sharded and resumable: a preempted SLURM job loses at most one shard. Shards are written
  atomically to ``<out_path>.shards/NNNNN.jsonl``; a rerun skips every shard whose ids match the
  ones it would write, provided the decoding fingerprint (weights, config, tokenizer files,
  template, decoding parameters) is unchanged. Otherwise the stale shards are discarded.
- Prompts that do not fit ``max_position_embeddings - max_new_tokens`` (or ``max_prompt_tokens``)
  are cut from the left, keeping the end of the prompt where the answer starts, and counted.

Backends: ``backend="hf"`` (default) runs ``transformers`` ``model.generate``.
``backend="vllm"`` imports vLLM lazily (``pip install vllm``; a clear ``ImportError`` otherwise),
renders and truncates prompts with the same tokenizer code, feeds token ids to ``LLM.generate``
with ``SamplingParams(temperature=0)`` and writes the same rows. vLLM schedules its own batches, so
``batch_size`` is ignored there; its kernels differ from HF's, so the backend is part of the
fingerprint and of the returned metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from .io import read_jsonl, sha256_file, write_json, write_jsonl
from .prompting import Template, encode_prompt
from .provenance import weight_file_sha256
from .records import Record, user_text

log = logging.getLogger(__name__)

Backend = Literal["hf", "vllm"]
BACKENDS: tuple[str, ...] = ("hf", "vllm")
OUTPUT_FIELDS: tuple[str, ...] = (
    "id", "prompt", "label", "category", "response", "n_prompt_tokens", "n_new_tokens", "truncated",
)
# Files whose content decides what a model generates; their hashes form the resume fingerprint.
_FINGERPRINT_FILES: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "adapter_config.json",
)
_META_NAME = "_fingerprint.json"


# --------------------------------------------------------------------------------------------
# Hashing / fingerprints




def combined_revision(file_hashes: dict[str, str]) -> str | None:
    """One hex digest over ``{name: sha256}``; the single file's own sha256 when there is one."""
    if not file_hashes:
        return None
    if len(file_hashes) == 1:
        return next(iter(file_hashes.values()))
    blob = "".join(f"{name}:{digest}\n" for name, digest in sorted(file_hashes.items()))
    return hashlib.sha256(blob.encode()).hexdigest()


def _fingerprint(model_dir: str | Path, weight_hashes: dict[str, str], settings: dict[str, Any]) -> str:
    d = Path(model_dir)
    files = {name: sha256_file(d / name) for name in _FINGERPRINT_FILES if (d / name).is_file()}
    payload = {"weights": weight_hashes, "files": files, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Engines


class _Engine(Protocol):
    tokenizer: Any

    def run(
        self, prompts: Sequence[list[int]], on_progress: Callable[[int], None]
    ) -> list[tuple[str, int]]: ...

    def describe(self) -> dict[str, Any]: ...


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the generation config (may be a list, e.g. Llama-3) plus the tokenizer's."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (gen_eos, getattr(model.config, "eos_token_id", None), tokenizer.eos_token_id):
        for i in v if isinstance(v, (list, tuple)) else [v]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("neither the model nor the tokenizer defines an EOS token")
    return ids


def _context_limit(config: Any, max_new_tokens: int, max_prompt_tokens: int | None) -> int | None:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    max_pos = getattr(text_config, "max_position_embeddings", None)
    limits = [v for v in (max_prompt_tokens, max_pos - max_new_tokens if max_pos else None) if v is not None]
    if not limits:
        return None
    limit = min(limits)
    if limit < 1:
        raise ValueError(
            f"no room for a prompt: max_position_embeddings={max_pos}, max_new_tokens={max_new_tokens}, "
            f"max_prompt_tokens={max_prompt_tokens}"
        )
    return limit


class _HFEngine:
    def __init__(
        self,
        model_dir: str,
        *,
        template: Template,
        max_new_tokens: int,
        batch_size: int,
        compute: dict[str, Any] | None,
        model: Any | None,
        tokenizer: Any | None,
    ) -> None:
        import torch
        from transformers import AutoTokenizer, GenerationConfig

        from .models.loading import load_model

        self._torch = torch
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if model is None:
            model = load_model(model_dir, compute)
        self.model = model.eval()
        self.device = next(self.model.parameters()).device
        self.template = template
        self.batch_size = batch_size
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        # A fresh config, not the checkpoint's: greedy means greedy even if the checkpoint ships
        # temperature/top_p/repetition_penalty defaults.
        self.gen_config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
        )

    def run(self, prompts: Sequence[list[int]], on_progress: Callable[[int], None]) -> list[tuple[str, int]]:
        torch = self._torch
        order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
        out: list[tuple[str, int] | None] = [None] * len(prompts)
        eos = torch.tensor(self.eos_ids, device=self.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                p = prompts[i]
                ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
                mask[row, width - len(p):] = 1
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=self.gen_config,
                )
            new = gen[:, width:]
            is_eos = torch.isin(new, eos)
            has_eos = is_eos.any(dim=1)
            first_eos = is_eos.int().argmax(dim=1)
            n_new = torch.where(has_eos, first_eos + 1, torch.full_like(first_eos, new.shape[1])).tolist()
            texts = self.tokenizer.batch_decode(
                [new[r, : n_new[r]].tolist() for r in range(len(idx))], skip_special_tokens=True
            )
            for row, i in enumerate(idx):
                out[i] = (texts[row], int(n_new[row]))
            on_progress(len(idx))
        return [o for o in out if o is not None]

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "device": str(self.device),
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "transformers_version": transformers.__version__,
            "torch_version": self._torch.__version__,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
        }


class _VLLMEngine:
    def __init__(
        self,
        model_dir: str,
        *,
        template: Template,
        max_new_tokens: int,
        context_limit: int | None,
        seed: int,
        dtype: str,
        tokenizer: Any | None,
        engine_args: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import vllm
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ImportError(
                "backend='vllm' needs the vllm package (pip install vllm, on a CUDA machine); "
                "use backend='hf' otherwise"
            ) from exc
        from transformers import AutoTokenizer

        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir)
        self.template = template
        kwargs: dict[str, Any] = {"model": model_dir, "seed": seed, "dtype": dtype, **(engine_args or {})}
        if context_limit is not None:
            kwargs["max_model_len"] = context_limit + max_new_tokens
        self.llm = LLM(**kwargs)
        self.params = SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=True, seed=seed
        )
        self._vllm_version = vllm.__version__

    def run(self, prompts: Sequence[list[int]], on_progress: Callable[[int], None]) -> list[tuple[str, int]]:
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], self.params, use_tqdm=False)
        on_progress(len(prompts))
        return [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outs]

    def describe(self) -> dict[str, Any]:
        return {"device": "vllm", "vllm_version": self._vllm_version}


# --------------------------------------------------------------------------------------------
# Shards


def _shard_path(shard_dir: Path, k: int) -> Path:
    return shard_dir / f"{k:05d}.jsonl"


def _finished_shard(path: Path, expected_ids: list[str]) -> list[dict[str, Any]] | None:
    """The shard's rows if it exists and holds exactly ``expected_ids`` in order, else None."""
    if not path.is_file():
        return None
    try:
        rows = read_jsonl(path)
    except Exception as exc:  # a corrupt shard is regenerated, never trusted
        log.warning("regenerating unreadable shard %s: %s", path, exc)
        return None
    if [r.get("id") for r in rows] != expected_ids or any(set(OUTPUT_FIELDS) - set(r) for r in rows):
        log.warning("regenerating shard %s: its ids or fields do not match this run", path)
        return None
    return rows


def _prepare_shard_dir(shard_dir: Path, fingerprint: str) -> None:
    meta = shard_dir / _META_NAME
    if shard_dir.exists():
        try:
            old = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old != fingerprint:
            log.warning("discarding shards in %s: made with different model files or settings", shard_dir)
            shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    if not meta.exists():
        write_json(meta, {"fingerprint": fingerprint})


# --------------------------------------------------------------------------------------------
# Entry point


def _dtype_name(model: Any | None, compute: dict[str, Any] | None) -> str:
    """The dtype generation runs in, resolved (``auto`` is bfloat16 on a GPU, float32 on the CPU), so
    shards written on one kind of machine are never resumed on another."""
    if model is not None:
        return str(next(model.parameters()).dtype).removeprefix("torch.")
    from .models.loading import resolve_compute

    return str(resolve_compute(compute)[1]).removeprefix("torch.")


def generate(
    model_dir: str,
    records: list[Record] | list[dict[str, Any]],
    out_path: str,
    *,
    template: Template,
    max_new_tokens: int,
    batch_size: int,
    shard_size: int = 256,
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    backend: Backend = "hf",
    compute: dict[str, Any] | None = None,
    model: Any | None = None,
    tokenizer: Any | None = None,
    fingerprint_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
    engine_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate one greedy response per record into JSONL ``out_path``; return run metadata.

    Output rows (input order): ``id, prompt, label, category, response, n_prompt_tokens,
    n_new_tokens, truncated``. ``prompt`` is the user turn the model saw (``records.user_text``),
    ``n_prompt_tokens`` counts the tokens actually fed (after truncation), ``n_new_tokens`` counts
    generated tokens up to and including EOS, and ``response`` is decoded with
    ``skip_special_tokens=True`` (so a reflection tag that is a *special* token would vanish;
    reflection tags must be ordinary or non-special added tokens).

    ``model``/``tokenizer`` may be passed already loaded (e.g. with steering hooks attached);
    ``model_dir`` is still hashed for the revision, and whatever else changes the outputs (a
    steering vector's hash, its layer and scale) belongs in ``fingerprint_extra`` so that a resumed
    run never reuses shards made under another intervention. The model is loaded only if some
    shard still has to be generated. ``engine_args`` go to vLLM's ``LLM`` (memory and parallelism settings,
    e.g. ``gpu_memory_utilization``); the hf backend takes none. See the module docstring for backends,
    sharding and truncation.
    """
    _check_args(records, backend=backend, max_new_tokens=max_new_tokens, batch_size=batch_size,
                shard_size=shard_size, max_prompt_tokens=max_prompt_tokens)
    if engine_args and backend != "vllm":
        raise ValueError(f"engine_args are vLLM's; backend {backend!r} takes none (got {sorted(engine_args)})")
    t_start = time.perf_counter()
    if model is not None:
        config = model.config
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
    context_limit = _context_limit(config, max_new_tokens, max_prompt_tokens)
    out = Path(out_path)
    shard_dir = out.with_name(out.name + ".shards")
    weight_hashes = weight_file_sha256(model_dir)
    revision = combined_revision(weight_hashes)
    if revision is None:
        log.warning("no *.safetensors in %s: the revision cannot be recorded", model_dir)
    settings: dict[str, Any] = {
        "template": template,
        "max_new_tokens": max_new_tokens,
        "max_prompt_tokens": context_limit,
        "batch_size": batch_size if backend == "hf" else None,
        "seed": seed,
        "backend": backend,
        "dtype": _dtype_name(model, compute),
        "do_sample": False,
        "num_beams": 1,
        "skip_special_tokens": True,
        "extra": dict(fingerprint_extra or {}),
    }
    fingerprint = _fingerprint(model_dir, weight_hashes, settings)
    _prepare_shard_dir(shard_dir, fingerprint)

    shards = [list(range(s, min(s + shard_size, len(records)))) for s in range(0, len(records), shard_size)]
    done = _finished_shards(shard_dir, shards, [r["id"] for r in records])
    n_resumed = sum(len(r) for r in done.values())
    if done:
        log.info("resuming %s: %d of %d shards already finished", out, len(done), len(shards))

    engine: _Engine | None = None
    n_generated = new_tokens = 0
    seconds = 0.0
    if len(done) < len(shards):
        import torch

        torch.manual_seed(seed)
        engine = _make_engine(backend, model_dir, template=template, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, context_limit=context_limit, seed=seed, compute=compute,
                              model=model, tokenizer=tokenizer, engine_args=engine_args)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(records), initial=n_resumed, desc=f"generate {out.name}", unit="prompt",
            file=sys.stderr, disable=not progress, dynamic_ncols=True,
        )
        try:
            for k, idx in enumerate(shards):
                if k in done:
                    continue
                rows, n_new, secs = _generate_shard(engine, [records[i] for i in idx], template, context_limit,
                                                    bar.update)
                write_jsonl(_shard_path(shard_dir, k), rows)
                done[k] = rows
                n_generated += len(rows)
                new_tokens += n_new
                seconds += secs
        finally:
            bar.close()

    all_rows = [row for k in range(len(shards)) for row in done[k]]
    write_jsonl(out, all_rows)
    shutil.rmtree(shard_dir, ignore_errors=True)

    return {
        "model_dir": str(model_dir),
        "revision": revision,
        "weights_sha256": weight_hashes,
        "fingerprint": fingerprint,
        "backend": backend,
        "template": template,
        "decoding": {k: settings[k] for k in ("do_sample", "num_beams", "max_new_tokens", "max_prompt_tokens",
                                              "skip_special_tokens")} | {"batch_size": batch_size},
        "seed": seed,
        "fingerprint_extra": dict(fingerprint_extra or {}),
        "n": len(all_rows),
        "n_truncated": sum(1 for r in all_rows if r["truncated"]),
        "n_generated": n_generated,
        "n_resumed": n_resumed,
        "new_tokens": new_tokens,
        "seconds": round(seconds, 3),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 else None,
        **({"runtime": engine.describe()} if engine is not None else {}),
    }


def _check_args(records: Sequence[Mapping[str, Any]], *, backend: str, max_new_tokens: int, batch_size: int,
                shard_size: int, max_prompt_tokens: int | None) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size), ("shard_size", shard_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")


def _finished_shards(shard_dir: Path, shards: list[list[int]], ids: list[str]) -> dict[int, list[dict[str, Any]]]:
    """The shards a killed run already wrote completely (same prompts, in order), by index."""
    done: dict[int, list[dict[str, Any]]] = {}
    for k, idx in enumerate(shards):
        rows = _finished_shard(_shard_path(shard_dir, k), [ids[i] for i in idx])
        if rows is not None:
            done[k] = rows
    return done


# One vLLM engine per (checkpoint, settings) in a process: a generate job calls generate() once per benchmark,
# and building an engine (weights to the GPU, CUDA graphs, KV-cache profiling) costs far more than a benchmark.
_VLLM_ENGINES: dict[str, _VLLMEngine] = {}


def _make_engine(backend: str, model_dir: str, *, template: Template, max_new_tokens: int, batch_size: int,
                 context_limit: int | None, seed: int, compute: dict[str, Any] | None, model: Any | None,
                 tokenizer: Any | None, engine_args: Mapping[str, Any] | None = None) -> _Engine:
    if backend == "hf":
        return _HFEngine(model_dir, template=template, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         compute=compute, model=model, tokenizer=tokenizer)
    dtype = _dtype_name(None, compute)
    key = json.dumps([str(Path(model_dir).resolve()), template, max_new_tokens, context_limit, seed, dtype,
                      dict(engine_args or {})], sort_keys=True)
    if key not in _VLLM_ENGINES:
        _VLLM_ENGINES[key] = _VLLMEngine(model_dir, template=template, max_new_tokens=max_new_tokens,
                                         context_limit=context_limit, seed=seed, dtype=dtype, tokenizer=tokenizer,
                                         engine_args=engine_args)
    return _VLLM_ENGINES[key]


def _generate_shard(engine: _Engine, recs: Sequence[Mapping[str, Any]], template: Template,
                    context_limit: int | None, on_progress: Callable[[int], None]
                    ) -> tuple[list[dict[str, Any]], int, float]:
    """One shard's output rows (prompts left-truncated to ``context_limit``), new tokens and seconds."""
    texts = [user_text(r) for r in recs]  # type: ignore[arg-type]
    encoded = [encode_prompt(engine.tokenizer, t, template) for t in texts]
    truncated = [context_limit is not None and len(e) > context_limit for e in encoded]
    fed = [e[-context_limit:] if t and context_limit is not None else e
           for e, t in zip(encoded, truncated, strict=True)]
    t0 = time.perf_counter()
    results = engine.run(fed, on_progress)
    seconds = time.perf_counter() - t0
    rows = [
        {
            "id": r["id"],
            "prompt": text,
            "label": r.get("label"),
            "category": r.get("category"),
            "response": response,
            "n_prompt_tokens": len(f),
            "n_new_tokens": n_new,
            "truncated": bool(t),
        }
        for r, text, f, t, (response, n_new) in zip(recs, texts, fed, truncated, results, strict=True)
    ]
    return rows, sum(n for _, n in results), seconds
