"""General capability of an aligned model, measured with lm-evaluation-harness.

Both papers check that mitigating over-refusal costs little general ability: TBR reports MMLU, GSM8K
and ARC-Easy; DCR reports MMLU, ARC, OpenBookQA and PIQA. We run them through lm-eval's Python API
rather than its CLI for one reason: the CLI can only load a checkpoint from a path, while the
SCANS and Surgical baselines change the model with *inference-time hooks*. Here the model is loaded
once, the caller's hooks are entered around the whole evaluation, and lm-eval sees the hooked model
through ``HFLM(pretrained=<model object>)``.

Two kinds of task are supported:

* **Local tasks** (``kind: mc`` or ``kind: gen``) read a JSONL file of ours. They need no network,
  so the toy world and the tests use them, and so do the real data's capability sets from the local
  mirror (MMLU's subset; ARC, PIQA, OpenBookQA and HellaSwag, staged in lm-eval's own task layout and
  asked with its prompts: ``data.registry``). lm-eval gets them as inline config dicts (no YAML on
  disk, so none of YAML's ``'\\n'`` quoting traps), loaded by a ``TaskManager`` that does not even
  index lm-eval's built-in tasks.
* **Registry tasks** (``kind: lm_eval``) are lm-eval's own task or group names (``mmlu``,
  ``gsm8k``, ...), whose data lives on the Hugging Face hub. Compute nodes have no internet, so the
  data is fetched in a separate step: :func:`stage_registry_tasks` (rule ``stage_capability_data``,
  a local rule for the login node) has lm-eval build the tasks with the hub online, which fills a
  ``datasets`` cache directory; :func:`run_capability` then reads them from that directory with the
  hub forced offline, and fails at once, naming the task, when something was not staged.

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
import functools
import hashlib
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
def _patched(env: Mapping[str, str], attrs: Sequence[tuple[str, str, Any]]) -> Iterator[None]:
    """Set environment variables and attributes of *already imported* modules; restore both after.

    huggingface_hub and datasets read their settings from the environment once, at import time, so
    the environment only reaches code imported later; whatever is imported already (as in a test
    session, or after lm-eval's import) is switched through its module attributes.
    """
    saved_env = {k: os.environ.get(k) for k in env}
    saved_attrs: list[tuple[Any, str, Any]] = []
    os.environ.update(env)
    for mod_name, attr, value in attrs:
        mod = sys.modules.get(mod_name)
        if mod is not None and hasattr(mod, attr):
            saved_attrs.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, value)
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


def _hf_mode(offline: bool) -> contextlib.AbstractContextManager[None]:
    """Force the HF hub and datasets offline (or online) for the duration, then restore.

    Offline, a stray hub call fails fast instead of hanging on a compute node with no network.
    """
    return _patched(
        {k: "1" if offline else "0" for k in _OFFLINE_VARS},
        [("huggingface_hub.constants", "HF_HUB_OFFLINE", offline),
         ("datasets.config", "HF_HUB_OFFLINE", offline),
         ("datasets.config", "HF_DATASETS_OFFLINE", offline)],
    )


def _hf_offline() -> contextlib.AbstractContextManager[None]:
    return _hf_mode(offline=True)


def _datasets_cache(cache_dir: str | os.PathLike[str] | None) -> contextlib.AbstractContextManager[None]:
    """Make ``datasets`` read and write its Arrow cache (and raw downloads) under ``cache_dir``.

    lm-eval calls ``datasets.load_dataset`` without a ``cache_dir``, so the cache location can only be
    steered through ``HF_DATASETS_CACHE`` (read when ``datasets`` is imported) and the
    ``datasets.config`` attributes derived from it (read at call time). ``None`` keeps the default.
    """
    if cache_dir is None:
        return contextlib.nullcontext()
    root = Path(cache_dir).resolve()
    downloads = root / "downloads"
    return _patched(
        {"HF_DATASETS_CACHE": str(root), "HF_DATASETS_DOWNLOADED_DATASETS_PATH": str(downloads)},
        [("datasets.config", "HF_DATASETS_CACHE", root),
         ("datasets.config", "DOWNLOADED_DATASETS_PATH", downloads),
         ("datasets.config", "EXTRACTED_DATASETS_PATH", downloads / "extracted")],
    )


# --------------------------------------------------------------------------- registry data


class CapabilityDataError(RuntimeError):
    """A registry task's dataset could not be had; the message names the task, dataset and fix."""


STAGE_HINT = (
    "stage it where there is internet (a login node): snakemake --cores 1 stage_capability_data "
    "--configfile <preset>, or overrefusal.capability.stage_registry_tasks(tasks, cache_dir)"
)
ONLINE_HINT = (
    "staging downloads from the Hugging Face hub: run it on a node with internet (not a compute node), "
    "check HF_ENDPOINT and any HTTPS_PROXY, and for a gated dataset accept its terms on the hub and "
    "export HF_TOKEN"
)


def _lm_name(name: str, spec: Mapping[str, Any]) -> str:
    return str(spec.get("lm_eval_task") or name)


def _registry_specs(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The ``kind: lm_eval`` entries, validated; local ones are skipped unchecked (a config's local
    specs have no ``path`` yet: the capability rule adds it)."""
    return {n: s for n, s in tasks.items() if s.get("kind") == "lm_eval" and _check_spec(n, s)}


def registry_stage_specs(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The registry tasks' data identity: ``{lm-eval name: {"kind": "lm_eval", "lm_eval_task": name}}``.

    Few-shot counts and metrics do not change what is downloaded, so they are left out: the staged
    cache is shared by every run with the same task set, and re-staging it (which rewrites its
    record and so reruns every run's capability jobs) should happen only when the data changes.
    """
    names = sorted({_lm_name(n, s) for n, s in _registry_specs(tasks).items()})
    return {n: {"kind": "lm_eval", "lm_eval_task": n} for n in names}


def registry_stage_key(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """A run-independent file name for a set of registry tasks: their lm-eval names, sorted.

    Readable for the usual handful of tasks; a long set gets a short hash instead (file name limits).
    """
    names = list(registry_stage_specs(tasks))
    if not names:
        raise ValueError("no kind: lm_eval capability task to stage")
    key = "+".join(names)
    return key if len(key) <= 100 else "lm_eval-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@functools.cache
def _manager_of(factory: Callable[[], Any]) -> Any:
    return factory()


def _registry_manager() -> Any:
    """lm-eval's full task index (~15k YAMLs, seconds to build), built once per process.

    Cached per ``TaskManager`` class so that a test swapping the class gets its own index.
    """
    from lm_eval.tasks import TaskManager

    return _manager_of(TaskManager)


def _datasets_of(manager: Any, lm_name: str) -> str:
    """The hub datasets behind an lm-eval task, group or tag, read from lm-eval's index (no download).

    Only for error messages, so that they can name the dataset even when building the task failed.
    """
    pairs: set[tuple[str, str]] = set()
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = manager.task_index.get(name)
        if entry is None:
            return
        cfg, kind = entry.cfg or {}, getattr(entry.kind, "name", "")
        if cfg.get("dataset_path"):
            pairs.add((str(cfg["dataset_path"]), str(cfg.get("dataset_name") or "")))
        children = cfg.get("task") if kind == "GROUP" else None
        for child in children if isinstance(children, list) else []:
            if isinstance(child, str):
                walk(child)
            elif isinstance(child, Mapping) and child.get("dataset_path"):
                pairs.add((str(child["dataset_path"]), str(child.get("dataset_name") or "")))
        if kind == "TAG":
            for other, e in manager.task_index.items():
                if name in (getattr(e, "tags", None) or ()):
                    walk(other)

    walk(lm_name)
    by_path: dict[str, set[str]] = {}
    for path, cfg_name in pairs:
        by_path.setdefault(path, set()).add(cfg_name)
    parts = []
    for path, cfgs in sorted(by_path.items()):
        named = sorted(c for c in cfgs if c)
        parts.append(f"{path} ({', '.join(named)})" if 0 < len(named) <= 3
                     else f"{path} ({len(named)} configs)" if named else path)
    return "dataset " + "; ".join(parts) if parts else "dataset unknown to lm-eval's index"


def _load_registry(manager: Any, name: str, lm_name: str, *, hint: str) -> tuple[list[Any], dict[str, Any]]:
    """Build one registry task or group: ``([objects to evaluate], {leaf task name: Task})``.

    Building a task is what makes lm-eval load its dataset, so any data problem surfaces here, wrapped
    into one error that names the capability task, the lm-eval task, its dataset(s) and the fix.
    """
    if lm_name not in manager.task_index:
        raise CapabilityDataError(
            f"capability task {name!r}: {lm_name!r} is not an lm-eval task, group or tag "
            "(see `lm_eval ls tasks`; set lm_eval_task to pick one)"
        )
    try:
        loaded = manager.load([lm_name])
    except Exception as exc:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError)
        raise CapabilityDataError(
            f"capability task {name!r}: lm-eval task {lm_name!r} could not load its {_datasets_of(manager, lm_name)}: "
            f"{type(exc).__name__}: {exc}\n  fix: {hint}"
        ) from exc
    groups, leaves = loaded["groups"], dict(loaded["tasks"])
    # a group is passed whole so that lm-eval aggregates it (MMLU's size-weighted mean); a tag is its tasks
    objs = [groups[lm_name]] if lm_name in groups else list(leaves.values())
    return objs, leaves


def _splits_of(task: Any) -> dict[str, int]:
    dataset = getattr(task, "dataset", None)
    if dataset is None or not hasattr(dataset, "items"):
        return {}
    return {str(split): len(ds) for split, ds in sorted(dataset.items())}


def _cache_dirs_of(task: Any, root: Path) -> list[str]:
    """The Arrow cache directories a task's dataset was read from, relative to the cache root.

    For a hub dataset the last path component is the hub commit it was prepared from.
    """
    dataset = getattr(task, "dataset", None)
    found: set[str] = set()
    for ds in (dataset.values() if hasattr(dataset, "values") else []):
        for f in getattr(ds, "cache_files", []) or []:
            parent = Path(f["filename"]).resolve().parent
            found.add(str(parent.relative_to(root)) if parent.is_relative_to(root) else str(parent))
    return sorted(found)


def stage_registry_tasks(
    tasks: Mapping[str, Mapping[str, Any]], cache_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Download the data of every ``kind: lm_eval`` task in ``tasks`` into ``cache_dir`` (hub online).

    lm-eval builds each task exactly as :func:`run_capability` will (groups such as ``mmlu``
    expand to their subtasks), which makes ``datasets`` download and prepare the data under
    ``cache_dir``. Returns a plain record: per task its lm-eval name and, per leaf task, the dataset
    path and config, the rows per split, the documents evaluated and the cache directories.
    Local (``mc``/``gen``) tasks are skipped. Raises :class:`CapabilityDataError` naming the task,
    its dataset and the fix when a download fails.
    """
    specs = _registry_specs(tasks)
    if not specs:
        raise ValueError("stage_registry_tasks: no kind: lm_eval task given")
    root = Path(cache_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {}
    with _hf_mode(offline=False), _datasets_cache(root):
        import datasets

        manager = _registry_manager()
        for name, spec in specs.items():
            lm_name = _lm_name(name, spec)
            _, leaves = _load_registry(manager, name, lm_name, hint=ONLINE_HINT)
            record[name] = {
                "lm_eval_task": lm_name,
                "subtasks": {
                    leaf: {
                        "dataset_path": task.DATASET_PATH,
                        "dataset_name": task.DATASET_NAME,
                        "splits": _splits_of(task),
                        "n_eval_docs": len(task.eval_docs),
                        "cache": _cache_dirs_of(task, root),
                    }
                    for leaf, task in sorted(leaves.items())
                },
            }
    return {
        "tasks": record,
        "cache_dir": str(cache_dir),
        "datasets_version": datasets.__version__,
        "lm_eval_version": importlib.metadata.version("lm_eval"),
        "seconds": round(time.perf_counter() - t0, 3),
    }


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


def _evaluate(lm: Any, tasks: Mapping[str, Mapping[str, Any]], local_cfgs: list[dict[str, Any]],
              plan: Mapping[int, list[str]], registry: Mapping[int, Any], cache_dir: Any,
              common: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """lm-eval over the local tasks (one call) and the registry tasks (one call per few-shot count);
    returns, per capability task name, the lm-eval results dict its numbers are in."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    raw: dict[str, Mapping[str, Any]] = {}
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
    for nfs, names in plan.items():
        # the tasks built above, so lm-eval does not load (or look for) their data again
        with _hf_offline(), _datasets_cache(cache_dir):
            res = lm_eval.simple_evaluate(
                model=lm, tasks=registry[nfs], num_fewshot=nfs, task_manager=_registry_manager(), **common
            )
        for name, spec in tasks.items():
            if (
                spec["kind"] == "lm_eval"
                and int(spec.get("num_fewshot", 0)) == nfs
                and (spec.get("lm_eval_task") or name) in names
            ):
                raw[name] = res
    return raw


def _task_result(name: str, spec: Mapping[str, Any], res: Mapping[str, Any]) -> dict[str, Any]:
    """One task's metrics, primary metric and document count from lm-eval's results."""
    kind = str(spec["kind"])
    lm_name = str(spec.get("lm_eval_task") or name) if kind == "lm_eval" else name
    if lm_name not in res["results"]:
        raise RuntimeError(f"lm-eval returned no result for task {lm_name!r} (capability task {name!r})")
    metrics = _metrics_of(res["results"][lm_name])
    primary = str(spec.get("metric") or PRIMARY_METRIC.get(kind, "acc"))
    if primary not in metrics:
        raise RuntimeError(
            f"capability task {name!r}: metric {primary!r} not in lm-eval's output {sorted(metrics)}"
        )
    return {
        "kind": kind,
        "lm_eval_task": lm_name,
        "metrics": metrics,
        "primary_metric": primary,
        "n": _n_of(lm_name, res),
        "num_fewshot": int(spec.get("num_fewshot", 0)),
    }


def _load_model(model_dir: str, compute: dict[str, Any] | None) -> tuple[Any, Any]:
    """Load model and tokenizer on ``compute``'s device: float32 on the CPU (CPU half precision is slow
    and lossy), bfloat16 on a GPU unless configured otherwise."""
    from .models.loading import load_model, load_tokenizer

    model = load_model(model_dir, compute)
    model.eval()
    return model, load_tokenizer(model_dir)


def _build_registry(
    tasks: Mapping[str, Mapping[str, Any]], plan: Mapping[int, list[str]], cache_dir: str | os.PathLike[str] | None
) -> dict[int, list[Any]]:
    """Build the registry tasks of ``plan`` offline from the staged cache: ``{num_fewshot: [Task/Group]}``.

    One build per few-shot count, because ``simple_evaluate`` sets the count on the objects it is given.
    """
    where = f"the datasets cache {Path(cache_dir).resolve()}" if cache_dir is not None else "datasets' default cache"
    result_name = {_lm_name(n, s): n for n, s in reversed(list(tasks.items())) if s["kind"] == "lm_eval"}
    built: dict[int, list[Any]] = {}
    with _hf_offline(), _datasets_cache(cache_dir):
        manager = _registry_manager()
        for nfs, names in plan.items():
            for lm_name in names:
                objs, _ = _load_registry(manager, result_name[lm_name], lm_name,
                                         hint=f"the hub is offline here and {where} lacks it; {STAGE_HINT}")
                built.setdefault(nfs, []).extend(objs)
    return built


def run_capability(
    model_dir: str,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    template: str,
    batch_size: int,
    seed: int = 0,
    limit: int | None = None,
    hooks: Callable[[Any], AbstractContextManager[Any]] | None = None,
    compute: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``tasks`` with lm-eval and return a plain, schema-checked dict.

    Registry (``kind: lm_eval``) tasks are read with the hub offline from the ``datasets`` cache
    ``cache_dir`` that :func:`stage_registry_tasks` filled (``None``: datasets' default cache). They
    are built before the model is loaded, so an unstaged task fails at once with
    :class:`CapabilityDataError` naming it, instead of after minutes of loading, or hanging on a
    hub call from a node without network.

    ``template == "chat"`` makes lm-eval render every request with the tokenizer's chat template
    (few-shot examples as a multi-turn conversation), as a chat-aligned model is queried in the
    refusal evaluation; ``"alpaca"`` (STL-style models) uses lm-eval's plain prompts, its default,
    since lm-eval has no Alpaca-template option and its few-shot prompts are base-model style. ``hooks(model)`` is entered around the whole
    evaluation so that inference-time interventions (SCANS, Surgical) are active for every request.

    Returns ``{"tasks": {name: {"kind", "metrics": {metric: value}, "primary_metric", "n",
    "num_fewshot", "lm_eval_task"}}, "lm_eval_version", "model_dir", "template", "seed", "limit",
    "batch_size", "seconds"}`` (see ``overrefusal/schemas/capability.schema.json``).
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
        import lm_eval  # noqa: F401 - imported here, offline; _evaluate uses the loaded module
        from lm_eval.models.huggingface import HFLM

    registry = _build_registry(tasks, plan, cache_dir) if plan else {}
    with _hf_offline():
        model, tok = _load_model(model_dir, compute)
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
    hook_cm: AbstractContextManager[Any] = hooks(model) if hooks is not None else contextlib.nullcontext()
    with hook_cm:
        raw = _evaluate(lm, tasks, local_cfgs, plan, registry, cache_dir, common)
    out_tasks = {name: _task_result(name, spec, raw[name]) for name, spec in tasks.items()}
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
