"""General capability of an aligned model, measured with lm-evaluation-harness.

Both papers check that mitigating over-refusal costs little general ability: TBR reports MMLU, GSM8K
and ARC-Easy; DCR reports MMLU, ARC, OpenBookQA and PIQA. We run them through lm-eval's Python API
rather than its CLI for one reason: the CLI can only load a checkpoint from a path, while the
SCANS and Surgical baselines change the model with *inference-time hooks*. Here the model is loaded
once, the caller's hooks are entered around the whole evaluation, and lm-eval sees the hooked model
through ``HFLM(pretrained=<model object>)``.

Two kinds of task are supported:

* **Local tasks** (``kind: mc`` or ``kind: gen``) read a JSONL file of ours. They need no network,
  so the toy world and the tests use them. lm-eval gets them as inline config dicts (no YAML on
  disk, so none of YAML's ``'\\n'`` quoting traps), loaded by a ``TaskManager`` that does not even
  index lm-eval's built-in tasks.
* **Registry tasks** (``kind: lm_eval``) are lm-eval's own task or group names (``mmlu``,
  ``gsm8k``, ...). They download their data from the Hugging Face hub, so they only run where the
  hub, or a pre-filled ``HF_DATASETS_CACHE``, is reachable. They cannot run in the offline test
  environment; the code path is kept and its planning is unit-tested.

Task specs (the ``tasks`` mapping: result name -> spec):

``{"kind": "mc", "path": "x.jsonl", "num_fewshot": 0, "fewshot_path": None}``
    rows ``{id, question, choices: [str, ...], answer: int}``; loglikelihood ranking, reports
    ``acc`` and ``acc_norm``.
``{"kind": "gen", "path": "x.jsonl", "num_fewshot": 0, "fewshot_path": None, "max_gen_toks": 32}``
    rows ``{id, question, answer: str}``; greedy decoding until a newline or EOS, reports
    ``exact_match`` after stripping surrounding whitespace on both sides.
``{"kind": "lm_eval", "num_fewshot": 5, "lm_eval_task": "mmlu", "metric": "acc"}``
    an lm-eval registry task or group (``lm_eval_task`` defaults to the result name).

Without ``fewshot_path`` the few-shot examples come from the same file, never the question itself.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

from .io import DataError, read_jsonl
from .prompting import TEMPLATES

TaskKind = Literal["mc", "gen", "lm_eval"]
TASK_KINDS: tuple[str, ...] = ("mc", "gen", "lm_eval")

# Metric reported first (tables, figures) for each kind; lm_eval tasks name theirs in the spec.
PRIMARY_METRIC: dict[str, str] = {"mc": "acc", "gen": "exact_match"}

# The prompt format of lm-eval's own ARC/OpenBookQA-style tasks, so local toy tasks read alike.
DOC_TO_TEXT = "Question: {{question}}\nAnswer:"

# The papers' capability suites as lm-eval registry tasks. Neither paper states its few-shot
# counts in the material we have, so these are lm-eval's defaults and common practice (MMLU and
# GSM8K 5-shot as in the Open LLM Leaderboard v1 and TBR's peers; ARC, OpenBookQA and PIQA 0-shot
# as in lm-eval's own configs). Override per task in the config when a paper says otherwise.
# gsm8k reports two filters; "exact_match,strict-match" is the "#### <n>" answer format.
PAPER_TASKS: dict[str, dict[str, Any]] = {
    "mmlu": {"kind": "lm_eval", "num_fewshot": 5, "metric": "acc"},
    "gsm8k": {"kind": "lm_eval", "num_fewshot": 5, "metric": "exact_match,strict-match"},
    "arc_easy": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"},
    "arc_challenge": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"},
    "openbookqa": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"},
    "piqa": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"},
}

_SPEC_KEYS: dict[str, set[str]] = {
    "mc": {"kind", "path", "num_fewshot", "fewshot_path", "doc_to_text"},
    "gen": {"kind", "path", "num_fewshot", "fewshot_path", "max_gen_toks", "doc_to_text"},
    "lm_eval": {"kind", "num_fewshot", "lm_eval_task", "metric"},
}


# --------------------------------------------------------------------------- task specs


def _check_spec(name: str, spec: Mapping[str, Any]) -> str:
    """Validate one task spec and return its kind; errors name the task and the field."""
    kind = spec.get("kind")
    if kind not in TASK_KINDS:
        raise ValueError(f"capability task {name!r}: kind is {kind!r}; allowed: {', '.join(TASK_KINDS)}")
    extra = set(spec) - _SPEC_KEYS[kind]
    if extra:
        raise ValueError(
            f"capability task {name!r}: unknown field(s) {', '.join(sorted(extra))} for kind {kind!r}; "
            f"allowed: {', '.join(sorted(_SPEC_KEYS[kind]))}"
        )
    nfs = spec.get("num_fewshot", 0)
    if not isinstance(nfs, int) or isinstance(nfs, bool) or nfs < 0:
        raise ValueError(f"capability task {name!r}: num_fewshot must be a non-negative integer, got {nfs!r}")
    if kind in ("mc", "gen") and not spec.get("path"):
        raise ValueError(f"capability task {name!r}: kind {kind!r} needs 'path' (a JSONL file)")
    if kind == "gen":
        mgt = spec.get("max_gen_toks", 32)
        if not isinstance(mgt, int) or isinstance(mgt, bool) or mgt < 1:
            raise ValueError(f"capability task {name!r}: max_gen_toks must be a positive integer, got {mgt!r}")
    return str(kind)


def _validate_rows(path: Path, kind: str) -> int:
    """Check a local task file up front; lm-eval's own errors on a bad row are hard to trace."""
    if not path.is_file():
        raise DataError(f"{path}: capability task file not found")
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    for lineno, row in enumerate(rows, start=1):
        where = f"{path}: row {lineno}"
        if not isinstance(row.get("id"), str) or not row["id"]:
            raise DataError(f"{where}: field 'id' must be a non-empty string")
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise DataError(f"{where}: field 'question' must be a non-empty string")
        ans = row.get("answer")
        if kind == "mc":
            choices = row.get("choices")
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise DataError(f"{where}: field 'choices' must be a list of at least 2 strings")
            if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < len(choices):
                raise DataError(f"{where}: field 'answer' must be an index into 'choices' (0..{len(choices) - 1})")
        elif not isinstance(ans, str) or not ans.strip():
            raise DataError(f"{where}: field 'answer' must be a non-empty string")
    return len(rows)


def local_task_configs(tasks: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """lm-eval inline task configs for the local (``mc``/``gen``) tasks; registry tasks are skipped.

    Inline dicts instead of YAML files: nothing is written to disk, and the prompt's newline is a
    real Python ``"\\n"`` rather than a YAML escape that silently changes meaning with the quote
    style. Paths are made absolute because lm-eval resolves ``data_files`` against the CWD.
    Rows are validated first so that a malformed file fails with its file and row named.
    """
    configs: list[dict[str, Any]] = []
    for name, spec in tasks.items():
        kind = _check_spec(name, spec)
        if kind == "lm_eval":
            continue
        path = Path(spec["path"]).resolve()
        _validate_rows(path, kind)
        data_files: dict[str, str] = {"test": str(path)}
        cfg: dict[str, Any] = {
            "task": name,
            "dataset_path": "json",
            "dataset_name": None,
            "test_split": "test",
            # Local tasks may use their own prompt: a toy model has never seen "Question:/Answer:".
            "doc_to_text": spec.get("doc_to_text", DOC_TO_TEXT),
            "doc_to_target": "answer",
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "num_fewshot": int(spec.get("num_fewshot", 0)),
            "metadata": {"version": 1.0, "source": str(path)},
        }
        if spec.get("fewshot_path"):
            fs_path = Path(spec["fewshot_path"]).resolve()
            _validate_rows(fs_path, kind)
            data_files["train"] = str(fs_path)
            cfg["fewshot_split"] = "train"
        cfg["dataset_kwargs"] = {"data_files": data_files}
        if kind == "mc":
            cfg.update(
                output_type="multiple_choice",
                doc_to_choice="choices",
                metric_list=[
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            )
        else:
            cfg.update(
                output_type="generate_until",
                generation_kwargs={
                    "until": ["\n"],
                    "do_sample": False,
                    "temperature": 0.0,
                    "max_gen_toks": int(spec.get("max_gen_toks", 32)),
                },
                metric_list=[
                    {
                        "metric": "exact_match",
                        "aggregation": "mean",
                        "higher_is_better": True,
                        # applied to prediction and reference alike: strip surrounding whitespace
                        "regexes_to_ignore": [r"^\s+", r"\s+$"],
                    }
                ],
            )
        configs.append(cfg)
    return configs


def registry_task_plan(tasks: Mapping[str, Mapping[str, Any]]) -> dict[int, list[str]]:
    """Registry tasks grouped by few-shot count: one ``simple_evaluate`` call per group.

    ``simple_evaluate`` takes a single global ``num_fewshot``; calling it once per distinct count
    (with the same loaded model) keeps per-task counts and lm-eval's own group aggregation (MMLU's
    size-weighted mean over its 57 subjects) intact. Returns ``{num_fewshot: [lm-eval task names]}``.
    """
    plan: dict[int, list[str]] = {}
    for name, spec in tasks.items():
        if _check_spec(name, spec) != "lm_eval":
            continue
        names = plan.setdefault(int(spec.get("num_fewshot", 0)), [])
        lm_name = str(spec.get("lm_eval_task") or name)
        if lm_name not in names:  # two result names for one lm-eval task and count: run it once
            names.append(lm_name)
    return dict(sorted(plan.items()))


# --------------------------------------------------------------------------- environment


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """Force the HF hub and datasets offline for the duration, then restore.

    Both libraries read these variables once at import time, so when they are already imported
    (as in a test session) the module-level flags are switched too; otherwise a stray hub call
    could hang on a compute node with no network instead of failing fast.
    """
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    saved_attrs: list[tuple[Any, str, Any]] = []
    for k in _OFFLINE_VARS:
        os.environ[k] = "1"
    for mod_name, attrs in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    ):
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        for attr in attrs:
            if hasattr(mod, attr):
                saved_attrs.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, True)
    try:
        yield
    finally:
        for mod, attr, val in reversed(saved_attrs):
            setattr(mod, attr, val)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- results


def _metrics_of(task_result: Mapping[str, Any]) -> dict[str, float]:
    """``{"acc,none": .5, "acc_stderr,none": "N/A", "alias": ...}`` -> ``{"acc": .5}``.

    The ``,none`` filter suffix is dropped; other filters are kept (``exact_match,strict-match``)
    because they are different metrics. Stderrs are dropped: we run with ``bootstrap_iters=0``
    and compute our own intervals where we need them.
    """
    out: dict[str, float] = {}
    for key, val in task_result.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, flt = key.split(",", 1)
        if isinstance(val, bool) or not isinstance(val, int | float):
            continue
        out[metric if flt == "none" else f"{metric},{flt}"] = float(val)
    return out


def _n_of(name: str, res: Mapping[str, Any]) -> int:
    """Number of evaluated documents; for a group (MMLU) the sum over its leaf tasks."""
    n_samples: Mapping[str, Any] = res.get("n-samples", {})
    if name in n_samples:
        return int(n_samples[name]["effective"])
    total = 0
    for child in res.get("group_subtasks", {}).get(name, []):
        total += _n_of(child, res)
    return total


# --------------------------------------------------------------------------- running


def _load_model(model_dir: str, device: str | None) -> tuple[Any, Any]:
    """Load model and tokenizer; float32 on CPU (CPU half precision is slow and lossy), bf16 on GPU."""
    import torch

    from .models.loading import load_model, load_tokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = load_model(model_dir, dtype=dtype, device=device)
    model.eval()
    return model, load_tokenizer(model_dir)


def run_capability(
    model_dir: str,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    template: str,
    batch_size: int,
    seed: int = 0,
    limit: int | None = None,
    hooks: Callable[[Any], AbstractContextManager[Any]] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``tasks`` with lm-eval and return a plain, schema-checked dict.

    ``template == "chat"`` makes lm-eval render every request with the tokenizer's chat template
    (few-shot examples as a multi-turn conversation), as a chat-aligned model is queried in the
    refusal evaluation; ``"alpaca"`` (STL-style models) uses lm-eval's plain prompts, its default,
    since lm-eval has no Alpaca-template option and its few-shot prompts are base-model style. ``hooks(model)`` is entered around the whole
    evaluation so that inference-time interventions (SCANS, Surgical) are active for every request.

    Returns ``{"tasks": {name: {"kind", "metrics": {metric: value}, "primary_metric", "n",
    "num_fewshot", "lm_eval_task"}}, "lm_eval_version", "model_dir", "template", "seed", "limit",
    "batch_size", "seconds"}`` (see ``schemas/capability.schema.json``).
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")
    if not tasks:
        raise ValueError("run_capability: no tasks given")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be None or a positive integer (documents per task), got {limit!r}")
    local_cfgs = local_task_configs(tasks)  # validates every spec and local file before loading
    plan = registry_task_plan(tasks)

    t0 = time.perf_counter()
    with _hf_offline():
        # lm-eval imports datasets/transformers; import under the offline flags where possible.
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        model, tok = _load_model(model_dir, device)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    common: dict[str, Any] = {
        "limit": limit,
        "bootstrap_iters": 0,
        "log_samples": False,
        "apply_chat_template": template == "chat",
        "fewshot_as_multiturn": template == "chat",
        "random_seed": seed,
        "numpy_random_seed": seed,
        "torch_random_seed": seed,
        "fewshot_random_seed": seed,
    }
    raw: dict[str, Mapping[str, Any]] = {}  # result name -> lm-eval results dict it appears in
    hook_cm: AbstractContextManager[Any] = hooks(model) if hooks is not None else contextlib.nullcontext()
    with hook_cm:
        if local_cfgs:
            with _hf_offline():
                res = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=list(local_cfgs),
                    num_fewshot=None,  # each inline config carries its own count
                    task_manager=TaskManager(include_defaults=False),
                    **common,
                )
            for cfg in local_cfgs:
                raw[cfg["task"]] = res
        if plan:
            # Registry tasks need the hub (or a warm HF cache); indexing lm-eval's ~10k YAMLs
            # is only paid for here.
            manager = TaskManager()
            for nfs, names in plan.items():
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=list(names), num_fewshot=nfs, task_manager=manager, **common
                )
                for name, spec in tasks.items():
                    if (
                        spec["kind"] == "lm_eval"
                        and int(spec.get("num_fewshot", 0)) == nfs
                        and (spec.get("lm_eval_task") or name) in names
                    ):
                        raw[name] = res

    out_tasks: dict[str, Any] = {}
    for name, spec in tasks.items():
        kind = str(spec["kind"])
        lm_name = str(spec.get("lm_eval_task") or name) if kind == "lm_eval" else name
        res = raw[name]
        if lm_name not in res["results"]:
            raise RuntimeError(f"lm-eval returned no result for task {lm_name!r} (capability task {name!r})")
        metrics = _metrics_of(res["results"][lm_name])
        primary = str(spec.get("metric") or PRIMARY_METRIC.get(kind, "acc"))
        if primary not in metrics:
            raise RuntimeError(
                f"capability task {name!r}: metric {primary!r} not in lm-eval's output {sorted(metrics)}"
            )
        out_tasks[name] = {
            "kind": kind,
            "lm_eval_task": lm_name,
            "metrics": metrics,
            "primary_metric": primary,
            "n": _n_of(lm_name, res),
            "num_fewshot": int(spec.get("num_fewshot", 0)),
        }
    return {
        "tasks": out_tasks,
        "lm_eval_version": importlib.metadata.version("lm_eval"),
        "model_dir": str(model_dir),
        "template": template,
        "seed": seed,
        "limit": limit,
        "batch_size": batch_size,
        "seconds": round(time.perf_counter() - t0, 3),
    }
