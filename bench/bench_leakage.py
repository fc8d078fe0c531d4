#!/usr/bin/env python
"""Near-duplicate leakage check of ~21k training prompts against ~8k evaluation prompts.

Why: the real-data split rule checks every training split against every eval set (exact match after
normalisation plus rapidfuzz ratio >= threshold) on every build; DCR's recipe alone is 21k training
prompts (20k Alpaca + 1k safety) against the ten benchmarks (~8k prompts with OR-Bench and PHTest).
Target: <= 60 s on 2 cores.

Prompts: the real ones from the local mirror where present (Alpaca 5k, STL safety, HH-RLHF test,
CoCoNot pref; the eval sets in the mirror), topped up to the target sizes with synthetic variants
of them (word drops and swaps: realistic lengths and vocabulary, and some genuine near-duplicates).

Usage:
    python bench/bench_leakage.py --out results/bench_leakage.json [--workers 2] [--threshold 90]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from overrefusal.data import SOURCES, load_records, stage_source  # noqa: E402
from overrefusal.data.fetch import staged_paths  # noqa: E402
from overrefusal.data.leakage import check_leakage  # noqa: E402
from overrefusal.io import write_json  # noqa: E402
from overrefusal.judge_validation import default_data_dir  # noqa: E402

TRAIN_SOURCES = ["alpaca_5k", "stl_safety", "hh_harmless_test", "coconot_pref"]
EVAL_SOURCES = ["xstest", "coconot_contrast", "oktest", "advbench", "harmbench", "jailbreakbench", "maliciousinstruct",
                "strongreject"]
FILLER = "please how what why the a of to and in for on with about explain describe write list give".split()


def _real(names: list[str], data_dir: Path | None) -> list[str]:
    out: list[str] = []
    for n in names:
        if data_dir is None:
            continue
        try:
            st = stage_source(SOURCES[n], raw_dir=str(data_dir), download_dir=None)
        except FileNotFoundError:
            continue
        out += [r["prompt"] for r in load_records(SOURCES[n], staged_paths(st))[0]]
    return out


def _variant(rng: random.Random, text: str) -> str:
    words = text.split() or ["empty"]
    for _ in range(max(1, len(words) // 4)):
        op = rng.randrange(3)
        i = rng.randrange(len(words))
        if op == 0 and len(words) > 3:
            words.pop(i)
        elif op == 1:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words.insert(i, rng.choice(FILLER))
    return " ".join(words)


def _fill(rng: random.Random, base: list[str], n: int) -> tuple[list[str], int]:
    if not base:
        base = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(6, 25))) for _ in range(200)]
    real = base[:n]
    return real + [_variant(rng, rng.choice(base)) for _ in range(n - len(real))], len(real)


def run(n_train: int, n_eval: int, threshold: float, workers: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    data_dir = default_data_dir()
    train, n_real_train = _fill(rng, _real(TRAIN_SOURCES, data_dir), n_train)
    evals, n_real_eval = _fill(rng, _real(EVAL_SOURCES, data_dir), n_eval)
    tr = {"train": [{"id": f"t{i}", "prompt": p} for i, p in enumerate(train)]}
    ev = {"eval": [{"id": f"e{i}", "prompt": p} for i, p in enumerate(evals)]}
    t0 = time.perf_counter()
    (res,) = check_leakage(tr, ev, threshold=threshold, max_fraction=1.0, workers=workers)
    seconds = time.perf_counter() - t0
    return {
        "bench": "leakage", "n_train": n_train, "n_eval": n_eval, "n_real_train": n_real_train,
        "n_real_eval": n_real_eval, "threshold": threshold, "workers": workers, "seconds": round(seconds, 2),
        "target_seconds": 60, "meets_target": seconds <= 60, "exact": res.exact, "near": res.near,
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=21000)
    ap.add_argument("--n-eval", type=int, default=8000)
    ap.add_argument("--threshold", type=float, default=90)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = run(args.n_train, args.n_eval, args.threshold, args.workers, args.seed)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
