"""Benchmark: peak memory of LoRA vs full SFT through our TRL path (``overrefusal.sft.build_trainer``).

Builds the toy world's data and tokenizer in a temporary directory, a randomly initialised model
with the toy architecture from ``config.yaml`` (``models.toy-llama.arch``; override with
``--hidden/--layers/--intermediate`` to see how the gap grows with size), and STL's SFT examples.
Each (mode, repeat) then trains ``--steps`` optimiser steps in a *fresh* Python process, so one
run's allocations cannot hide in the other's peak:

* ``peak_rss_delta_mb``: the peak resident set size during ``trainer.train()`` minus the RSS just
  before it (model, data and trainer already built), sampled from ``/proc/self/statm`` every
  millisecond by a background thread; this is what the job costs on top of holding the model;
* ``ru_maxrss_mb``: the process's lifetime peak RSS (imports included), for reference;
* on CUDA, ``cuda_peak_delta_mb`` from ``torch.cuda.max_memory_allocated`` (exact tensor bytes);
* ``state_mb``: the analytic training state, gradients + AdamW's two moments of the trainable
  parameters (float32): the part LoRA removes. Activations are the same in both modes.

The result is the median over ``--repeats`` of each measure per mode, and lora/full ratios.

Target (the JSON's headline): LoRA's ``peak_rss_delta_mb`` at most ``--target-ratio`` (0.9) of full
SFT's, a saving of at least 10% of what training adds. At the toy architecture (0.8M parameters) the
state LoRA removes is about 9 of ~56 MB and the ratio about 0.98, so a pass there would be noise; with
``--hidden 256 --layers 6 --intermediate 688`` (5M parameters, 58 MB of state) it was about 0.78.

Usage::

    PYTHONPATH=src python bench/bench_sft_memory.py --out benchmarks/sft_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import yaml

from overrefusal.io import write_json

REPO = Path(__file__).resolve().parents[1]
MODES = ("full", "lora")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Sample the RSS every ``interval`` seconds in a thread; ``peak`` is the largest sample."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval, self.peak, self._stop = interval, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


# ----------------------------------------------------------------------------------------------
# Setup (parent) and one measurement (child)
# ----------------------------------------------------------------------------------------------


def prepare(work: Path, arch: dict[str, int], seed: int) -> tuple[str, str]:
    """Toy-world data + tokenizer + a random toy-architecture model; returns (model_dir, examples.json)."""
    from overrefusal.models.pretrain import build_model
    from overrefusal.models.tokenizer import train_tokenizer, world_texts
    from overrefusal.records import read_records
    from overrefusal.sft import build_examples
    from overrefusal.toyworld.files import write_world

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    write_world(cfg["data"]["toy"], str(work / "data" / "manifest.json"))
    files = sorted(str(p) for p in (work / "data").rglob("*.jsonl"))
    model_dir = work / "model"
    tok = train_tokenizer(world_texts(files), str(model_dir))
    build_model(tok, arch, seed).save_pretrained(model_dir)
    data = {s: read_records(work / "data" / f"{s}.jsonl") for s in ("sft_general", "sft_safety")}
    examples, _ = build_examples(data, template=cfg["models"]["toy-llama"]["template"], seed=seed)
    (work / "examples.json").write_text(json.dumps(examples))
    return str(model_dir), str(work / "examples.json")


def child(mode: str, model_dir: str, examples_path: str, out_dir: str, steps: int, batch_size: int,
          threads: int) -> dict[str, Any]:
    import torch

    from overrefusal.sft import build_trainer

    torch.set_num_threads(threads)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["sft"]
    cfg.update(max_steps=steps, batch_size=batch_size, save_steps=10 * steps + 1, logging_steps=max(1, steps))
    cfg["lora"] = {**cfg["lora"], "enabled": mode == "lora"}
    trainer, _, _ = build_trainer(model_dir, out_dir, json.loads(Path(examples_path).read_text()), cfg)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    before = _rss_bytes()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        trainer.train()
    seconds = time.perf_counter() - t0
    out = {
        "mode": mode, "steps": steps, "seconds": seconds, "params": total, "trainable_params": trainable,
        "rss_before_mb": before / 2**20, "peak_rss_delta_mb": (peak.peak - before) / 2**20,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "state_mb": 3 * 4 * trainable / 2**20,  # float32 gradient + AdamW exp_avg + exp_avg_sq
        "device": "cuda" if cuda else "cpu",
    }
    if cuda:
        out["cuda_peak_delta_mb"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2**20
    return out


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="optimiser steps per measurement")
    ap.add_argument("--batch-size", type=int, default=None, help="default: sft.batch_size from config.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=None, help="override the toy hidden size")
    ap.add_argument("--layers", type=int, default=None, help="override the toy depth")
    ap.add_argument("--intermediate", type=int, default=None, help="override the toy MLP size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-ratio", type=float, default=0.9,
                    help="LoRA's peak RSS delta must be at most this fraction of full SFT's")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--child", nargs=5, metavar=("MODE", "MODEL", "EXAMPLES", "OUTDIR", "RESULT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    batch_size = args.batch_size or cfg["sft"]["batch_size"]

    if args.child:
        mode, model_dir, examples, out_dir, result = args.child
        Path(result).write_text(json.dumps(child(mode, model_dir, examples, out_dir, args.steps, batch_size,
                                                 args.threads)))
        return {}

    arch = dict(cfg["models"]["toy-llama"]["arch"])
    for key, val in (("hidden_size", args.hidden), ("num_layers", args.layers), ("intermediate_size", args.intermediate)):
        if val is not None:
            arch[key] = val
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-sft-memory-") as tmp:
        work = Path(tmp)
        model_dir, examples = prepare(work, arch, args.seed)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        for r in range(args.repeats):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:  # alternate the order against drift
                result = work / f"{mode}-{r}.json"
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--batch-size", str(batch_size),
                       "--threads", str(args.threads),
                       "--child", mode, model_dir, examples, str(work / f"run-{mode}-{r}"), str(result)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"{mode} run {r} failed:\n{proc.stderr[-3000:]}")
                runs[mode].append(json.loads(result.read_text()))

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[mode])

    keys = ["peak_rss_delta_mb", "ru_maxrss_mb", "state_mb", "seconds"]
    if all("cuda_peak_delta_mb" in x for m in MODES for x in runs[m]):
        keys.append("cuda_peak_delta_mb")
    summary = {m: {k: med(m, k) for k in keys} | {"params": runs[m][0]["params"],
                                                    "trainable_params": runs[m][0]["trainable_params"]}
               for m in MODES}
    ratios = {k: (summary["lora"][k] / summary["full"][k] if summary["full"][k] else None)
              for k in keys if k != "seconds"}
    result = {
        "arch": arch, "lora": cfg["sft"]["lora"], "steps": args.steps, "batch_size": batch_size,
        "repeats": args.repeats, "threads": args.threads, "torch": __import__("torch").__version__,
        "machine": platform.machine(), "device": runs["full"][0]["device"],
        "summary": summary, "lora_over_full": ratios,
        "target_lora_over_full_peak_rss_delta": args.target_ratio,
        "meets_target": ratios["peak_rss_delta_mb"] is not None and ratios["peak_rss_delta_mb"] <= args.target_ratio,
        "runs": runs,
    }
    print(f"arch {arch}; {args.steps} steps x batch {batch_size}; median of {args.repeats} fresh processes")
    print(f"{'mode':>5} {'params':>9} {'trainable':>9} {'peak RSS delta MB':>18} {'ru_maxrss MB':>13} "
          f"{'grad+Adam MB':>12}")
    for m in MODES:
        s = summary[m]
        print(f"{m:>5} {s['params']:>9} {s['trainable_params']:>9} {s['peak_rss_delta_mb']:>18.1f} "
              f"{s['ru_maxrss_mb']:>13.1f} {s['state_mb']:>12.2f}")
    print("lora/full: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items() if v is not None)
          + f"; target peak_rss_delta_mb <= {args.target_ratio:g}: {'met' if result['meets_target'] else 'MISSED'}")
    if args.out is not None:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
