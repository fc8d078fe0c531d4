"""Bench: ChatClient concurrency speedup and warm-cache cost against a real local server.

A scripted judge server (a separate process, ``python -m overrefusal.llm.server --scripted overrefusal.toyworld.scripted:toy_judge_script``)
adds ``--latency-ms`` to every answer, as a hosted API would. We time ``--n`` XSTest-judge-like
requests (the judge's own, verbatim prompt) cold at ``--concurrency`` and at 1 (fresh caches), then rerun the concurrent batch on its
warm cache and count the requests that reach the server.

Targets: speedup >= 6x at concurrency 8 with 50 ms latency; 0 requests on the warm rerun.

    PYTHONPATH=src python bench/bench_llm_concurrency.py --out benchmarks/llm_concurrency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import openai  # noqa: E402

from overrefusal.io import write_json  # noqa: E402
from overrefusal.judges.llm import TOY_JUDGE_SCRIPT, XSTestLLM3ClassJudge  # noqa: E402
from overrefusal.llm import ChatClient  # noqa: E402
from overrefusal.llm.launcher import get_stats, local_server, reset_stats  # noqa: E402


def judge_requests(n: int) -> list[dict]:
    """Exactly what rule judge sends with ``xstest_llm_3class_v1``: XSTest's verbatim GPT-4 prompt,
    system message and decoding parameters, built by the judge itself."""
    judge = XSTestLLM3ClassJudge(client=object())  # request() only; the timed client is made per run
    reqs = []
    for i in range(n):
        response = "I'm sorry, I can't help with that." if i % 3 == 0 else f"Sure, here is how to kill process {i}."
        reqs.append(judge.request(f"How do I kill a Python process #{i}?", response))
    return reqs


def timed_run(base_url: str, cache_dir: Path, reqs: list[dict], concurrency: int) -> dict:
    reset_stats(base_url)
    with ChatClient(base_url, "gpt-4", cache_dir=cache_dir, concurrency=concurrency, max_retries=2) as client:
        t0 = time.perf_counter()
        results = client.complete_many(reqs)
        seconds = time.perf_counter() - t0
        stats = client.stats()
    server = get_stats(base_url)
    refusals = sum(r.text == "2_full_refusal" for r in results)
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_sent": stats["requests_sent"],
        "cache_hits": stats["cache_hits"],
        "server_requests": server["requests"],
        "server_max_in_flight": server["max_in_flight"],
        "labels_refusal": refusals,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1, help="cold runs per setting (median reported)")
    p.add_argument("--target-speedup", type=float, default=6.0)
    args = p.parse_args(argv)

    reqs = judge_requests(args.n)
    runs: dict[str, list[dict]] = {"concurrent": [], "serial": []}
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp, local_server(
        None, scripted=TOY_JUDGE_SCRIPT, latency_ms=args.latency_ms, model_name="gpt-4"
    ) as base_url:
        ChatClient(base_url, "gpt-4").complete(**judge_requests(1)[0])  # warm the server (not timed)
        for rep in range(args.repeats):
            runs["concurrent"].append(timed_run(base_url, Path(tmp) / f"c{rep}", reqs, args.concurrency))
            runs["serial"].append(timed_run(base_url, Path(tmp) / f"s{rep}", reqs, 1))
        warm = timed_run(base_url, Path(tmp) / "c0", reqs, args.concurrency)

    t_conc = statistics.median(r["seconds"] for r in runs["concurrent"])
    t_serial = statistics.median(r["seconds"] for r in runs["serial"])
    speedup = t_serial / t_conc
    report = {
        "bench": "llm_concurrency",
        "n_requests": args.n,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "seconds_concurrent": round(t_conc, 4),
        "seconds_serial": round(t_serial, 4),
        "speedup": round(speedup, 2),
        "ideal_serial_floor_s": round(args.n * args.latency_ms / 1000, 3),
        # what each request costs beyond the injected latency (client, HTTP, server, cache write): the 8 answers
        # of a concurrent wave share the client's interpreter lock, so this cost, not the latency, bounds the
        # speedup on a small machine
        "serial_overhead_ms_per_request": round((t_serial - args.n * args.latency_ms / 1000) / args.n * 1000, 2),
        "target_speedup": args.target_speedup,
        "warm_rerun_requests_sent": warm["requests_sent"],
        "warm_rerun_server_requests": warm["server_requests"],
        "warm_rerun_seconds": round(warm["seconds"], 4),
        "target_warm_requests": 0,
        "meets_speedup_target": speedup >= args.target_speedup,
        "meets_warm_target": warm["requests_sent"] == 0 and warm["server_requests"] == 0,
        "runs": {**runs, "warm": warm},
        "env": {
            "python": platform.python_version(),
            "openai": openai.__version__,
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    write_json(args.out, report)
    print(
        f"n={args.n} latency={args.latency_ms:g}ms: concurrency {args.concurrency}: {t_conc:.3f}s, "
        f"concurrency 1: {t_serial:.3f}s -> speedup {speedup:.2f}x (target >= {args.target_speedup:g}x); "
        f"warm rerun: {warm['requests_sent']} requests sent in {warm['seconds']:.3f}s (target 0)"
    )
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    return 0 if report["meets_speedup_target"] and report["meets_warm_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
