"""Which source each split and benchmark of a real-data run reads, decided before any job runs.

``data.real.splits.<split>.source`` names a registry source or a benchmark (``xstest_safe``) whose
records it takes. A source that is neither local (``data.raw_dir`` / ``data.real.download_dir``)
nor downloadable (``data.real.download``) is *missing*. With ``on_missing: fail`` the split keeps
its source, and the source's staging job fails with instructions; with ``on_missing: substitute``
the first available entry of ``data.real.substitutes.<source>`` is used and recorded as a deviation.
"""

from __future__ import annotations

from typing import Any

from .fetch import is_available
from .registry import BENCHMARK_SOURCES, SOURCES

TRAIN_SPLITS = ("sft_general", "sft_safety", "sft_aug", "contrastive_seemingly", "contrastive_toxic", "pretrain",
                "general_heldout")


def source_of(name: str) -> tuple[str, dict[str, Any]]:
    """(registry source, loader options) of a split source or benchmark name."""
    if name in BENCHMARK_SOURCES:
        src, opts = BENCHMARK_SOURCES[name]
        return src, dict(opts)
    if name in SOURCES:
        return name, {}
    valid = sorted(set(SOURCES) | set(BENCHMARK_SOURCES))
    raise KeyError(f"unknown data source {name!r}; valid: {', '.join(valid)}")


def _available(name: str, real: dict[str, Any], raw_dir: str | None) -> bool:
    src, _ = source_of(name)
    return is_available(SOURCES[src], raw_dir, real.get("download_dir"), bool(real.get("download")))


def plan(real: dict[str, Any], raw_dir: str | None, benchmarks: list[str]) -> dict[str, Any]:
    """``{"splits": {split: {source, requested, substituted}}, "benchmarks": {b: source},
    "stage": [registry sources to stage], "missing": {source: [what needs it]}}``."""
    splits: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}
    for split, spec in real["splits"].items():
        want = spec["source"]
        chosen = want
        if not _available(want, real, raw_dir):
            subs = [s for s in real.get("substitutes", {}).get(want, []) if _available(s, real, raw_dir)]
            if real.get("on_missing", "fail") == "substitute" and subs:
                chosen = subs[0]
            else:
                missing.setdefault(source_of(want)[0], []).append(f"split {split}")
        splits[split] = {"source": chosen, "requested": want, "substituted": chosen != want}
    bench = {}
    for b in benchmarks:
        src = BENCHMARK_SOURCES[b][0]
        bench[b] = src
        if not _available(b, real, raw_dir):
            missing.setdefault(src, []).append(f"benchmark {b}")
    caps = {}
    for task in real.get("capability", {}):
        caps[task] = task
        if not _available(task, real, raw_dir):
            missing.setdefault(task, []).append(f"capability task {task}")
    stage = sorted({source_of(s["source"])[0] for s in splits.values()} | set(bench.values()) | set(caps))
    return {"splits": splits, "benchmarks": bench, "capability": caps, "stage": stage, "missing": missing}


def missing_message(p: dict[str, Any]) -> str:
    if not p["missing"]:
        return ""
    parts = [f"{s} (needed by {', '.join(w)})" for s, w in sorted(p["missing"].items())]
    return ("real data: these sources are not in data.raw_dir/data.real.download_dir and downloads are off: "
            + "; ".join(parts) + ". Their staging jobs fail with instructions; everything else can still be built "
            "(snakemake --keep-going).")
