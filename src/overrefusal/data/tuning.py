"""Tuning parts of evaluation benchmarks (``data.real.tuning``) and per-benchmark evaluation sizes.

Settings chosen on the prompts they are judged by overstate a method, so a benchmark used for tuning is cut
in two before anything reads it: the *tuning part* (``data/tuning/<benchmark>.jsonl``, for the rules that
choose settings, and the source of a training split that names the benchmark) and the *evaluation part*
(``data/eval/<benchmark>.jsonl``, after ``data.real.eval_subset``). The cut depends on nothing but the seed,
the benchmark's name and each prompt's normalised text, so it is the same on every machine and does not move
when another benchmark or split changes size:

- every prompt gets the key ``sha256(f"{seed}:{benchmark}:{normalise(prompt)}")``;
- prompts whose normalised texts are equal or near-duplicates (rapidfuzz ratio >= the leakage threshold)
  form one group, keyed by its smallest member key, so no near-copy sits on both sides (CoCoNot contrast
  holds 15 such pairs, AdvBench 36);
- groups are taken in key order while they fit the part's size, so the part holds exactly n prompts.

A fraction is rounded to whole prompts. Each part's counts and the rule are recorded in the eval report
and the data card.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..io import DataError
from ..records import Record
from .leakage import near_duplicates
from .registry import XSTEST_SAFE_TYPES
from .text import normalise

TUNING_RULE = ("the {n} prompts with the smallest sha256('{seed}:{benchmark}:' + normalised prompt); equal and "
               "near-duplicate prompts (rapidfuzz ratio >= {threshold:g}) stay on one side")
SUBSET_RULE = "random.Random('{seed}:eval:{benchmark}').sample of {of}, in file order"

# Rows of the benchmarks that are one label (or category) of a larger file, as documented by their sources
# (../shared/data/SOURCES.md: XSTest 450 = 250 safe + 200 unsafe, 10 safe types x 25; HarmBench's test file by
# FunctionalCategory: 159 standard, 81 contextual, 80 copyright). Every other benchmark is its whole file.
XSTEST_ROWS = {"xstest_safe": 250, "xstest_unsafe": 200}
XSTEST_PER_TYPE = 25
HARMBENCH_ROWS = {"standard": 159, "contextual": 81, "copyright": 80}


class OverlapError(DataError):
    """A tuning part shares prompts with an evaluation part."""


def tuning_spec(real: Mapping[str, Any] | None, benchmark: str) -> dict[str, Any] | None:
    spec = ((real or {}).get("tuning") or {}).get(benchmark)
    return dict(spec) if spec else None


def tuning_size(spec: Mapping[str, Any], total: int) -> int:
    """Prompts in the tuning part of a benchmark of ``total`` prompts."""
    if "n" in spec:
        return int(spec["n"])
    return int(round(float(spec["fraction"]) * total))


def eval_size(real: Mapping[str, Any] | None, benchmark: str) -> tuple[int | None, str]:
    """(evaluated prompts, the config key that sets them); None: every prompt the tuning part leaves."""
    subset = (real or {}).get("eval_subset")
    if not subset:
        return None, "data.real.eval_subset"
    per = subset.get("per_benchmark") or {}
    if benchmark in per:
        return per[benchmark], f"data.real.eval_subset.per_benchmark.{benchmark}"
    return subset["n"], "data.real.eval_subset.n"


def benchmark_rows(benchmark: str, real: Mapping[str, Any]) -> tuple[int | None, str]:
    """(prompts the benchmark holds, what says so), known before staging; None where only the data knows."""
    from .fetch import rows_of
    from .registry import BENCHMARK_SOURCES, SOURCES

    src = BENCHMARK_SOURCES[benchmark][0]
    restated = src in (real.get("pins") or {}) and "rows" in real["pins"][src]
    if benchmark in XSTEST_ROWS and not restated:
        held = real.get("xstest_heldout") or {}
        if benchmark == "xstest_safe" and held.get("enabled"):
            n = XSTEST_PER_TYPE * (len(XSTEST_SAFE_TYPES) - len(held["train_types"]))
            return n, "XSTest's safe types not in data.real.xstest_heldout.train_types, 25 each"
        return XSTEST_ROWS[benchmark], f"the {benchmark.split('_')[1]} prompts of xstest"
    if benchmark == "harmbench" and real.get("harmbench_functional") and not restated:
        cats = list(real["harmbench_functional"])
        return sum(HARMBENCH_ROWS[c] for c in cats), f"harmbench's {'/'.join(cats)} behaviours"
    return rows_of(SOURCES[src], real.get("pins")), f"the rows of {src}"


def _groups(norm: Sequence[str], threshold: float, workers: int) -> list[list[int]]:
    """Indices grouped by equal or near-duplicate normalised text (connected components)."""
    parent = list(range(len(norm)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, t in enumerate(norm):
        union(i, first.setdefault(t, i))
    for i, j, _ in near_duplicates(norm, norm, threshold, workers=workers):
        if i != j:
            union(i, j)
    out: dict[int, list[int]] = {}
    for i in range(len(norm)):
        out.setdefault(find(i), []).append(i)
    return list(out.values())


def split_tuning(recs: Sequence[Record], spec: Mapping[str, Any], benchmark: str, threshold: float, *,
                 workers: int = 1, keep_out: Mapping[str, Sequence[Record]] | None = None,
                 ) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """(tuning part, evaluation part, record of the cut); both parts keep the benchmark's order.

    ``keep_out`` maps other evaluated benchmarks to their prompts: a prompt (or near-duplicate group) that one of
    them also holds stays on the evaluation side, since tuning on it would tune on a prompt that benchmark judges
    (AdvBench's behaviours recur in JailbreakBench and StrongREJECT)."""
    total = len(recs)
    n = tuning_size(spec, total)
    seed = int(spec["seed"])
    key_of = f"data.real.tuning.{benchmark}." + ("n" if "n" in spec else "fraction")
    if not 0 < n < total:
        raise OverlapError(f"{key_of} asks for a tuning part of {n} of benchmark {benchmark}'s {total} prompts; "
                           "it must leave at least one prompt on each side")
    norm = [normalise(r["prompt"]) for r in recs]
    keys = [hashlib.sha256(f"{seed}:{benchmark}:{t}".encode()).hexdigest() for t in norm]
    groups = sorted(_groups(norm, threshold, workers), key=lambda g: min(keys[i] for i in g))
    shared: dict[str, int] = {}
    barred: set[int] = set()
    for other, other_recs in sorted((keep_out or {}).items()):
        on = [normalise(r["prompt"]) for r in other_recs]
        oset = set(on)
        hit = {i for i, t in enumerate(norm) if t in oset} | {i for i, _, _ in near_duplicates(norm, on, threshold,
                                                                                              workers=workers)}
        if hit:
            shared[other] = len(hit)
        barred |= hit
    chosen: set[int] = set()
    for g in groups:
        if barred.intersection(g):
            continue
        if len(chosen) + len(g) <= n:
            chosen.update(g)
        if len(chosen) == n:
            break
    if len(chosen) != n:
        raise OverlapError(f"{key_of}: benchmark {benchmark}'s near-duplicate groups cannot make a tuning part of "
                           f"exactly {n} prompts (got {len(chosen)})")
    tuning = [r for i, r in enumerate(recs) if i in chosen]
    rest = [r for i, r in enumerate(recs) if i not in chosen]
    check_disjoint(tuning, rest, benchmark, threshold, workers=workers)
    info = {"benchmark": benchmark, "seed": seed, "requested": dict(spec), "n_benchmark": total, "n_tuning": n,
            "n_rest": len(rest), "n_groups_multi": sum(len(g) > 1 for g in groups),
            "kept_on_evaluation_side": shared,
            "rule": TUNING_RULE.format(n=n, seed=seed, benchmark=benchmark, threshold=threshold)}
    return tuning, rest, info


def overlap_counts(tuning: Sequence[Mapping[str, Any]], evaluated: Sequence[Mapping[str, Any]], threshold: float, *,
                   workers: int = 1) -> tuple[int, int]:
    """(exact, near): evaluated prompts equal to a tuning prompt after normalisation, and further ones that are
    near-duplicates of one."""
    tn = [normalise(r["prompt"]) for r in tuning]
    en = [normalise(r["prompt"]) for r in evaluated]
    tset = set(tn)
    exact = {j for j, t in enumerate(en) if t in tset}
    near = {j for _, j, _ in near_duplicates(tn, en, threshold, workers=workers)} - exact
    return len(exact), len(near)


def check_disjoint(tuning: Sequence[Mapping[str, Any]], evaluated: Sequence[Mapping[str, Any]], source: str,
                   threshold: float, *, evaluated_name: str | None = None, workers: int = 1) -> None:
    """Raise ``OverlapError`` naming the source and the count when any evaluated prompt is (nearly) a tuning one."""
    exact, near = overlap_counts(tuning, evaluated, threshold, workers=workers)
    if exact + near:
        raise OverlapError(f"the tuning part of {source} overlaps the evaluation part of {evaluated_name or source}: "
                           f"{exact + near} evaluated prompts ({exact} exact, {near} near-duplicates at ratio >= "
                           f"{threshold:g}) are in it; settings chosen there would be judged on the prompts they were "
                           "chosen on")
