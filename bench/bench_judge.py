#!/usr/bin/env python
"""Judging 10,000 responses with the learned refusal judge on CPU: cold (encoder loaded, every response
encoded) and warm (the same responses again from the embedding store, as after a threshold change).

Why: every real-model run judges each benchmark's generations, and the study preset judges tens of thousands;
the judge must not be the slow part. Target: cold <= 300 s for 10,000 responses on 2 cores, encoder loading
included; warm at least 10x faster than cold (measured in the same run).

Responses: the labelled sources of the data mirror (their real lengths and styles), the first n of them in
config order; the artefact is the committed results/smol/judges/refusal_clf_v2 unless --artefact says otherwise.

Usage:
    python bench/bench_judge.py --out results/bench/judge.json [--n 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import yaml  # noqa: E402

from overrefusal.io import atomic_path, write_json  # noqa: E402
from overrefusal.judge_validation import LabelledSet, default_data_dir, load_set  # noqa: E402

ARTEFACT = REPO / "results" / "smol" / "judges" / "refusal_clf_v2"
TARGET_S = 300.0
TARGET_SPEEDUP = 10.0


def responses(n: int) -> list[str]:
    """The first ``n`` responses of the configured labelled sets found in the mirror."""
    data_dir = default_data_dir()
    if data_dir is None:
        raise SystemExit("no data mirror: set OVERREFUSAL_DATA_DIR")
    sets = yaml.safe_load((REPO / "config.yaml").read_text())["eval"]["judge_validation"]["sets"]
    out: list[str] = []
    for name, spec in sets.items():
        ls = LabelledSet.from_spec(name, {k: v for k, v in spec.items() if k != "enabled"})
        if ls.paths(data_dir):
            out += [r.response for r in load_set(ls, data_dir)]
        if len(out) >= n:
            break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} responses in the mirror's labelled sets; asked for {n}")
    return out[:n]


def cpu_model() -> str:
    """The CPU's model name (the ratios and times depend on it)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def run(n: int, artefact: Path, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    texts = responses(n)
    pairs = [("", t) for t in texts]
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        from overrefusal.judges import get_judge

        judge = get_judge("refusal_clf_v2", artefact=artefact, embedding_cache=cache)
        cold_verdicts = judge.judge_many(pairs)
        cold = time.perf_counter() - t0
        t1 = time.perf_counter()
        warm_verdicts = judge.judge_many(pairs)
        warm = time.perf_counter() - t1
    same = [a.label for a in cold_verdicts] == [b.label for b in warm_verdicts]
    return {
        "bench": "judge", "n": n, "threads": threads, "artefact": str(artefact.relative_to(REPO)
                                                                      if artefact.is_relative_to(REPO) else artefact),
        "cold_seconds": round(cold, 1), "warm_seconds": round(warm, 2), "speedup": round(cold / warm, 1),
        "responses_per_second_cold": round(n / cold, 1), "verdicts_identical": same,
        "refusal_share": round(sum(v.label == "refusal" for v in cold_verdicts) / n, 4),
        "target": f"cold <= {TARGET_S:.0f} s; warm >= {TARGET_SPEEDUP:.0f}x faster",
        "target_seconds": TARGET_S, "meets_target": cold <= TARGET_S and cold / warm >= TARGET_SPEEDUP and same,
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
        "processor": cpu_model(),
    }


def markdown(r: dict[str, Any]) -> str:
    verdict = "met" if r["meets_target"] else "missed"
    return ("| responses | threads | cold (encoder loaded, all encoded) | warm (from the embedding store) | speedup | "
            "verdicts identical | target |\n|---|---|---|---|---|---|---|\n"
            f"| {r['n']:,} | {r['threads']} | {r['cold_seconds']:.1f} s ({r['responses_per_second_cold']:.0f}/s) | "
            f"{r['warm_seconds']:.2f} s | {r['speedup']:.0f}× | {'yes' if r['verdicts_identical'] else 'no'} | "
            f"{r['target']}: {verdict} |\n\nMachine: {r['processor'] or r['machine']}, {r['cpu_count']} cores "
            f"(`python bench/bench_judge.py --n {r['n']} --threads {r['threads']}`).\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--artefact", type=Path, default=ARTEFACT)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = run(args.n, args.artefact, args.threads)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)
        with atomic_path(Path(args.out).with_suffix(".md")) as tmp:
            tmp.write_text(markdown(result), encoding="utf-8")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
