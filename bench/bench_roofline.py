"""Benchmark: generation and training throughput of the real CPU model's architecture against this machine's
measured matmul peak (the roofline), with the stack's levers measured one at a time.

The model is SmolLM2-135M-Instruct's architecture (LLaMA, 30 blocks, d = 576, MLP 1,536, 9 query / 3 KV heads,
vocabulary 49,152, tied head) with seeded random weights: throughput depends on shapes, dtype and kernels, not
on weight values, and generation is forced to its full length (``min_new_tokens``), so every setting does the
same work. Nothing here needs the converted GGUF checkpoint.

1. **Peak.** ``torch.matmul`` at the model's own shapes (rows = tokens in flight × {576→1536, 1536→576,
   576→576, 576→49152}) in float32 and bfloat16, all threads; the peak is the best sustained FLOP/s over those
   shapes (median of timed repeats). A 2048³ matmul is reported beside it for reference.
2. **Generation.** Greedy ``model.generate`` of ``--new-tokens`` tokens after ``--prompt-tokens``-token prompts,
   at several batch sizes; then, at the best batch size, one lever at a time: eager attention instead of SDPA,
   one thread, a static KV cache, bfloat16 weights, and a prompt prefix shared by every row computed once;
   then length bucketing on prompts of mixed length. ``--compile-only`` measures ``torch.compile`` (with a
   static cache) on its own, as its compilation alone outlasts the rest of a lever's run. Useful FLOPs
   are counted analytically (below) and divided by wall time; the fraction is of the peak of the dtype the run
   used.
3. **Training.** One full fine-tuning step (forward, backward, AdamW) on ``--train-batch`` × ``--train-seq``
   tokens, float32 and bfloat16 autocast; and DCR's truncated step (blocks 0..ℓ, backward) at ℓ = L/2.
4. **Profile.** Where a goal is missed, a ``torch.profiler`` trace of one setting says where the time goes: the
   ops with the most self CPU time, and the share of time in matmul ops (aten::mm/addmm/bmm/linear/matmul).

FLOPs (multiply-add = 2): per token through a block, 2 × (its weight count) + attention 4 × context × d (QKᵀ and
AV); the head 2 × d × V for each position whose logits are computed (every decoded token, one per prompt at
prefill). A training step is 3 × the forward (backward = 2 × forward) for every token and position.

Goals (issue 17): generation ≥ 40% of the measured peak at the best batch size; a training step ≥ 30%.

    PYTHONPATH=src python bench/bench_roofline.py --out results/bench/roofline.json [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

SMOLLM2_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
                "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0}
GOAL_GENERATION = 0.40
BASELINE = "baseline (fp32, SDPA, dynamic cache, all threads)"  # the lever table's reference row
GOAL_TRAINING = 0.30
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul", "aten::baddbmm")


def build_model(arch: dict[str, Any], seed: int = 0, attn: str = "sdpa") -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**arch, pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_implementation=attn)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model.eval()


def block_weights(arch: dict[str, Any]) -> int:
    d, f = arch["hidden_size"], arch["intermediate_size"]
    kv = d * arch["num_key_value_heads"] // arch["num_attention_heads"]
    return d * d * 2 + d * kv * 2 + 3 * d * f  # q, o; k, v; gate, up, down


def forward_flops(arch: dict[str, Any], positions: int, context_sum: int, head_positions: int,
                  layers: int | None = None) -> float:
    """FLOPs of a forward pass over ``positions`` token positions whose attention contexts add up to
    ``context_sum``, through ``layers`` blocks (all by default), with logits at ``head_positions``."""
    n = arch["num_hidden_layers"] if layers is None else layers
    d, v = arch["hidden_size"], arch["vocab_size"]
    return n * (2.0 * block_weights(arch) * positions + 4.0 * d * context_sum) + 2.0 * d * v * head_positions


def generation_flops(arch: dict[str, Any], batch: int, prompt: int, new: int) -> float:
    prefill = forward_flops(arch, batch * prompt, batch * prompt * (prompt + 1) // 2, batch)
    # decoding step t (1..new-1) feeds one token per sequence with context prompt + t
    decode = sum(forward_flops(arch, batch, batch * (prompt + t), batch) for t in range(1, new))
    return prefill + decode


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bf16_native() -> bool:
    """True where the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX); elsewhere oneDNN
    emulates bf16 through fp32 and it is not expected to be faster."""
    cap = torch.backends.cpu.get_cpu_capability()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags or cap == "AMX"


# ---- 1. peak ----


def matmul_peak(arch: dict[str, Any], rows: list[int], repeats: int) -> dict[str, Any]:
    d, f, v = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"]
    shapes = [(d, f), (f, d), (d, d), (d, v)]
    result: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        rows_out = []
        for m in rows:
            for k, n in shapes:
                a = torch.randn(m, k, dtype=dtype)
                b = torch.randn(k, n, dtype=dtype)
                t = statistics.median(timed(lambda a=a, b=b: torch.matmul(a, b), repeats, warmup=2))
                rows_out.append({"m": m, "k": k, "n": n, "seconds": t, "gflops": 2.0 * m * k * n / t / 1e9})
        sq = torch.randn(2048, 2048, dtype=dtype)
        t_sq = statistics.median(timed(lambda sq=sq: torch.matmul(sq, sq), max(2, repeats // 2), warmup=1))
        result[name] = {"shapes": rows_out, "peak_gflops": max(r["gflops"] for r in rows_out),
                        "square_2048_gflops": 2.0 * 2048**3 / t_sq / 1e9}
    return result


# ---- 2. generation ----


def generation_run(model: Any, arch: dict[str, Any], batch: int, prompt: int, new: int, repeats: int,
                   **generate_kwargs: Any) -> dict[str, Any]:
    """Median of ``repeats`` greedy generations after a full-length warm-up (oneDNN builds a kernel for each
    new attention shape, and a compiled static cache is sized by ``max_new_tokens``); the warm-up's time is
    kept, as it holds a compiled run's compilation."""
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(3, arch["vocab_size"], (batch, prompt), generator=g)
    mask = torch.ones_like(ids)

    def run() -> Any:
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                  min_new_tokens=new, pad_token_id=0, **generate_kwargs)

    t0 = time.perf_counter()
    out = run()  # the warm-up, and the check that every sequence ran to full length
    warmup = time.perf_counter() - t0
    assert out.shape == (batch, prompt + new), out.shape
    t = statistics.median(timed(run, repeats, warmup=0))
    flops = generation_flops(arch, batch, prompt, new)
    return {"batch": batch, "prompt_tokens": prompt, "new_tokens": new, "seconds": t, "warmup_seconds": warmup,
            "new_tokens_per_s": batch * new / t, "gflops": flops / t / 1e9}


def shared_prefix_run(model: Any, arch: dict[str, Any], batch: int, prompt: int, new: int, shared: int,
                      repeats: int) -> dict[str, Any]:
    """Prompts whose first ``shared`` tokens are the same for every row (a chat template's preamble, Alpaca's
    instruction header): that part runs once at batch 1, its KV cache is copied to every row, and ``generate``
    continues from it. The outputs must equal a plain generation's; FLOPs counted are those executed."""
    from transformers import DynamicCache

    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(3, arch["vocab_size"], (batch, prompt), generator=g)
    ids[:, :shared] = ids[0, :shared]
    mask = torch.ones_like(ids)
    kw = {"attention_mask": mask, "do_sample": False, "max_new_tokens": new, "min_new_tokens": new,
          "pad_token_id": 0}

    def run() -> Any:
        with torch.inference_mode():
            cache = DynamicCache(config=model.config)
            model(input_ids=ids[:1, :shared], past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(batch)
            return model.generate(input_ids=ids, past_key_values=cache, **kw)

    with torch.inference_mode():
        plain = model.generate(input_ids=ids, **kw)
    same = bool(torch.equal(run(), plain))  # also the warm-up
    t = statistics.median(timed(run, repeats, warmup=0))
    # the FLOP count is linear in positions and contexts: a plain generation's less the batch - 1 prefix passes saved
    flops = generation_flops(arch, batch, prompt, new) - (batch - 1) * forward_flops(
        arch, shared, shared * (shared + 1) // 2, 0)
    return {"batch": batch, "prompt_tokens": prompt, "shared_prefix_tokens": shared, "new_tokens": new,
            "seconds": t, "new_tokens_per_s": batch * new / t, "gflops": flops / t / 1e9,
            "same_tokens_as_plain_generation": same}


def bucketing_run(model: Any, arch: dict[str, Any], n: int, batch: int, max_prompt: int, new: int,
                  repeats: int) -> dict[str, Any]:
    """``n`` prompts of mixed length (uniform in 8..max_prompt) generated ``batch`` at a time, left-padded to
    the longest of each batch, in arrival order and sorted by length (what ``overrefusal.generate`` does).
    Useful FLOPs count real tokens only, so the gap between the two is the work spent on padding."""
    g = torch.Generator().manual_seed(n)
    lengths = torch.randint(8, max_prompt + 1, (n,), generator=g).tolist()
    prompts = [torch.randint(3, arch["vocab_size"], (length,), generator=g) for length in lengths]
    useful = sum(generation_flops(arch, 1, length, new) for length in lengths)

    def run(order: list[int]) -> None:
        for i in range(0, n, batch):
            rows = [prompts[j] for j in order[i:i + batch]]
            width = max(len(r) for r in rows)
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for k, r in enumerate(rows):
                ids[k, width - len(r):], mask[k, width - len(r):] = r, 1
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                               min_new_tokens=new, pad_token_id=0)

    orders = {"arrival order": list(range(n)),
              "sorted by length": sorted(range(n), key=lambda i: (-lengths[i], i))}
    out: dict[str, Any] = {"n_prompts": n, "batch": batch, "prompt_tokens": f"8..{max_prompt}",
                           "mean_prompt_tokens": statistics.mean(lengths), "new_tokens": new}
    for name, order in orders.items():
        t = statistics.median(timed(lambda order=order: run(order), repeats, warmup=0))
        pad = sum(max(lengths[j] for j in order[i:i + batch]) * len(order[i:i + batch])
                  for i in range(0, n, batch)) - sum(lengths)
        out[name] = {"seconds": t, "new_tokens_per_s": n * new / t, "useful_gflops": useful / t / 1e9,
                     "padding_share_of_prompt_tokens": pad / (pad + sum(lengths))}
    out["speedup_sorted"] = out["arrival order"]["seconds"] / out["sorted by length"]["seconds"]
    return out


# ---- 3. training ----


def training_run(model: Any, arch: dict[str, Any], batch: int, seq: int, repeats: int, *, autocast: bool = False,
                 layers: int | None = None) -> dict[str, Any]:
    """One optimiser step per call: the whole model (LM loss) or, with ``layers``, DCR's truncated forward
    through blocks 0..layers-1 (loss on the last position's state), backward and AdamW."""
    from overrefusal import dcr

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    g = torch.Generator().manual_seed(seq)
    ids = torch.randint(3, arch["vocab_size"], (batch, seq), generator=g)
    mask = torch.ones_like(ids)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            if layers is None:
                loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
            else:
                loss = dcr.layer_representation(model, ids, mask, layers - 1, "last").float().pow(2).mean()
        loss.backward()
        opt.step()

    t = statistics.median(timed(step, repeats, warmup=1))
    model.eval()
    positions = batch * seq
    ctx_sum = batch * seq * (seq + 1) // 2
    fwd = (forward_flops(arch, positions, ctx_sum, positions) if layers is None
           else forward_flops(arch, positions, ctx_sum, 0, layers=layers))
    return {"batch": batch, "seq": seq, "layers": layers or arch["num_hidden_layers"], "autocast_bf16": autocast,
            "seconds": t, "tokens_per_s": positions / t, "gflops": 3.0 * fwd / t / 1e9}


# ---- 4. profile ----


def profile(fn: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return {"matmul_share": matmul / total,
            "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / total, "calls": e.count}
                        for e in rows]}


def markdown(d: dict[str, Any]) -> str:
    """The README's roofline tables, from the JSON alone."""
    p32, p16 = d["peak"]["float32"]["peak_gflops"], d["peak"]["bfloat16"]["peak_gflops"]
    gen, train = d["generation"], d["training"]
    lines = [f"Matmul peak at the model's shapes ({d['threads']} threads, {d['machine']['cpu_capability']}, native bf16: "
             f"{'yes' if d['machine']['bf16_native'] else 'no'}): fp32 {p32:.1f} GFLOP/s, bf16 {p16:.1f} GFLOP/s "
             f"(2048³: {d['peak']['float32']['square_2048_gflops']:.1f} / {d['peak']['bfloat16']['square_2048_gflops']:.1f})."
             , "", "| run | batch | new tokens/s | GFLOP/s | of its dtype's peak | of the fp32 peak |", "|---|---:|---:|---:|---:|---:|"]
    for r in gen["by_batch"]:
        lines.append(f"| generation, fp32 | {r['batch']} | {r['new_tokens_per_s']:.1f} | {r['gflops']:.1f} | "
                     f"{r['gflops'] / p32:.1%} | {r['gflops'] / p32:.1%} |")
    for name, r in gen["levers"].items():
        lines.append(f"| generation: {name} | {r['batch']} | {r['new_tokens_per_s']:.1f} "
                     f"({r['speedup_over_baseline']:.2f}× the baseline) | {r['gflops']:.1f} | "
                     f"{r['fraction_of_peak']:.1%} | {r['fraction_of_fp32_peak']:.1%} |")
    for name, r in train["runs"].items():
        lines.append(f"| training: {name} | {r['batch']} × {r['seq']} | {r['tokens_per_s']:.0f} (tokens/s) | "
                     f"{r['gflops']:.1f} | {r['fraction_of_peak']:.1%} | {r['fraction_of_fp32_peak']:.1%} |")
    lines += ["", f"Levers at batch {gen['lever_batch']}. Prompt processing is {gen['prefill_share_of_time']:.0%} of a "
              f"generation's time there ({gen['by_batch'][0]['prompt_tokens']}-token prompts, "
              f"{gen['by_batch'][0]['new_tokens']} new tokens). Goals: generation ≥ {gen['goal']:.0%} "
              f"({'met' if gen['meets_goal'] else 'missed'}: {gen['best_fraction']:.1%}, {gen['best_run']}), a "
              f"training step ≥ "
              f"{train['goal']:.0%} ({'met' if train['meets_goal'] else 'missed'}: {train['best_fraction']:.1%})."]
    bk = gen.get("bucketing")
    if bk:
        arr, srt = bk["arrival order"], bk["sorted by length"]
        lines.append(f"Length bucketing ({bk['n_prompts']} prompts of {bk['prompt_tokens']} tokens, batches of "
                     f"{bk['batch']}, {bk['new_tokens']} new tokens): sorted by length {srt['new_tokens_per_s']:.1f} "
                     f"new tokens/s ({srt['padding_share_of_prompt_tokens']:.0%} of prompt positions padding) against "
                     f"{arr['new_tokens_per_s']:.1f} in arrival order ({arr['padding_share_of_prompt_tokens']:.0%}): "
                     f"{bk['speedup_sorted']:.2f}×.")
    for name, prof in d["profiles"].items():
        top = ", ".join(f"{o['op']} {o['self_share']:.0%}" for o in prof["top_ops"][:6])
        lines.append(f"Profile of {name} (self CPU time): matmul ops {prof['matmul_share']:.0%}; top: {top}.")
    return "\n".join(lines) + "\n"


def compile_lever(args: argparse.Namespace, arch: dict[str, Any]) -> int:
    """``torch.compile`` on generation: transformers compiles ``generate``'s forward by itself on CUDA/XPU only;
    elsewhere its documented recipe is compiling the forward with a static cache (fixed shapes: one prefill and
    one decoding graph). Set against the same model uncompiled, with the dynamic and with the static cache."""
    from overrefusal.io import write_json

    t_start = time.perf_counter()
    b, prompt, new, reps = args.compile_batch, args.prompt_tokens, args.new_tokens, args.repeats
    model = build_model(arch)
    runs = {"dynamic KV cache (the default)": generation_run(model, arch, b, prompt, new, reps),
            "static KV cache": generation_run(model, arch, b, prompt, new, reps, cache_implementation="static")}
    compiled = build_model(arch)
    compiled.forward = torch.compile(compiled.forward, mode="default")
    runs["static KV cache + torch.compile (inductor)"] = generation_run(compiled, arch, b, prompt, new, reps,
                                                                        cache_implementation="static")
    base = runs["dynamic KV cache (the default)"]["new_tokens_per_s"]
    lines = ["| run | batch | new tokens/s | × the default | first call, s (compilation included) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in runs.items():
        r["speedup_over_default"] = r["new_tokens_per_s"] / base
        lines.append(f"| {name} | {r['batch']} | {r['new_tokens_per_s']:.1f} | {r['speedup_over_default']:.2f} | "
                     f"{r['warmup_seconds']:.0f} |")
    lines += ["", f"{prompt}-token prompts, {new} new tokens, {args.threads} threads, median of {reps} calls after "
              "the first; torch " + torch.__version__ + "."]
    doc = {"benchmark": "roofline_compile", "architecture": arch, "quick": args.quick, "threads": args.threads,
           "runs": runs, "seconds": round(time.perf_counter() - t_start, 1)}
    write_json(args.out, doc)
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--batches", default="1,8,32,64,128")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--lever-batch", type=int, default=64, help="batch size of the lever runs (one of --batches; "
                    "else the best batch)")
    ap.add_argument("--shared-prefix", type=int, default=16, help="prompt tokens every row shares (prefix lever)")
    ap.add_argument("--bucket-prompts", type=int, default=48)
    ap.add_argument("--bucket-batch", type=int, default=16)
    ap.add_argument("--bucket-max-prompt", type=int, default=120)
    ap.add_argument("--bucket-new-tokens", type=int, default=8)
    ap.add_argument("--compile-only", action="store_true",
                    help="only the torch.compile lever against its baselines, at --compile-batch (compilation "
                         "alone takes ~3 min on 2 cores, hence its own run and file)")
    ap.add_argument("--compile-batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="a 2-block model and tiny sizes: checks the script only")
    args = ap.parse_args(argv)
    from overrefusal.io import write_json

    arch = dict(SMOLLM2_135M)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [256, 1024]
    if args.quick:
        arch.update(num_hidden_layers=2, vocab_size=4096)
        batches, rows = [1, 4], [64]
        args.prompt_tokens, args.new_tokens, args.train_batch, args.train_seq, args.repeats = 8, 4, 2, 16, 1
        args.shared_prefix, args.bucket_prompts, args.bucket_batch, args.bucket_max_prompt = 4, 6, 4, 12
        args.bucket_new_tokens, args.compile_batch = 2, 4
    torch.set_num_threads(args.threads)
    if args.compile_only:
        return compile_lever(args, arch)
    t_start = time.perf_counter()
    native = bf16_native()
    peak = matmul_peak(arch, rows, args.repeats)
    p32, p16 = peak["float32"]["peak_gflops"], peak["bfloat16"]["peak_gflops"]

    model = build_model(arch)
    gen = [generation_run(model, arch, b, args.prompt_tokens, args.new_tokens, args.repeats) for b in batches]
    best = max(gen, key=lambda r: r["gflops"])
    # levers at a fixed batch: at the largest one each lever's run would cost twice as much for the same answer
    b = args.lever_batch if args.lever_batch in batches else best["batch"]
    base = next(r for r in gen if r["batch"] == b)
    lever: dict[str, dict[str, Any]] = {BASELINE: base}
    with threads(1):
        lever["one thread"] = generation_run(model, arch, b, args.prompt_tokens, args.new_tokens, args.repeats)
    lever["static KV cache"] = generation_run(model, arch, b, args.prompt_tokens, args.new_tokens, args.repeats,
                                              cache_implementation="static")
    eager = build_model(arch, attn="eager")
    lever["eager attention"] = generation_run(eager, arch, b, args.prompt_tokens, args.new_tokens, args.repeats)
    del eager
    model_bf16 = build_model(arch).to(torch.bfloat16)
    lever["bfloat16 weights"] = {**generation_run(model_bf16, arch, b, args.prompt_tokens, args.new_tokens,
                                                  args.repeats), "dtype": "bfloat16"}
    del model_bf16
    lever[f"shared prefix ({args.shared_prefix} of {args.prompt_tokens} prompt tokens, run once)"] = \
        shared_prefix_run(model, arch, b, args.prompt_tokens, args.new_tokens, args.shared_prefix, args.repeats)
    for r in lever.values():
        r["fraction_of_peak"] = r["gflops"] / (p16 if r.get("dtype") == "bfloat16" else p32)
        r["fraction_of_fp32_peak"] = r["gflops"] / p32
        r["speedup_over_baseline"] = r["new_tokens_per_s"] / base["new_tokens_per_s"]
    share = generation_run(model, arch, b, args.prompt_tokens, 1, args.repeats)["seconds"] / base["seconds"]
    bucketing = bucketing_run(model, arch, args.bucket_prompts, args.bucket_batch, args.bucket_max_prompt,
                              args.bucket_new_tokens, args.repeats)

    train_model = build_model(arch)
    train = {"full step, fp32": training_run(train_model, arch, args.train_batch, args.train_seq, args.repeats),
             "full step, bf16 autocast": training_run(train_model, arch, args.train_batch, args.train_seq,
                                                      args.repeats, autocast=True),
             f"DCR step, blocks 0..{arch['num_hidden_layers'] // 2 - 1}, fp32": training_run(
                 train_model, arch, args.train_batch, args.train_seq, args.repeats,
                 layers=arch["num_hidden_layers"] // 2)}
    for r in train.values():
        r["fraction_of_peak"] = r["gflops"] / (p16 if r["autocast_bf16"] else p32)
        r["fraction_of_fp32_peak"] = r["gflops"] / p32

    candidates = {**{f"fp32, batch {r['batch']}": {**r, "fraction_of_peak": r["gflops"] / p32} for r in gen},
                  **{name: r for name, r in lever.items() if name != BASELINE}}
    best_name, best_gen = max(candidates.items(), key=lambda kv: kv[1]["fraction_of_peak"])
    best_train = max(train.values(), key=lambda r: r["fraction_of_peak"])
    profiles = {}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, arch["vocab_size"], (b, args.prompt_tokens), generator=g)
    if best_gen["fraction_of_peak"] < GOAL_GENERATION:
        profiles["generation"] = profile(lambda: model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, pad_token_id=0))
    if best_train["fraction_of_peak"] < GOAL_TRAINING:
        profiles["training"] = profile(lambda: training_run(train_model, arch, args.train_batch, args.train_seq, 1))

    doc = {
        "benchmark": "roofline",
        "architecture": arch,
        "weights": "seeded random (throughput depends on shapes, dtype and kernels, not on weight values)",
        "quick": args.quick,
        "threads": args.threads,
        "machine": {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_native": native,
                    "platform": platform.platform(), "torch": torch.__version__},
        "peak": peak,
        "generation": {"by_batch": gen, "lever_batch": b, "levers": lever, "prefill_share_of_time": share,
                       "best_run": best_name, "best_batch": best_gen["batch"],
                       "bucketing": bucketing,
                       "goal": GOAL_GENERATION, "best_fraction": best_gen["fraction_of_peak"],
                       "meets_goal": best_gen["fraction_of_peak"] >= GOAL_GENERATION},
        "training": {"runs": train, "goal": GOAL_TRAINING, "best_fraction": best_train["fraction_of_peak"],
                     "meets_goal": best_train["fraction_of_peak"] >= GOAL_TRAINING},
        "profiles": profiles,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(args.out, doc)
    Path(args.out).with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
    print(f"peak fp32 {p32:.1f} GFLOP/s, bf16 {p16:.1f} (native bf16: {native}); generation best "
          f"{best_gen['fraction_of_peak']:.1%} ({best_name}); training best {best_train['fraction_of_peak']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
