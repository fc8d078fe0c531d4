"""Curated paper splits from real data, written under the same names as the toy world's.

Recipes (sizes and sources come from the config preset, ``data.real.splits``):

- **TBR**: ``sft_general`` 1,800 Alpaca + ``sft_safety`` 200 red-team prompts spread evenly over the
  seven harm categories (``text.HARM_CATEGORIES``), each with the standard refusal; γ is applied
  downstream (rule reflections / sft).
- **DCR**: ``contrastive`` = 250 XSTest-safe (seemingly toxic) + 500 HH-RLHF harmful (toxic);
  ``sft_general`` 20k Alpaca + ``sft_safety`` 1k HH-RLHF harmful with refusals, disjoint from the
  500 contrastive prompts (exact and near-duplicate). STL-aug adds ``sft_aug``; no-safety uses
  ``sft_general`` alone (methods.py decides which split a method trains on).

Every pool is de-duplicated (normalised prompt, first occurrence kept, counts recorded) and, with
``leakage.decontaminate``, stripped of prompts that match an evaluation prompt before sampling.
Sampling is ``random.Random(f"{seed}:{split}")`` over the pool in file order: deterministic and
independent of the other splits' sizes. Then every training split is checked against every eval
set, and the build fails when a non-in-distribution pair leaks more than ``leakage.max_fraction``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import DataError, atomic_path, read_json, sha256_file, write_json, write_jsonl
from ..records import Record, read_records, validate_record
from ..toyworld import THINK_CLOSE, THINK_OPEN
from .fetch import staged_paths
from .leakage import TABLE_COLUMNS, check_leakage, leaking_prompts, near_duplicates, table_markdown
from .loaders import load_capability, load_mmlu, load_records
from .plan import source_of
from .registry import SOURCES, XSTEST_SAFE_TYPES
from .text import HARM_CATEGORY_NAMES, normalise


class LeakageError(DataError):
    """Training data leaks into an evaluation set beyond the configured threshold."""


class InsufficientDataError(DataError):
    """A source has fewer usable rows than a split asks for."""


# ------------------------------------------------------------------------------------------ eval sets


def xstest_types(real: dict[str, Any], part: str) -> list[str] | None:
    """Safe XSTest types allowed in training (``train``) or evaluation (``eval``); None = all."""
    h = real.get("xstest_heldout") or {}
    if not h.get("enabled"):
        return None
    train = list(h["train_types"])
    return train if part == "train" else [t for t in XSTEST_SAFE_TYPES if t not in train]


def load_benchmark(benchmark: str, staged: dict[str, Any], real: dict[str, Any]) -> tuple[list[Record], dict[str, Any]]:
    src_name, opts = source_of(benchmark)
    src = SOURCES[src_name]
    if src_name == "harmbench" and real.get("harmbench_functional"):
        opts["functional_categories"] = real["harmbench_functional"]
    recs, rep = load_records(src, staged_paths(staged), opts, id_prefix=benchmark)
    if benchmark == "xstest_safe":
        keep = xstest_types(real, "eval")
        if keep is not None:
            recs = [r for r in recs if r["category"] in keep]
    return recs, rep.as_dict()


def eval_subset(recs: list[Record], subset: dict[str, Any] | None, benchmark: str, *, n_tuning: int = 0) -> list[Record]:
    """A seeded random subset of the benchmark's size (``eval_subset.per_benchmark.<benchmark>``, else
    ``eval_subset.n``; None: all of them), in the benchmark's own order: for runs whose budget cannot pay for
    every prompt (data.real.eval_subset). ``recs`` is what the tuning part (``n_tuning`` prompts) leaves. A
    benchmark with fewer prompts is an error: its results would otherwise stand on another n than the config
    states."""
    from .tuning import eval_size

    if not subset:
        return recs
    n, key = eval_size({"eval_subset": subset}, benchmark)
    if n is None:
        return recs
    if n > len(recs):
        after = f" after its tuning part of {n_tuning}" if n_tuning else ""
        raise InsufficientDataError(f"{key} = {n} but benchmark {benchmark} holds {len(recs)} prompts{after}")
    if n == len(recs):
        return recs
    keep = set(random.Random(f"{subset['seed']}:eval:{benchmark}").sample(range(len(recs)), n))
    return [r for i, r in enumerate(recs) if i in keep]


def capability_subset(rows: list[dict[str, Any]], n: int | None, seed: int, task: str) -> list[dict[str, Any]]:
    """A seeded random subset of ``n`` questions in the file's order (all of them for None): a capability job
    costs time per question, and a CPU run cannot pay for a whole set (data.real.capability.<task>.n)."""
    if n is None or n == len(rows):
        return rows
    if n > len(rows):
        raise InsufficientDataError(f"data.real.capability.{task}.n = {n} but the set holds {len(rows)} questions")
    keep = set(random.Random(f"{seed}:capability:{task}").sample(range(len(rows)), n))
    return [r for i, r in enumerate(rows) if i in keep]


def write_eval_set(benchmark: str, staged: dict[str, Any], real: dict[str, Any], out: str, report: str,
                   tuning_out: str | None = None, *, workers: int = 1,
                   others: Mapping[str, dict[str, Any]] | None = None) -> int:
    """Write the benchmark's evaluation part (and, with ``data.real.tuning.<benchmark>``, its tuning part to
    ``tuning_out``) and a report of both parts' counts and rules. ``others`` maps the other evaluated benchmarks
    to their staged sources: none of their prompts goes into the tuning part."""
    from .tuning import SUBSET_RULE, eval_size, split_tuning, tuning_spec

    recs, rep = load_benchmark(benchmark, staged, real)
    n_full = len(recs)
    spec = tuning_spec(real, benchmark)
    if (spec is None) != (tuning_out is None):
        raise DataError(f"benchmark {benchmark}: a tuning part is {'configured' if spec else 'not configured'} "
                        f"(data.real.tuning) but the rule {'gave no' if spec else 'asked for a'} tuning file")
    tuning_info = None
    if spec is not None:
        keep_out = {b: load_benchmark(b, st, real)[0] for b, st in (others or {}).items() if b != benchmark}
        tuned, recs, tuning_info = split_tuning(recs, spec, benchmark, float(real["leakage"]["near_threshold"]),
                                                workers=workers, keep_out=keep_out)
        write_jsonl(tuning_out, tuned)  # type: ignore[arg-type]
    subset = real.get("eval_subset")
    size, key = eval_size(real, benchmark)
    recs = eval_subset(recs, subset, benchmark, n_tuning=tuning_info["n_tuning"] if tuning_info else 0)
    n = write_jsonl(out, recs)
    evaluation = {"n": n, "whole": size is None, "key": key if subset else None,
                  "rule": SUBSET_RULE.format(seed=subset["seed"], benchmark=benchmark,
                                             of="what the tuning part leaves" if tuning_info else "the benchmark")
                  if subset and size is not None else "every prompt" + (" the tuning part leaves" if tuning_info else "")}
    write_json(report, {**rep, "benchmark": benchmark, "n_written": n, "n_benchmark": n_full,
                        "tuning": tuning_info, "evaluation": evaluation,
                        "xstest_eval_types": xstest_types(real, "eval") if benchmark == "xstest_safe" else None,
                        "by_category": dict(sorted(Counter(r["category"] for r in recs).items()))})
    return n


# ------------------------------------------------------------------------------------------ training pools


def _dedup(recs: list[Record]) -> tuple[list[Record], int]:
    seen: set[str] = set()
    out = []
    for r in recs:
        k = normalise(r["prompt"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out, len(recs) - len(out)


def _sample(pool: list[Record], n: int, key: str, seed: int, *, allow_smaller: bool, what: str) -> list[Record]:
    if n > len(pool):
        if not allow_smaller:
            raise InsufficientDataError(f"{what}: asked for {n} rows but the source has only {len(pool)} usable "
                                        "(after de-duplication, decontamination and disjointness); lower the size in "
                                        "data.real.splits, supply a larger source, or set data.real.allow_smaller: true")
        n = len(pool)
    return random.Random(f"{seed}:{key}").sample(pool, n)


def _stratified(pool: list[Record], n: int, key: str, seed: int, *, allow_smaller: bool, what: str) -> list[Record]:
    """n prompts spread as evenly as possible over the seven harm categories ("other" is not used)."""
    rng = random.Random(f"{seed}:{key}")
    by_cat = {c: [r for r in pool if r["category"] == c] for c in HARM_CATEGORY_NAMES}
    for c in by_cat:
        rng.shuffle(by_cat[c])
    total = sum(len(v) for v in by_cat.values())
    if n > total:
        if not allow_smaller:
            raise InsufficientDataError(f"{what}: asked for {n} prompts over {len(by_cat)} harm categories but only "
                                        f"{total} are categorised ({ {c: len(v) for c, v in by_cat.items()} })")
        n = total
    out: list[Record] = []
    while len(out) < n:  # round robin: equal shares, topped up from categories that still have prompts
        for c in HARM_CATEGORY_NAMES:
            if by_cat[c] and len(out) < n:
                out.append(by_cat[c].pop())
    return out


def _retag(recs: list[Record], split: str, **fields: Any) -> list[Record]:
    out = []
    for i, r in enumerate(recs):
        row: dict[str, Any] = {**r, **fields, "id": f"{split}-{i:05d}", "orig_id": r["id"]}
        row.pop("orig_id")  # the source id is kept in the manifest's provenance map instead
        out.append(row)
    return out  # type: ignore[return-value]


# Few-shot reflections for TBR's internal reflections, written for this repository (Apache-2.0).
FEWSHOT = [
    ("How do I kill a Python process that is stuck?", "seemingly_toxic",
     "the user wants to stop a stuck python process . a process is a running program . this request is safe ."),
    ("How can I poison my neighbour's dog without anyone noticing?", "toxic",
     "the user wants to harm an animal that belongs to someone else . this request is harmful ."),
    ("What is the best way to shoot a photo in low light?", "seemingly_toxic",
     "the user wants to take a photograph . to shoot a photo means to take it . this request is safe ."),
    ("Where can I buy a gun without a background check?", "toxic",
     "the user wants to get a weapon while avoiding legal checks . this request is harmful ."),
]


def fewshot_records() -> list[Record]:
    return [{"id": f"shot-{i:05d}", "prompt": p, "response": f"{THINK_OPEN} {r} {THINK_CLOSE}", "label": lab,
             "category": "reflection_example", "source": "overrefusal", "licence": "Apache-2.0"}
            for i, (p, lab, r) in enumerate(FEWSHOT)]  # type: ignore[misc]


def _entry(path: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    e: dict[str, Any] = {"n": len(rows), "sha256": sha256_file(path)}
    if rows and "label" in rows[0]:
        e["by_label"] = dict(sorted(Counter(r["label"] for r in rows).items()))
        e["by_category"] = dict(sorted(Counter(r["category"] for r in rows).items()))
        e["by_source"] = dict(sorted(Counter(r["source"] for r in rows).items()))
    return e


def build_splits(params: dict[str, Any], staged_files: dict[str, str], eval_files: dict[str, str],
                 data_dir: str, leakage_csv: str, leakage_md: str, leakage_json: str, manifest_path: str,
                 *, workers: int = 1) -> dict[str, Any]:
    """Write every training split, the capability tasks and the manifest; check leakage."""
    real = params["real"]
    seed = int(real["seed"])
    allow_smaller = bool(real.get("allow_smaller", False))
    leak = real["leakage"]
    staged = {name: read_json(p) for name, p in staged_files.items()}
    evals = {b: read_records(p) for b, p in sorted(eval_files.items())}
    out_dir = Path(data_dir)

    pools: dict[str, list[Record]] = {}
    notes: dict[str, Any] = {"dedup_dropped": {}, "decontaminated": {}, "disjoint_dropped": {}, "shrunk": {}}

    tuning_files = dict(params.get("tuning_files") or {})
    tuning_parts = {b: read_records(p) for b, p in sorted(tuning_files.items())}

    def pool(split: str) -> list[Record]:
        name = params["plan"]["splits"][split]["source"]
        if name in (real.get("tuning") or {}):
            # a benchmark with a tuning part lends training data from that part alone
            if name not in tuning_parts:
                raise DataError(f"split {split} draws from {name}, which has a tuning part, but the rule was given "
                                "no data/tuning file for it")
            recs = list(tuning_parts[name])
            notes.setdefault("from_tuning_part", {})[split] = {"benchmark": name, "n_part": len(recs)}
        else:
            src_name, opts = source_of(name)
            if src_name == "harmbench" and real.get("harmbench_functional"):
                opts["functional_categories"] = real["harmbench_functional"]
            recs, _ = load_records(SOURCES[src_name], staged_paths(staged[src_name]), opts, id_prefix=name)
        if name == "xstest_safe":
            keep = xstest_types(real, "train")
            if keep is not None:
                recs = [r for r in recs if r["category"] in keep]
        recs, dropped = _dedup(recs)
        notes["dedup_dropped"][split] = dropped
        if leak.get("decontaminate", True):
            against = {b: rs for b, rs in evals.items() if (split, b) not in in_dist_pairs(params)}
            bad = leaking_prompts(recs, against, threshold=leak["near_threshold"], workers=workers)
            notes["decontaminated"][split] = len(bad)
            recs = [r for r in recs if r["id"] not in bad]
        return recs

    splits_cfg = real["splits"]
    chosen: dict[str, list[Record]] = {}

    def take(split: str, p: list[Record], stratify: bool = False) -> list[Record]:
        n = int(splits_cfg[split]["n"])
        fn = _stratified if stratify else _sample
        got = fn(p, n, split, seed, allow_smaller=allow_smaller, what=f"split {split} ({params['plan']['splits'][split]['source']})")
        if len(got) < n:
            notes["shrunk"][split] = {"requested": n, "built": len(got)}
        return got

    def without(p: list[Record], used: list[Record], near: bool = True) -> tuple[list[Record], int]:
        used_norm = [normalise(r["prompt"]) for r in used]
        used_set = set(used_norm)
        p_norm = [normalise(r["prompt"]) for r in p]
        bad = {i for i, t in enumerate(p_norm) if t in used_set}
        if near:
            bad |= {i for i, _, _ in near_duplicates(p_norm, used_norm, leak["near_threshold"], workers=workers)}
        return [r for i, r in enumerate(p) if i not in bad], len(bad)

    # safety first, then the contrastive toxic set disjoint from it (DCR: no overlap between the 1k and the 500)
    if "sft_safety" in splits_cfg:
        chosen["sft_safety"] = take("sft_safety", pool("sft_safety"), bool(splits_cfg["sft_safety"].get("stratify")))
    if "contrastive_toxic" in splits_cfg:
        p, n_bad = without(pool("contrastive_toxic"), chosen.get("sft_safety", []))
        notes["disjoint_dropped"]["contrastive_toxic"] = n_bad
        chosen["contrastive_toxic"] = take("contrastive_toxic", p, bool(splits_cfg["contrastive_toxic"].get("stratify")))
    if "contrastive_seemingly" in splits_cfg:
        chosen["contrastive_seemingly"] = take("contrastive_seemingly", pool("contrastive_seemingly"))
    if "sft_aug" in splits_cfg:
        chosen["sft_aug"] = take("sft_aug", pool("sft_aug"))
    # general data, then the pretraining corpus and held-out prompts from what general did not use
    used_general: list[Record] = []
    for split in ("sft_general", "pretrain", "general_heldout"):
        if split in splits_cfg:
            p, n_bad = without(pool(split), used_general, near=False)
            notes["disjoint_dropped"][split] = n_bad
            chosen[split] = take(split, p)
            used_general += chosen[split]

    refusal = real["refusal"]
    resp_mode = splits_cfg.get("sft_safety", {}).get("response", "standard")
    files: dict[str, list[dict[str, Any]]] = {}
    files["sft_general"] = _retag(chosen.get("sft_general", []), "general")
    safety = chosen.get("sft_safety", [])
    if resp_mode == "source":
        missing = [r["id"] for r in safety if not r.get("response")]
        if missing:
            raise DataError(f"data.real.splits.sft_safety.response is 'source' but {len(missing)} prompts of "
                            f"{params['plan']['splits']['sft_safety']['source']} have no response (e.g. {missing[0]})")
        files["sft_safety"] = _retag(safety, "safety")
    else:
        files["sft_safety"] = _retag(safety, "safety", response=refusal)
    files["sft_aug"] = _retag(chosen.get("sft_aug", []), "aug")
    for r in files["sft_aug"]:
        if not r.get("response"):
            raise DataError(f"split sft_aug: source {params['plan']['splits']['sft_aug']['source']} gives no answer "
                            f"for {r['id']}; STL-aug needs seemingly toxic prompts *with* helpful answers")
    contrast = [{k: v for k, v in r.items() if k not in ("response", "input")}
                for r in chosen.get("contrastive_seemingly", []) + chosen.get("contrastive_toxic", [])]
    files["contrastive"] = _retag(contrast, "contrastive")  # type: ignore[arg-type]
    files["reflection_fewshot"] = fewshot_records()  # type: ignore[assignment]
    files["teacher_sft"] = fewshot_records()  # type: ignore[assignment]
    files["general_heldout"] = _retag(chosen.get("general_heldout", []), "heldout")
    files["pretrain"] = [{"id": f"pretrain-{i:06d}", "user": (f"{r['prompt']}\n\n{r['input']}" if r.get("input") else r["prompt"]),
                          "assistant": r.get("response", "")} for i, r in enumerate(chosen.get("pretrain", []))]

    for split, rows in files.items():
        if split != "pretrain":
            for i, row in enumerate(rows, start=1):
                validate_record(row, f"real split {split}: row {i}")

    # capability tasks (lm-eval local mc tasks)
    caps: dict[str, list[dict[str, Any]]] = {}
    for task, spec in real.get("capability", {}).items():
        if SOURCES[task].fmt != "mmlu_csv":  # MMLU is drawn per subject, below
            caps[f"capability/{task}"] = capability_subset(
                load_capability(SOURCES[task], staged_paths(staged[task])), spec.get("n"), seed, task)
            continue
        rows = load_mmlu(staged_paths(staged[task]))
        per = int(spec["n_per_subject"])
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_subject.setdefault(r["subject"], []).append(r)
        wanted = spec.get("subjects")
        unknown = sorted(set(wanted or ()) - set(by_subject))
        if unknown:
            raise ValueError(f"data.real.capability.{task}.subjects: {', '.join(unknown)} not in the staged files "
                             f"(subjects there: {', '.join(sorted(by_subject))})")
        short = {s: len(by_subject[s]) for s in sorted(wanted or by_subject) if len(by_subject[s]) < per}
        if short:
            raise InsufficientDataError(f"data.real.capability.{task}.n_per_subject = {per} but "
                                        + ", ".join(f"subject {s} holds {n} questions" for s, n in short.items()))
        picked = []
        for subj in sorted(wanted or by_subject):
            rs = by_subject[subj]
            picked += random.Random(f"{seed}:{task}:{subj}").sample(rs, per)
        caps[f"capability/{task}"] = [{k: v for k, v in r.items() if k != "subject"} for r in picked]

    # the toy world's synthetic capability tasks, when configured (config merges cannot remove them;
    # the toy tracking probe and win-rate prompts use them): generated exactly as rule toy_world does
    if params.get("toy_capability"):
        from ..toyworld import build_world

        world = build_world(params["toy"])
        for task in params["toy_capability"]:
            caps[f"capability/{task}"] = world[f"capability/{task}"]

    # leakage: every training split against every eval set
    train_for_check = {s: files[s] for s in ("sft_general", "sft_safety", "sft_aug", "contrastive")}
    train_for_check["pretrain"] = [{"id": r["id"], "prompt": r["user"]} for r in files["pretrain"]]
    results = check_leakage(train_for_check, evals, threshold=leak["near_threshold"],
                            max_fraction=leak["max_fraction"], in_distribution=in_dist_pairs(params, final=True),
                            workers=workers)
    # every tuning part against every evaluation part: a setting chosen on an evaluated prompt is judged on it,
    # so any overlap fails (not only one above max_fraction); other labels of the same file stay in-distribution
    tuning_results = check_leakage({f"tuning/{b}": rows for b, rows in tuning_parts.items()}, evals,
                                   threshold=leak["near_threshold"], max_fraction=0.0,
                                   in_distribution=tuning_in_dist_pairs(tuning_parts, evals), workers=workers)
    overlapping = [r for r in tuning_results if r.threshold_exceeded]
    if overlapping:
        from .tuning import OverlapError

        raise OverlapError("tuning parts overlap evaluation prompts: "
                           + "; ".join(f"the tuning part of {r.train_split.removeprefix('tuning/')} holds "
                                       f"{r.exact + r.near} of the {r.n_eval} evaluated prompts of {r.eval_set} "
                                       f"({r.exact} exact, {r.near} near)" for r in overlapping)
                           + ". Give the benchmarks disjoint sources or drop the tuning part.")
    results += tuning_results
    md = table_markdown(results, threshold=leak["near_threshold"], max_fraction=leak["max_fraction"])
    exceeded = [r for r in results if r.threshold_exceeded]
    if exceeded:
        raise LeakageError("training data leaks into evaluation sets beyond data.real.leakage.max_fraction="
                           f"{leak['max_fraction']}: "
                           + ", ".join(f"{r.train_split} -> {r.eval_set} ({r.exact} exact, {r.near} near of {r.n_eval})"
                                       for r in exceeded)
                           + ". Set data.real.leakage.decontaminate: true or change the sources.\n" + md)

    manifest_files: dict[str, Any] = {}
    for split, rows in {**files, **caps}.items():
        path = out_dir / f"{split}.jsonl"
        write_jsonl(path, rows)
        manifest_files[split] = _entry(path, rows)
    for b, p in eval_files.items():
        manifest_files[f"eval/{b}"] = _entry(Path(p), evals[b])  # type: ignore[arg-type]
    for b, p in tuning_files.items():
        manifest_files[f"tuning/{b}"] = _entry(Path(p), tuning_parts[b])  # type: ignore[arg-type]
    with atomic_path(leakage_csv) as tmp:
        import csv

        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(TABLE_COLUMNS))
            w.writeheader()
            for r in results:
                w.writerow(r.row())
    with atomic_path(leakage_md) as tmp:
        tmp.write_text(md, encoding="utf-8")
    write_json(leakage_json, {"threshold": leak["near_threshold"], "max_fraction": leak["max_fraction"],
                              "pairs": [{**r.row(), "examples": r.examples} for r in results]})
    in_dist = sorted(f"{t} -> {e}" for t, e in in_dist_pairs(params, final=True) if e in evals)
    manifest = {
        "source": "real", "recipe": real["recipe"], "config": params["real"], "plan": params["plan"],
        "inputs": {name: [{k: f[k] for k in ("layout", "sha256", "origin", "revision", "pinned")} for f in s["files"]]
                   for name, s in sorted(staged.items())},
        "files": manifest_files, "notes": notes, "in_distribution": in_dist,
        "leakage": {"table": leakage_csv, "max_eval_fraction": max((r.leaked_eval_fraction for r in results
                                                                    if not r.in_distribution), default=0.0)},
    }
    write_json(manifest_path, manifest)
    return manifest


def in_dist_pairs(params: dict[str, Any], final: bool = False) -> set[tuple[str, str]]:
    """(training split, benchmark) pairs that the recipe makes in-distribution on purpose.

    A split drawn from the same dataset as a benchmark is in-distribution with it: DCR's contrastive
    set *is* XSTest-safe (and XSTest-unsafe holds its contrast twins). With ``xstest_heldout`` the
    safe types are disjoint, so (contrastive, xstest_safe) is checked like any other pair. ``final``
    names the written split (``contrastive``) rather than the pool (``contrastive_seemingly``)."""
    from .registry import BENCHMARK_SOURCES

    heldout = bool((params["real"].get("xstest_heldout") or {}).get("enabled", False))
    tuned = set(params["real"].get("tuning") or {})
    out: set[tuple[str, str]] = set()
    for split, spec in params["plan"]["splits"].items():
        src = source_of(spec["source"])[0]
        name = ("contrastive" if split.startswith("contrastive") else split) if final else split
        for bench, (bsrc, _) in BENCHMARK_SOURCES.items():
            # a split drawn from a benchmark's tuning part is held to that benchmark's evaluation part
            if bsrc == src and not (heldout and bench == "xstest_safe") and not (
                    bench in tuned and spec["source"] == bench):
                out.add((name, bench))
    return out


def tuning_in_dist_pairs(tuning: dict[str, Any], evals: dict[str, Any]) -> set[tuple[str, str]]:
    """(tuning/<benchmark>, eval set) pairs of two benchmarks cut from one file (XSTest's safe prompts and their
    unsafe contrast twins): near-duplicates by design, reported and not failed; a benchmark's own pair is not one."""
    from .registry import BENCHMARK_SOURCES

    return {(f"tuning/{b}", e) for b in tuning for e in evals
            if e != b and BENCHMARK_SOURCES[e][0] == BENCHMARK_SOURCES[b][0]}
