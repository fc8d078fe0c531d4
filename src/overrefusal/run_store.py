"""Published runs: one run's results committed under ``results/published/<name>/runs/``, so that a study made
of parts (one seed per part, say) can be finished on another day, on a fresh clone, without redoing what
earlier parts committed.

A *run* is one (model, method, seed). Publishing it copies the files the report rules read (every benchmark's
judged JSON, capability, an intervention's report, SFT metrics and tracking where they exist) into
``results/published/<name>/runs/<model>/<method>/seed<k>/``, JSON gzipped (a study's judged rows are ~1 kB a
prompt; gzip keeps the committed store a few MB), beside a ``recipe.json``: what the run's results depend on
in the config (:func:`run_recipe`), its sha256, each file's sha256, the commit and machine, and the seconds of
each of the run's jobs (Snakemake's ``benchmark:`` files).

With ``handover.reuse`` on, planning takes a run's results from its published copy whenever the recipe there
equals the one the config gives now (:func:`resolve`); Snakemake then sees committed files, not outputs to
make, and trains nothing for that run. A published run made under another recipe is ignored, with a warning
naming the settings that differ, and the run is made again. Code changes are not in the recipe (the commit is
recorded beside it): after a change that alters results, delete the published runs or switch reuse off.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import atomic_dir, dumps, read_json, sha256_file
from .methods import KINDS, intervened_method, method_params

RUNS = "runs"
RECIPE = "recipe.json"
# Config keys that say where things are on this machine, not what a run computes.
_LOCAL_DATA_KEYS = ("raw_dir",)
_LOCAL_REAL_KEYS = ("download", "download_dir", "github_mirror", "allow_unpinned")


def run_recipe(config: Mapping[str, Any], model: str, method: str, seed: int) -> dict[str, Any]:
    """What a run's results depend on in the config: the model, the method's own params (its kind's section and
    SFT settings; an intervention's also those of the method it runs on), the seed, the data, evaluation and
    capability settings, and the compute dtype. Nothing of other methods, other seeds or the tune grids, so that
    choosing DCR's layer leaves the published no-safety runs usable."""
    def params(m: str) -> dict[str, Any]:
        p = method_params(dict(config), m)
        on = intervened_method(dict(config), m)
        if on is not None:
            p["applies_to"] = {on: params(on)}
        return p

    data = copy.deepcopy(dict(config["data"]))
    for k in _LOCAL_DATA_KEYS:
        data.pop(k, None)
    if isinstance(data.get("real"), dict):
        for k in _LOCAL_REAL_KEYS:
            data["real"].pop(k, None)
    kind = KINDS[params(method)["kind"]]
    recipe: dict[str, Any] = {
        "model": {model: copy.deepcopy(config["models"][model])},
        "method": params(method),
        "seed": int(seed),
        "data": data,
        "eval": {k: copy.deepcopy(v) for k, v in config["eval"].items() if k not in ("benchmarks", "judge_validation")},
        "capability": copy.deepcopy(config["capability"]),
        "compute": {k: config["compute"][k] for k in ("device", "dtype")},
    }
    if kind.reflections:  # the reflections a TBR run trains on are written by these settings
        recipe["tbr"] = copy.deepcopy(config["tbr"])
        recipe["teacher"] = copy.deepcopy(config.get("teacher"))
    return recipe


def recipe_sha256(recipe: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def published_dir(published_root: str, model: str, method: str, seed: int | str) -> str:
    return f"{published_root}/{RUNS}/{model}/{method}/seed{seed}"


def stored_name(rel: str) -> str:
    """A run file's name in the store: JSON gzipped (``read_json`` reads both)."""
    return f"{rel}.gz" if rel.endswith(".json") else rel


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "(root)"]


@dataclass(frozen=True)
class Resolved:
    """Where the report rules read one run's files: ``root`` and whether that is its published copy."""

    root: str
    published: bool

    def file(self, rel: str) -> str:
        return f"{self.root}/{stored_name(rel) if self.published else rel}"


def resolve(run_dir: str, store: str, recipe: Mapping[str, Any], files: Iterable[str], *, reuse: bool,
            warn: Any = None) -> Resolved:
    """The published copy when reuse is on, its recipe equals ``recipe`` and it holds every file the report
    rules will read; else the run directory (so the run is made). ``warn`` gets a message for a copy that
    exists but is not used."""
    rec_path = Path(store) / RECIPE
    if not reuse or not rec_path.is_file():
        return Resolved(run_dir, False)
    stored = read_json(rec_path)
    if stored.get("recipe_sha256") != recipe_sha256(recipe):
        if warn is not None:
            diff = _diff_keys(stored.get("recipe", {}), dict(recipe))
            warn(f"{store}: published under another recipe ({', '.join(diff[:8]) or 'unknown keys'} differ); "
                 f"it is not used and {run_dir} is made again")
        return Resolved(run_dir, False)
    missing = [f for f in files if not (Path(store) / stored_name(f)).is_file()]
    if missing:
        if warn is not None:
            warn(f"{store}: lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; it is not used "
                 f"and {run_dir} is made again")
        return Resolved(run_dir, False)
    return Resolved(store, True)


def _gzip_copy(src: Path, dest: Path) -> None:
    """gzip without a timestamp or name in the header: the same bytes in give the same bytes out."""
    with src.open("rb") as fin, dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                                     mtime=0, compresslevel=9) as fout:
        shutil.copyfileobj(fin, fout)


def job_seconds(benchmark_dir: str | Path) -> dict[str, float]:
    """Wall seconds of each of a run's jobs, from its Snakemake ``benchmark:`` files (``<job>.tsv``)."""
    out: dict[str, float] = {}
    for tsv in sorted(Path(benchmark_dir).rglob("*.tsv")):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if len(lines) >= 2:
            header, last = lines[0].split("\t"), lines[-1].split("\t")
            out[tsv.relative_to(benchmark_dir).with_suffix("").as_posix()] = float(last[header.index("s")])
    return out


def publish_run(run_dir: str | Path, store: str | Path, files: Iterable[str], recipe: Mapping[str, Any], *,
                provenance: Mapping[str, Any] | None = None, benchmark_dir: str | Path | None = None) -> dict:
    """Copy a run's ``files`` (relative to ``run_dir``) into ``store``, replacing it whole and atomically (a
    killed publish leaves the old copy or none, never a mix), with its recipe; returns the recipe record."""
    run_dir, store = Path(run_dir), Path(store)
    record: dict[str, Any] = {"recipe_sha256": recipe_sha256(recipe), "recipe": dict(recipe), "files": {},
                              **dict(provenance or {})}
    if benchmark_dir is not None and Path(benchmark_dir).is_dir():
        record["job_seconds"] = job_seconds(benchmark_dir)
    with atomic_dir(store) as tmp:
        for rel in files:
            src = run_dir / rel
            if not src.is_file():
                raise FileNotFoundError(f"{src}: the run lacks a file it publishes")
            dest = tmp / stored_name(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".json"):
                _gzip_copy(src, dest)
            else:
                shutil.copyfile(src, dest)
            record["files"][stored_name(rel)] = sha256_file(dest)
        (tmp / RECIPE).write_text(dumps(record), encoding="utf-8")  # inside the directory that appears whole
    return record


def plan_parts(methods: Iterable[str], seeds_of: Mapping[str, list[int]], applies_to: Mapping[str, str],
               groups: list[list[str]]) -> dict[str, list[tuple[str, int]]]:
    """Part ``seed<k>-<i>`` -> the (method, seed) runs of group i (1-based) on seed k; ``groups`` empty: one
    group of every method. Every method is in exactly one group, with the method it intervenes on (its
    checkpoint is not published, so the two are made in one part)."""
    methods = list(methods)
    groups = [list(g) for g in groups] or [methods]
    where: dict[str, int] = {}
    for i, group in enumerate(groups, start=1):
        for m in group:
            if m not in methods:
                raise ValueError(f"handover.parts[{i - 1}]: '{m}' is not an enabled method "
                                 f"(enabled: {', '.join(methods)})")
            if m in where:
                raise ValueError(f"handover.parts: '{m}' is in groups {where[m] - 1} and {i - 1}; put it in one")
            where[m] = i
    missing = [m for m in methods if m not in where]
    if missing:
        raise ValueError(f"handover.parts: {', '.join(missing)} in no group; every enabled method needs one")
    for m, on in applies_to.items():
        if m in where and on in where and where[m] != where[on]:
            raise ValueError(f"handover.parts: '{m}' runs on the checkpoint of '{on}', so it must be in the same "
                             f"group (it is in {where[m] - 1}, '{on}' in {where[on] - 1})")
    seeds = sorted({s for m in methods for s in seeds_of[m]})
    parts: dict[str, list[tuple[str, int]]] = {}
    for k in seeds:
        for i, group in enumerate(groups, start=1):
            runs = [(m, k) for m in group if k in seeds_of[m]]
            if runs:
                parts[f"seed{k}-{i}"] = runs
    return parts


def part_record(part: str, runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A part's record: its runs, whether this invocation published each or found it published, and the
    seconds of their jobs (from each published recipe), all of them: what the part costs to make, whenever its
    runs were made (its wall time where its jobs ran one after another)."""
    rows = []
    for r in runs:
        rec = read_json(Path(r["store"]) / RECIPE)
        secs = rec.get("job_seconds", {})
        rows.append({**dict(r), "recipe_sha256": rec["recipe_sha256"], "job_seconds": round(sum(secs.values()), 1),
                     "code": rec.get("code"), "machine": rec.get("machine")})
    return {"part": part, "runs": rows, "published": sum(not r["reused"] for r in rows),
            "reused": sum(bool(r["reused"]) for r in rows),
            "job_seconds": round(sum(r["job_seconds"] for r in rows), 1)}


def parts_markdown(records: Iterable[Mapping[str, Any]]) -> str:
    """The parts published so far: their runs and the wall seconds of the jobs that made them."""
    def hm(seconds: float) -> str:
        m = round(seconds / 60)
        return f"{m // 60} h {m % 60:02d} min"

    lines = ["| part | runs (method) | job time | machine |", "|---|---|---:|---|"]
    for r in sorted(records, key=lambda r: r["part"]):
        machines = sorted({str(x.get("machine")) for x in r["runs"]}) or ["–"]
        lines.append(f"| {r['part']} | {', '.join(x['method'] for x in r['runs']) or '–'} | "
                     f"{hm(r['job_seconds'])} | {', '.join(machines)} |")
    return "\n".join(lines) + "\n"
