"""Benchmark: DCR's truncated forward+backward at layer ℓ vs a full forward+backward.

DCR only needs the layer-ℓ activations, so `overrefusal.dcr.layer_representation` runs blocks
0..ℓ and nothing after. Its forward+backward should cost about (ℓ+1)/L of a full one; the target
printed here allows 20% overhead: ratio <= 1.2 * (ℓ+1) / L.

Three timings per ℓ, each the mean over ``--repeats`` runs after ``--warmup`` runs, interleaved in
round-robin so that load from other processes on a shared machine hits all variants alike:

* ``truncated``: embeddings + blocks 0..ℓ, Circle loss on the pooled state, backward;
* ``naive``: the whole model via ``output_hidden_states=True``, loss on ``hidden_states[ℓ+1]``
  (what one would write without truncation; backward already stops at ℓ, the forward does not);
* ``full`` (one per run, shared by all ℓ): the whole model, loss on the final hidden state.

Usage::

    PYTHONPATH=src python bench/bench_dcr_truncation.py --out benchmarks/dcr_truncation.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from overrefusal import dcr
from overrefusal.io import write_json


def build(args: argparse.Namespace) -> tuple[LlamaForCausalLM, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = LlamaConfig(
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 32),
        intermediate_size=4 * args.hidden, vocab_size=args.vocab, tie_word_embeddings=False, pad_token_id=0,
        max_position_embeddings=max(2048, args.seq),
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(cfg).train()
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(1, args.vocab, (args.batch, args.seq), generator=g)
    lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=g)
    mask = (torch.arange(args.seq)[None, :] >= (args.seq - lengths)[:, None]).long()  # left padding
    ids = ids.masked_fill(mask == 0, 0)
    labels = torch.arange(args.batch) % 2
    return model, ids, mask, labels


def step_fn(kind: str, model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
            layer: int, m: float, gamma: float) -> Callable[[], None]:
    pos = dcr.position_ids_from_mask(mask)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        if kind == "truncated":
            emb = dcr.layer_representation(model, ids, mask, layer, "last")
        else:
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True)
            hidden = out.hidden_states[-1] if kind == "full" else out.hidden_states[layer + 1]
            emb = dcr.pool(hidden, mask, "last")
        dcr.circle_loss(emb, labels, m=m, gamma=gamma).backward()

    return run


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=8, help="decoder depth L")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--dcr-layers", default="0,1,3,5,7", help="comma-separated ℓ values (0-indexed)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, ids, mask, labels = build(args)
    layers = [int(x) for x in args.dcr_layers.split(",") if x.strip()]
    for layer in layers:
        dcr.validate_layer(model.config, layer)

    fns: dict[str, Callable[[], None]] = {"full": step_fn("full", model, ids, mask, labels, 0, 0.25, 80.0)}
    for layer in layers:
        for kind in ("truncated", "naive"):
            fns[f"{kind}@{layer}"] = step_fn(kind, model, ids, mask, labels, layer, 0.25, 80.0)

    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(args.warmup + args.repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times[key].append(dt)

    def ms(key: str) -> dict[str, float]:
        xs = times[key]
        return {"mean_ms": 1e3 * statistics.fmean(xs), "median_ms": 1e3 * statistics.median(xs),
                "min_ms": 1e3 * min(xs)}

    full = ms("full")
    n = args.layers
    rows = []
    for layer in layers:
        tr, nv = ms(f"truncated@{layer}"), ms(f"naive@{layer}")
        ratio = tr["mean_ms"] / full["mean_ms"]
        target = 1.2 * (layer + 1) / n
        rows.append({
            "layer": layer, "truncated": tr, "naive": nv, "ratio": ratio,
            "ratio_median": tr["median_ms"] / full["median_ms"], "naive_ratio": nv["mean_ms"] / full["mean_ms"],
            "target": target, "meets_target": ratio <= target,
        })
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__, "machine": platform.machine(), "device": "cpu",
        "full": full, "rows": rows,
        # One verdict for the whole run: truncation has to pay off at every ℓ, not on average.
        "meets_target": all(r["meets_target"] for r in rows),
    }

    print(f"L={n} hidden={args.hidden} seq={args.seq} batch={args.batch} threads={args.threads} "
          f"repeats={args.repeats}; full fwd+bwd {full['mean_ms']:.1f} ms (mean)")
    print(f"{'layer':>5} {'trunc ms':>9} {'naive ms':>9} {'ratio':>6} {'target':>6}  ok")
    for r in rows:
        print(f"{r['layer']:>5} {r['truncated']['mean_ms']:>9.1f} {r['naive']['mean_ms']:>9.1f} "
              f"{r['ratio']:>6.3f} {r['target']:>6.3f}  {'yes' if r['meets_target'] else 'NO'}")
    if args.out is not None:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
