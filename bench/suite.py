"""The bench suite: every benchmark that needs no external model and fits 15 minutes on 2 cores, in one command.

    PYTHONPATH=src python -m bench [--out-dir results/bench] [--only NAME ...] [--quick]

Each benchmark runs as its own subprocess (so one's allocations, threads and crashes cannot touch the
next) and writes ``<out-dir>/<name>.json`` (its raw result) and ``<name>.log`` (its stdout and stderr).
The runner then writes ``<out-dir>/suite.json`` (the machine, and per benchmark the command, seconds,
exit status, headline measurements with their targets and verdicts, and the raw JSON's path) and
``<out-dir>/suite.md``, the table the README renders verbatim.

A benchmark *fails* when it crashes, times out, or writes no JSON or one its extractor cannot read. A
missed target is a result, not a failure: llm_concurrency and leakage exit 1 on a miss, which is
accepted when their JSON shows the miss. Any failure makes the suite's exit status 1; the rest still run.

``bench_pipeline`` (the whole toy workflow, ~15 minutes by itself) and ``bench_dcr_stage_settings``
(needs the converted SmolLM2 checkpoint) are not run; both outputs list them with their commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 900  # the whole suite, on the project's 2-core machine
QUICK_TIMEOUT_S = 120
TAIL_CHARS = 3000


@dataclass(frozen=True)
class Headline:
    """One measurement a benchmark exists for, with its target and verdict."""

    measure: str  # what was measured, in words (sizes included: they change with --quick)
    value: Any  # the number(s) as the benchmark's JSON has them
    text: str  # the value as the table shows it
    target: str
    met: bool


Extractor = Callable[[dict[str, Any]], list[Headline]]


@dataclass(frozen=True)
class Bench:
    name: str
    script: str  # relative to the repo root
    args: tuple[str, ...]  # the suite's arguments (--out is added)
    why: str  # why these arguments
    quick_args: tuple[str, ...]
    target: str  # the documented target, shown when the run fails before reporting one
    extract: Extractor
    timeout_s: int
    miss_exit: int | None = None  # the exit status the script uses for "ran, target missed"


def _times(v: float) -> str:
    return f"{v:.1f}×"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


# ---- extractors: one per benchmark, reading only what its JSON states ----


def extract_generation(d: dict[str, Any]) -> list[Headline]:
    b = d["batched"]
    return [
        Headline(f"batched (batch {b['batch_size']}) / one-at-a-time tokens/s, {d['n_prompts']} prompts × "
                 f"{d['max_new_tokens']} new tokens", d["speedup"], _times(d["speedup"]), f"≥ {d['target']:g}×",
                 bool(d["meets_target"])),
        # The speed-up only counts if batching (left padding) decodes exactly what one-at-a-time does.
        Headline("batched and one-at-a-time responses identical", d["outputs_identical"],
                 _yes(d["outputs_identical"]), "identical", bool(d["outputs_identical"])),
    ]


def extract_llm_concurrency(d: dict[str, Any]) -> list[Headline]:
    sent = d["warm_rerun_requests_sent"]
    return [
        Headline(f"judge wall time, concurrency 1 / {d['concurrency']} ({d['n_requests']} requests, "
                 f"{d['latency_ms']:g} ms server latency; {d['serial_overhead_ms_per_request']:.1f} ms per request "
                 "beyond it, serially)", d["speedup"], _times(d["speedup"]),
                 f"≥ {d['target_speedup']:g}×", bool(d["meets_speedup_target"])),
        Headline("requests sent on the warm-cache rerun", sent, str(sent), str(d["target_warm_requests"]),
                 bool(d["meets_warm_target"])),
    ]


def extract_dcr_truncation(d: dict[str, Any]) -> list[Headline]:
    rows, depth = d["rows"], d["config"]["layers"]
    ratios = " / ".join(f"{r['ratio']:.2f}" for r in rows)
    layers = "/".join(str(r["layer"]) for r in rows)
    return [Headline(
        f"truncated / full forward+backward time at ℓ = {layers} of L = {depth}",
        [{"layer": r["layer"], "ratio": r["ratio"], "target": r["target"]} for r in rows], ratios,
        "≤ 1.2 (ℓ+1)/L at every ℓ", bool(d["meets_target"]),
    )]


def extract_entk(d: dict[str, Any]) -> list[Headline]:
    a, b, c, cfg = d["hutchinson_accuracy"], d["timing"], d["fd_vs_jvp"], d["config"]
    at_step = [r["rel_max"] for r in c["rows"] if r["scheme"] == c["scheme"] and r["eps"] == c["eps"]]
    dcr = max(r["rel_max"] for r in c["rows"] if r["scheme"] == "forward" and r["eps"] == c["dcr_eps"])
    return [
        Headline(f"Hutchinson ({cfg['probes']} probes) relative Frobenius error of the kernel, max over "
                 f"{_n(cfg['seeds'], 'seed')}", a["rel_fro_max"], f"{a['rel_fro_max']:.3f}", f"≤ {a['target']:g}",
                 bool(a["meets_target"])),
        Headline(f"exact / Hutchinson wall time, {b['selected_params']:,} selected parameters, V = {b['vocab']}",
                 b["speedup_vs_exact"], _times(b["speedup_vs_exact"]), f"≥ {b['target']:g}× with ≥ 1M parameters",
                 bool(b["meets_target"])),
        Headline(f"{c['scheme']} finite differences (ε = {c['eps']:g}) vs forward-mode JVP, max relative "
                 f"difference (DCR's forward differences at ε = {c['dcr_eps']:g}: {dcr:.1e}, truncation error)",
                 max(at_step), f"{max(at_step):.1e}", f"≤ {c['target']:g}", bool(c["meets_target"])),
        *([] if "exact_vs_jvp_toy" not in d else [_exact_vs_jvp(d["exact_vs_jvp_toy"])]),
    ]


def _exact_vs_jvp(d: dict[str, Any]) -> Headline:
    rows = d["rows"]
    low = min(r["speedup"] for r in rows)
    return Headline(
        f"JVP columns / exact contraction wall time at the toy model's size ({d['selected_params']:,} selected "
        f"parameters, {' and '.join(str(r['n']) for r in rows)} prompts, top-{d['top_k']}; max relative difference "
        f"{max(r['rel_max'] for r in rows):.0e}; `auto` runs {'/'.join(sorted({r['auto'] for r in rows}))})",
        low, _times(low), f"≥ {d['target_speedup']:g}×, same kernel to {d['target_rel']:g}",
        bool(d["meets_target"]))


def extract_leakage(d: dict[str, Any]) -> list[Headline]:
    return [Headline(
        f"leakage check, {d['n_train']:,} train × {d['n_eval']:,} eval prompts, {_n(d['workers'], 'worker')}",
        d["seconds"], f"{d['seconds']:.1f} s", f"≤ {d['target_seconds']:g} s", bool(d["meets_target"]),
    )]


def extract_sft_memory(d: dict[str, Any]) -> list[Headline]:
    full, lora = d["summary"]["full"], d["summary"]["lora"]
    ratio = d["lora_over_full"]["peak_rss_delta_mb"]
    return [Headline(
        f"LoRA / full SFT peak RSS added by training ({lora['peak_rss_delta_mb']:.0f} / "
        f"{full['peak_rss_delta_mb']:.0f} MB, {full['params'] / 1e6:.1f}M parameters)",
        ratio, f"{ratio:.2f}", f"≤ {d['target_lora_over_full_peak_rss_delta']:g}", bool(d["meets_target"]),
    )]


def extract_roofline(d: dict[str, Any]) -> list[Headline]:
    peak, gen, train = d["peak"], d["generation"], d["training"]
    best_train = max(train["runs"].items(), key=lambda kv: kv[1]["fraction_of_peak"])
    # A plain run's name carries its batch ("fp32, batch 128"), a lever's does not ("static KV cache").
    best_gen = gen["best_run"] if "batch" in gen["best_run"] else f"{gen['best_run']}, batch {gen['best_batch']}"
    return [
        Headline("sustained matmul peak at the model's shapes, fp32 / bf16 (GFLOP/s)",
                 [peak["float32"]["peak_gflops"], peak["bfloat16"]["peak_gflops"]],
                 f"{peak['float32']['peak_gflops']:.0f} / {peak['bfloat16']['peak_gflops']:.0f}", "measured", True),
        Headline(f"generation, SmolLM2-135M shapes, best of batch sizes and levers ({best_gen}): useful FLOP/s / "
                 "peak", gen["best_fraction"], f"{gen['best_fraction']:.1%}",
                 f"≥ {gen['goal']:.0%}", bool(gen["meets_goal"])),
        Headline(f"training step ({best_train[0]}, {best_train[1]['batch']} × {best_train[1]['seq']} tokens): "
                 "useful FLOP/s / peak", train["best_fraction"], f"{train['best_fraction']:.1%}",
                 f"≥ {train['goal']:.0%}", bool(train["meets_goal"])),
    ]


def extract_scaling(d: dict[str, Any]) -> list[Headline]:
    return [Headline(f"{name}: growth order of the wall time in the number of prompts ({w['what']}; n = "
                     f"{', '.join(str(n) for n in w['n'])})", w["fit"]["order"],
                     f"{w['fit']['order']:.2f} (R² {w['fit']['r2']:.2f})",
                     f"≤ {w['expected_order'] + d['slack']:.1f}", bool(w["meets_target"]))
            for name, w in d["workloads"].items()]


# ---- the suite ----

SUITE: tuple[Bench, ...] = (
    Bench(
        "generation", "bench/bench_generation.py",
        ("--n-prompts", "64", "--batch-size", "64", "--max-new-tokens", "32", "--threads", "1"),
        "the documented setting (64 prompts, batch 64, 32 new tokens); one torch thread, as the script advises on "
        "a shared box, so the gain is batching's and not extra threads'",
        ("--n-prompts", "8", "--batch-size", "8", "--max-new-tokens", "4", "--threads", "1"),
        "≥ 5×, identical outputs", extract_generation, 300,
    ),
    Bench(
        "llm_concurrency", "bench/bench_llm_concurrency.py",
        ("--n", "64", "--latency-ms", "50", "--concurrency", "8", "--repeats", "3"),
        "the documented setting (64 requests, 50 ms latency, concurrency 8); median of 3 cold runs per setting "
        "(~4 s each) rather than 1, so one scheduling hiccup does not decide the ratio",
        ("--n", "8", "--latency-ms", "10", "--concurrency", "4"),
        "≥ 6×; 0 warm requests", extract_llm_concurrency, 180, miss_exit=1,
    ),
    Bench(
        "dcr_truncation", "bench/bench_dcr_truncation.py",
        ("--layers", "8", "--dcr-layers", "0,1,3,5,7", "--warmup", "3", "--repeats", "10", "--threads", "1"),
        "the script's defaults (L = 8, hidden 128, batch 16 × 64 tokens, 10 timed rounds): the README's setting; "
        "~35 s",
        ("--hidden", "32", "--layers", "2", "--seq", "16", "--batch", "2", "--vocab", "64", "--dcr-layers", "0,1",
         "--warmup", "0", "--repeats", "1"),
        "≤ 1.2 (ℓ+1)/L", extract_dcr_truncation, 300,
    ),
    Bench(
        "entk", "bench/bench_entk.py",
        ("--probes", "32", "--seeds", "5", "--hidden", "256", "--layers", "4", "--intermediate", "512",
         "--vocab", "256", "--threads", "1"),
        "the script's defaults: 32 probes over 5 seeds, a (b) model whose selected subset has 1.25M "
        "parameters, above the 1M the speed target requires, and (d) at the toy model's size; ~70 s",
        ("--probes", "2", "--seeds", "1", "--n", "2", "--length", "6", "--hidden", "32", "--layers", "2",
         "--intermediate", "64", "--vocab", "32", "--last-n", "1", "--toy-sizes", "4"),
        "≤ 0.05; ≥ 10×; ≤ 1e-3; ≥ 2×", extract_entk, 300,
    ),
    Bench(
        "leakage", "bench/bench_leakage.py",
        ("--n-train", "21000", "--n-eval", "8000", "--workers", "2"),
        "full size: the target is an absolute time for DCR's 21k training prompts against ~8k eval prompts on "
        "2 cores, so a smaller run would say nothing; ~15 s",
        ("--n-train", "200", "--n-eval", "100", "--workers", "1"),
        "≤ 60 s", extract_leakage, 300, miss_exit=1,
    ),
    Bench(
        "sft_memory", "bench/bench_sft_memory.py",
        ("--hidden", "256", "--layers", "6", "--intermediate", "688", "--steps", "10", "--repeats", "3",
         "--threads", "1"),
        "a 5M-parameter variant of the toy architecture: at the toy size (0.8M) the gradients and AdamW state "
        "LoRA removes are ~9 of ~56 MB and the ratio is within noise of 1; 10 steps (AdamW's state, the peak's "
        "last part, exists from the first), median of 3 fresh processes per mode; ~1.5 min",
        ("--steps", "1", "--repeats", "1"),
        "≤ 0.9", extract_sft_memory, 600,
    ),
    Bench(
        "roofline", "bench/bench_roofline.py",
        ("--batches", "1,8,32,64,128", "--prompt-tokens", "32", "--new-tokens", "32", "--repeats", "2",
         "--lever-batch", "32"),
        "SmolLM2-135M's shapes (random weights) with every thread: the matmul peak at those shapes, generation at "
        "5 batch sizes and 5 levers at batch 32, each against the plain batch-32 run (one thread, static cache, "
        "eager attention, bf16, a shared prompt prefix), length bucketing, a training and a DCR step, median of 2 "
        "after a warm-up; ~8 min",
        ("--quick",),
        "generation ≥ 40%, training ≥ 30% of the matmul peak", extract_roofline, 900,
    ),
    Bench(
        "scaling", "bench/bench_scaling.py",
        ("--points", "4", "--repeats", "2", "--threads", "1"),
        "4 doubling sizes per workload (generation, judging, a DCR step, the leakage check, two eNTK estimators), "
        "the least of 2 timed calls per size; the log-log figure and table go beside the JSON",
        ("--points", "2", "--repeats", "1", "--only", "dcr_step", "entk_jvp"),
        "growth order ≤ expected + 0.3", extract_scaling, 600,
    ),
)

SEPARATE: tuple[dict[str, str], ...] = (
    {"name": "pipeline", "why": "the whole toy workflow from a clean copy: 15-25 minutes on 2 cores by itself",
     "command": "python bench/bench_pipeline.py --out {out_dir}/pipeline.json"},
    {"name": "roofline_compile", "why": "torch.compile's lever: compilation alone takes ~3 minutes on 2 cores",
     "command": "PYTHONPATH=src python bench/bench_roofline.py --compile-only --out {out_dir}/roofline_compile.json"},
    {"name": "dcr_stage_settings", "why": "needs the converted SmolLM2-135M checkpoint and the smol preset's data",
     "command": "PYTHONPATH=src python bench/bench_dcr_stage_settings.py --model resources/models/smollm2-135m "
                "--contrastive results/smol/data/contrastive.jsonl --out results/smol/dcr_stage_settings "
                "15:1e-5 15:5e-5 8:5e-5 8:1e-4 4:5e-5 8:1e-3:adafactor 8:1e-2:adafactor"},
)


# ---- machine ----


def machine_info() -> dict[str, Any]:
    """What the ratios depend on: CPU, cores, torch's BLAS/OpenMP build and SIMD level, Python, date."""
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")]
    show = torch.__config__.show()
    lines = [ln.strip().removeprefix("- ") for ln in show.splitlines()
             if re.search(r"BLAS|LAPACK|MKL|Math Kernel|OpenMP", ln) and "Build settings" not in ln]
    # The build-settings line is one long comma list; keep only the entries that say which BLAS/OpenMP.
    settings = re.findall(r"\b((?:BLAS_INFO|LAPACK_INFO|USE_MKL|USE_MKLDNN|USE_OPENMP)=[^,\s]*)", show)
    return {
        "cpu_model": models[0] if models else (platform.processor() or "unknown"),
        "logical_cores": sum(ln.startswith("processor") for ln in cpuinfo.splitlines()) or None,
        "os_cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_config": lines + settings,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def machine_line(m: dict[str, Any]) -> str:
    cfg = m.get("torch_config", [])
    blas = next((c.split("=", 1)[1] for c in cfg if c.startswith("BLAS_INFO=")), "unknown")
    openmp = next((c for c in cfg if c.startswith("OpenMP")), "no OpenMP")
    return (f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores (os.cpu_count() {m['os_cpu_count']}); "
            f"torch {m['torch']} (CPU capability {m['cpu_capability']}, BLAS {blas}, {openmp}); "
            f"Python {m['python']}.")


# ---- running ----


def display_command(bench: Bench, args: Sequence[str], json_path: str) -> str:
    return "PYTHONPATH=src " + shlex.join(["python", bench.script, *args, "--out", json_path])


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited between the timeout and the kill
        os.killpg(pid, signal.SIGKILL)


def run_bench(bench: Bench, out_dir: Path, *, quick: bool = False, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run one benchmark in its own process group; a record for suite.json, never an exception."""
    args = [*(bench.quick_args if quick else bench.args), *extra]
    json_path, log_path = out_dir / f"{bench.name}.json", out_dir / f"{bench.name}.log"
    json_path.unlink(missing_ok=True)  # a stale result must not pass for this run's
    timeout = QUICK_TIMEOUT_S if quick else bench.timeout_s
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, str(REPO / bench.script), *args, "--out", str(json_path.resolve())]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    # Own session, so a timeout kills the benchmark's children too (sft_memory trains in subprocesses).
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        timed_out = True
    except BaseException:  # Ctrl-C included: the benchmark's own session would not get it
        _kill_group(proc.pid)
        proc.wait()
        raise
    seconds = time.perf_counter() - t0
    command = display_command(bench, args, str(json_path))
    log_path.write_text(f"$ {command}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")

    headlines: list[Headline] = []
    error: str | None = None
    rc = proc.returncode
    if timed_out:
        error = f"timed out after {timeout} s"
    elif not json_path.exists():
        error = f"exit status {rc}, no JSON written: {_last_line(stderr or stdout)}"
    else:
        try:
            headlines = bench.extract(json.loads(json_path.read_text()))
        # A result the extractor cannot read is a failed run, not a crashed suite.
        except (LookupError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            error = f"unreadable result: {type(exc).__name__}: {exc}"
        else:
            missed = not all(h.met for h in headlines)
            if rc != 0 and not (rc == bench.miss_exit and missed):
                error = f"exit status {rc}: {_last_line(stderr or stdout)}"
    rec: dict[str, Any] = {
        "name": bench.name, "script": bench.script, "args": args,
        "why": "quick: tiny sizes, for tests" if quick else bench.why, "command": command,
        "status": "failed" if error else "ok", "exit_status": rc, "seconds": round(seconds, 1),
        "timeout_s": timeout, "loadavg_1m_before": load, "json": str(json_path), "log": str(log_path),
        "target": bench.target, "headlines": [asdict(h) for h in headlines],
        "met": None if error else all(h.met for h in headlines), "error": error,
    }
    if error:
        rec["stderr_tail"] = (stderr or stdout)[-TAIL_CHARS:]
    return rec


# ---- reporting ----


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(suite: dict[str, Any]) -> str:
    """suite.md: deterministic apart from the measured numbers (no dates, paths or load), for the README."""
    lines: list[str] = []
    if suite["quick"]:
        lines += ["Quick run (`--quick`): tiny sizes for tests; the targets say nothing at these sizes.", ""]
    lines += ["| benchmark | measured | target | met | seconds |", "|---|---|---|---|---|"]
    for rec in suite["benchmarks"]:
        secs = f"{rec['seconds']:.0f}"
        if rec["status"] != "ok":
            lines.append(f"| {rec['name']} | failed: {_cell(rec['error'])} | {_cell(rec['target'])} | no | {secs} |")
            continue
        for i, h in enumerate(rec["headlines"]):
            lines.append(f"| {rec['name']} | {_cell(h['measure'])}: {_cell(h['text'])} | {_cell(h['target'])} | "
                         f"{_yes(h['met'])} | {secs if i == 0 else ''} |")
    # Paragraphs, not lines: the README renders this file verbatim and Markdown would join the lines.
    lines += ["", f"Suite: {suite['total_seconds']:.0f} s (budget {suite['budget_s']} s), `{suite['command']}`."]
    lines += ["", "Run separately: " + "; ".join(f"{s['name']} ({s['why']}): `{s['command']}`"
                                                 for s in suite["separate"]) + "."]
    lines += ["", machine_line(suite["machine"])]
    return "\n".join(lines) + "\n"


def parse_bench_args(items: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--bench-args wants NAME=ARGS with NAME one of {', '.join(names)}; got {item!r}")
        out.setdefault(name, []).extend(shlex.split(rest))
    return out


def main(argv: list[str] | None = None) -> int:
    names = [b.name for b in SUITE]
    separate = {s["name"]: s for s in SEPARATE}
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=names + list(separate),
                    help=f"run only these ({', '.join(names)})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for tests; the output says so")
    ap.add_argument("--bench-args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra arguments for one benchmark, after the suite's (argparse: the last value wins)")
    cli = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(cli)
    for name in args.only or []:
        if name in separate:
            ap.error(f"{name} is not run by the suite ({separate[name]['why']}); run: "
                     f"{separate[name]['command'].format(out_dir=args.out_dir)}")
    try:
        extra = parse_bench_args(args.bench_args, names)
    except ValueError as exc:
        ap.error(str(exc))

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = [b for b in SUITE if not args.only or b.name in args.only]
    machine = machine_info()
    t0 = time.perf_counter()
    records = []
    for i, bench in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] {bench.name} ...", flush=True)
        rec = run_bench(bench, out_dir, quick=args.quick, extra=extra.get(bench.name, ()))
        records.append(rec)
        summary = rec["error"] or "; ".join(f"{h['text']} ({h['target']}: {_yes(h['met'])})"
                                            for h in rec["headlines"])
        print(f"    {rec['status']} in {rec['seconds']:.1f} s: {summary}", flush=True)
    total = time.perf_counter() - t0
    failed = [r["name"] for r in records if r["status"] != "ok"]
    suite = {
        "command": "PYTHONPATH=src python -m bench" + ("" if not cli else " " + shlex.join(cli)), "quick": args.quick, "only": [b.name for b in selected] if args.only else None,
        "budget_s": BUDGET_S, "total_seconds": round(total, 1), "within_budget": total <= BUDGET_S,
        "machine": machine, "benchmarks": records, "failed": failed,
        "separate": [{**s, "status": "separate", "command": s["command"].format(out_dir=out_dir)} for s in SEPARATE],
    }
    (out_dir / "suite.json").write_text(json.dumps(suite, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "suite.md").write_text(render_markdown(suite))
    print(f"wrote {out_dir / 'suite.json'} and {out_dir / 'suite.md'}; {total:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
