#!/usr/bin/env python
"""Evaluation throughput on a CPU: generation batch size, and one job on every core against one job per core.

Why: the real-model study generates ~2,400 responses per method and seed, so the batch size of ``eval`` and how
Snakemake shares the cores between jobs (``compute.threads``) decide most of its wall time. Each setting runs
the pipeline's own ``generate`` on the same real prompts with the same model, in a fresh process, one after the
other; "parallel" runs two one-thread processes at once on the two halves of the prompts (what ``--cores 2``
with ``compute.threads: 1`` does) and counts their tokens over the wall time of both. Responses must be the
same text in every setting (greedy decoding in float32 is independent of the batch); the JSON records how many
differ. Run it on an otherwise idle machine.

Usage::

    PYTHONPATH=src python bench/bench_eval_throughput.py --model-dir results/smol-study/smollm2-135m/stl/seed0/model \\
        --prompts results/smol-study/data/eval/orbench_hard.jsonl --n-prompts 128 --out results/bench/eval_throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def child(args: argparse.Namespace) -> None:
    import torch

    from overrefusal.generate import generate
    from overrefusal.io import read_jsonl

    torch.set_num_threads(args.threads)
    rows = read_jsonl(args.prompts)[args.start:args.stop]
    meta = generate(args.model_dir, rows, args.child_out, template="chat", max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, progress=False, compute={"device": "cpu", "dtype": "float32"})
    Path(args.child_out + ".meta").write_text(json.dumps({"new_tokens": meta["new_tokens"], "seconds": meta["seconds"]}))


def run(args: argparse.Namespace, tmp: Path, name: str, batch: int, threads: int, spans: list[tuple[int, int]]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    outs = [str(tmp / f"{name}-{i}.jsonl") for i in range(len(spans))]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--child", "--model-dir", args.model_dir, "--prompts",
                               args.prompts, "--batch-size", str(batch), "--threads", str(threads),
                               "--max-new-tokens", str(args.max_new_tokens), "--start", str(a), "--stop", str(b),
                               "--child-out", out], env=env) for (a, b), out in zip(spans, outs)]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"{name}: a generation process failed")
    wall = time.perf_counter() - t0
    metas = [json.loads(Path(o + ".meta").read_text()) for o in outs]
    responses = [json.loads(line)["response"] for o in outs for line in Path(o).read_text().splitlines()]
    tokens = sum(m["new_tokens"] for m in metas)
    return {"setting": name, "batch_size": batch, "threads": threads, "processes": len(spans), "new_tokens": tokens,
            "generate_seconds": round(max(m["seconds"] for m in metas), 2), "wall_seconds": round(wall, 2),
            "tokens_per_s": round(tokens / max(m["seconds"] for m in metas), 1), "responses": responses}


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompts", required=True, help="a JSONL file of prompt records (data/eval/<benchmark>.jsonl)")
    ap.add_argument("--n-prompts", type=int, default=128)
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return None
    cores = os.cpu_count() or 1
    n = args.n_prompts
    batches = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = [run(args, tmp, f"batch {b}, {cores} threads", b, cores, [(0, n)]) for b in batches]
        best = max(results, key=lambda r: r["tokens_per_s"])
        half = (n + 1) // 2
        results.append(run(args, tmp, f"batch {best['batch_size']}, {cores} one-thread processes",
                           best["batch_size"], 1, [(0, half), (half, n)][:cores]))
    ref = results[0]["responses"]
    for r in results:
        r["responses_differing"] = sum(a != b for a, b in zip(r.pop("responses"), ref, strict=True))
    base = results[0]
    for r in results:  # throughput of the whole machine: tokens over the wall time of every process
        r["speedup"] = round((r["new_tokens"] / r["wall_seconds"]) / (base["new_tokens"] / base["wall_seconds"]), 2)
    from overrefusal.provenance import cpu_model

    out = {"machine": cpu_model(), "cores": cores, "n_prompts": n, "prompts": args.prompts,
           "model_dir": args.model_dir, "max_new_tokens": args.max_new_tokens, "results": results}
    lines = [f"Generation of {n} prompts of `{args.prompts}` by `{args.model_dir}`, {args.max_new_tokens} new tokens at "
             f"most, float32, on {out['machine']} ({cores} cores). Speed-up: new tokens per wall second against the "
             "first row; responses differing: against the first row's.", "",
             "| setting | new tokens | wall s | speed-up | responses differing |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['setting']} | {r['new_tokens']} | {r['wall_seconds']} | {r['speedup']} | {r['responses_differing']} |"
              for r in results]
    if args.out is not None:
        from overrefusal.io import write_json, write_text

        write_json(args.out.with_suffix(".json"), out)
        write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
