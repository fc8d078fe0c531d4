"""Benchmark: how each per-prompt stage's time grows with the number of prompts (scaling curves).

Five workloads, each timed at ``--points`` sizes (doubling) in one run, on the same machine:

* ``generation``: greedy decoding of n prompts (tiny random Llama of bench_generation, batch 16,
  24 new tokens, every prompt decodes the full length);
* ``judging``: n ``xstest_llm_3class_v1`` requests to the local judge server with injected latency
  (concurrency 8, cold cache), over real HTTP;
* ``dcr_step``: one truncated DCR step (forward to block l, Circle loss, backward) on a batch of n
  prompts: the loss compares every pair, so a step is O(n) forwards plus O(n^2) pair terms;
* ``leakage``: the train/eval leakage check on n eval and 2.6 n train prompts (bench_leakage's data): its
  near-duplicate search scores every train/eval pair, so the time grows as n^2;
* ``entk_jvp`` and ``entk_hutchinson``: the empirical NTK norm matrix of n prompts on a small random
  Llama (top-10 logits, the last 2 blocks + head): per prompt, one pullback then forward-mode products
  with all n prompts, so n^2 blocks: order 2 once the per-prompt part stops dominating.

For each workload the growth order is the least-squares slope of log(seconds) against log(n); the
JSON holds every point, the fit, and the order the algorithm implies; beside it go a Markdown table and a
log-log figure (seaborn, png and pdf) with one panel per workload. A slope above the expected order by more than 0.3 is
reported as a miss.

Usage::

    PYTHONPATH=src python bench/bench_scaling.py --out results/bench/scaling.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from overrefusal.io import write_json

# workload -> (smallest n, the growth order the algorithm implies, what it times)
WORKLOADS: dict[str, tuple[int, float, str]] = {
    "generation": (16, 1.0, "greedy decoding, batch 16, 24 new tokens"),
    "judging": (32, 1.0, "LLM judge over HTTP, 20 ms latency, concurrency 8"),
    "dcr_step": (8, 1.0, "one truncated DCR step on a batch of n prompts"),
    "leakage": (1000, 2.0, "leakage check, n eval x 2.6 n train prompts (all pairs), 2 workers"),
    "entk_jvp": (2, 2.0, "eNTK norms, forward-mode JVP, top-10, last 2 blocks"),
    "entk_hutchinson": (2, 2.0, "eNTK norms, Hutchinson (8 probes), top-10, last 2 blocks"),
}
SLACK = 0.3  # fitted order allowed above the expected one before it counts as a miss


def fit_order(ns: list[int], seconds: list[float]) -> dict[str, float]:
    """Slope and intercept of log(seconds) = order * log(n) + c, and its R^2."""
    x, y = np.log(np.asarray(ns, float)), np.log(np.asarray(seconds, float))
    order, c = np.polyfit(x, y, 1)
    resid = y - (order * x + c)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / total if len(ns) > 2 and total > 0 else 1.0
    return {"order": float(order), "log_intercept": float(c), "r2": r2}


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Least wall time of ``repeats`` calls: the least disturbed by other load on the machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def time_generation(ns: list[int], repeats: int, tmp: Path) -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.bench_generation import build_tiny_model, make_records, timed_run

    model_dir = str(build_tiny_model(tmp / "tiny_llama"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    run = {"model_dir": model_dir, "model": model, "tok": tok, "max_new_tokens": 24, "template": "chat",
           "batch_size": 16}
    timed_run(recs=make_records(4, 1), out=tmp / "warm.jsonl", **run)
    return [best_of(lambda n=n: timed_run(recs=make_records(n, 0), out=tmp / f"g{n}.jsonl", **run), repeats)
            for n in ns]


def time_judging(ns: list[int], repeats: int, tmp: Path) -> list[float]:
    from bench.bench_llm_concurrency import judge_requests
    from overrefusal.judges.llm import TOY_JUDGE_SCRIPT
    from overrefusal.llm import ChatClient
    from overrefusal.llm.launcher import local_server

    out = []
    with local_server(None, scripted=TOY_JUDGE_SCRIPT, latency_ms=20.0, model_name="gpt-4") as base_url:
        ChatClient(base_url, "gpt-4").complete(**judge_requests(1)[0])
        for n in ns:
            reqs = judge_requests(n)
            runs = iter(range(repeats))

            def call(reqs: list[dict] = reqs, n: int = n, runs: Any = runs) -> None:
                # A fresh cache directory per call: every request goes to the server.
                with ChatClient(base_url, "gpt-4", cache_dir=tmp / f"j{n}_{next(runs)}", concurrency=8) as client:
                    client.complete_many(reqs)

            out.append(best_of(call, repeats))
    return out


def time_dcr_step(ns: list[int], repeats: int) -> list[float]:
    import torch

    from bench.bench_dcr_truncation import build, step_fn

    out = []
    for n in ns:
        model, ids, mask, labels = build(argparse.Namespace(hidden=128, layers=4, vocab=512, seq=48, batch=n, seed=0))
        step = step_fn("truncated", model, ids, mask, labels, layer=1, m=0.25, gamma=64.0)
        step()
        out.append(best_of(step, repeats))
        del model
        torch.manual_seed(0)
    return out


def time_leakage(ns: list[int], repeats: int) -> list[float]:
    from bench.bench_leakage import run

    return [min(run(int(2.625 * n), n, 90.0, 2, 0)["seconds"] for _ in range(repeats)) for n in ns]


def time_entk(ns: list[int], repeats: int, estimator: str) -> list[float]:
    from bench.bench_entk import llama, prompts
    from overrefusal.analysis.entk import EntkConfig, kernel_fro

    model = llama(128, 4, 256, 512, 0)
    cfg = EntkConfig(top_k=10, last_n=2, estimator=estimator, probes=8, seed=0)
    kernel_fro(model, prompts(2, 16, 512, 1), cfg)
    return [best_of(lambda n=n: kernel_fro(model, prompts(n, 16, 512, 2), cfg), repeats) for n in ns]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    rows = [{"workload": w, "prompts": n, "seconds": s}
            for w, d in result["workloads"].items() for n, s in zip(d["n"], d["seconds"], strict=True)]
    df = pd.DataFrame(rows)
    names = list(result["workloads"])
    g = sns.FacetGrid(df, col="workload", col_order=names, col_wrap=3, sharex=False, sharey=False, height=2.6)
    g.map_dataframe(sns.lineplot, x="prompts", y="seconds", marker="o")
    for ax, name in zip(g.axes.flat, names, strict=False):
        d = result["workloads"][name]
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        xs = np.asarray(d["n"], float)
        ax.plot(xs, np.exp(d["fit"]["log_intercept"]) * xs ** d["fit"]["order"], "--", color="grey", lw=1)
        ax.set_xticks(d["n"])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{name}\norder {d['fit']['order']:.2f} (expected {d['expected_order']:.0f})", fontsize=9)
    g.figure.suptitle("Wall time against the number of prompts (log-log; dashed: fitted power law)", fontsize=10)
    g.figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_suffix(".pdf")):
        g.figure.savefig(p, dpi=120)
    plt.close(g.figure)


def render(result: dict[str, Any]) -> str:
    lines = ["| workload | what | prompts | seconds | fitted order | R² | expected order | within +0.3 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in result["workloads"].items():
        ns = ", ".join(str(n) for n in d["n"])
        secs = ", ".join(f"{s:.3g}" for s in d["seconds"])
        lines.append(f"| {name} | {d['what']} | {ns} | {secs} | {d['fit']['order']:.2f} | {d['fit']['r2']:.3f} | "
                     f"{d['expected_order']:.0f} | {'yes' if d['meets_target'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="write the results as JSON here, with a .md table and a .png/.pdf figure beside it")
    ap.add_argument("--points", type=int, default=4, help="sizes per workload (each twice the previous)")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per size (the least is kept)")
    ap.add_argument("--only", nargs="*", default=None, choices=list(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.points < 2:
        ap.error("--points must be at least 2 (a growth order needs two sizes)")
    import torch

    torch.set_num_threads(args.threads)
    names = args.only or list(WORKLOADS)
    result: dict[str, Any] = {"bench": "scaling", "points": args.points, "repeats": args.repeats,
                              "torch_threads": torch.get_num_threads(), "slack": SLACK, "workloads": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        for name in names:
            start, expected, what = WORKLOADS[name]
            ns = [start * 2**i for i in range(args.points)]
            t0 = time.perf_counter()
            if name == "generation":
                secs = time_generation(ns, args.repeats, Path(tmp))
            elif name == "judging":
                secs = time_judging(ns, args.repeats, Path(tmp))
            elif name == "dcr_step":
                secs = time_dcr_step(ns, args.repeats)
            elif name == "leakage":
                secs = time_leakage(ns, args.repeats)
            else:
                secs = time_entk(ns, args.repeats, name.removeprefix("entk_"))
            fit = fit_order(ns, secs)
            result["workloads"][name] = {"what": what, "n": ns, "seconds": [round(s, 5) for s in secs],
                                         "fit": fit, "expected_order": expected,
                                         "meets_target": fit["order"] <= expected + SLACK,
                                         "wall_s": round(time.perf_counter() - t0, 1)}
            print(f"{name}: n={ns} s={[round(s, 3) for s in secs]} order={fit['order']:.2f}", flush=True)
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    result["meets_targets"] = all(d["meets_target"] for d in result["workloads"].values())
    result["env"] = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if args.out:
        write_json(args.out, result)
        args.out.with_suffix(".md").write_text(render(result))
        plot(result, args.out.with_suffix(".png"))
    sys.stdout.write(render(result))
    return result


if __name__ == "__main__":
    main()
