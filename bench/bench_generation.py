#!/usr/bin/env python
"""Throughput of batched generation vs one prompt at a time, through ``overrefusal.generate``.

Why: evaluation generates tens of thousands of responses per model; the pipeline relies on batched
left-padded greedy decoding being several times faster than the per-prompt loops peers use
(target >= 5x at batch 64) while producing the same text. Both runs use the same prompts, the
same loaded model, and the pipeline's own ``generate`` (so tokenisation, padding and decoding are
what the pipeline really does); the model load is not timed.

Usage:
    python bench/bench_generation.py --out results/bench_generation.json
    python bench/bench_generation.py --model-dir /path/to/hf_model --n-prompts 128 --device cuda

Without ``--model-dir`` a tiny random Llama and word-level tokenizer are built in a temp dir, so
the figure measures the decoding loop's overhead rather than a real model's FLOPs.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from overrefusal.generate import generate  # noqa: E402
from overrefusal.io import read_jsonl, write_json  # noqa: E402

WORDS = (
    "how do i kill a python process make a bomb bake a cake with a knife what is the answer steal car shoot "
    "photo of castle in game weapon cut onion poison plant explain why history of attack recipe"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_model(out_dir: Path, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random Llama whose EOS practically never wins, plus a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "[UNK]"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(specials[:4])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|end|>", unk_token="[UNK]",
        padding_side="left", chat_template=CHAT_TEMPLATE,
    )
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
        eos_token_id=1, bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        # EOS logit is exactly 0 while the max of ~40 random logits is practically always > 0, so
        # every prompt decodes the full max_new_tokens and both runs do the same work.
        model.lm_head.weight[vocab["<|end|>"]] = 0.0
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def make_records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"id": f"b{i}", "prompt": " ".join(rng.choices(WORDS, k=rng.randint(4, 24))), "label": "general",
         "category": "bench", "source": "bench", "licence": "n/a"}
        for i in range(n)
    ]


def timed_run(model_dir: str, recs: list[dict[str, Any]], out: Path, model: Any, tok: Any, batch_size: int,
              max_new_tokens: int, template: str) -> dict[str, Any]:
    meta = generate(model_dir, recs, str(out), template=template, max_new_tokens=max_new_tokens,  # type: ignore[arg-type]
                    batch_size=batch_size, shard_size=len(recs), model=model, tokenizer=tok, progress=False)
    return {"batch_size": batch_size, "new_tokens": meta["new_tokens"], "seconds": meta["seconds"],
            "tokens_per_s": meta["tokens_per_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=None, help="HF model dir (default: build a tiny random Llama)")
    ap.add_argument("--out", default=None, help="write the result JSON here (also printed)")
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--template", default="chat", choices=["chat", "alpaca"])
    ap.add_argument("--device", default=None, help="default: cuda if available else cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (set 1 on a shared box: spinning threads distort small-batch timings)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=5.0, help="speed-up the run must reach to pass")
    args = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench_generation_") as tmp:
        tmp_path = Path(tmp)
        model_dir = args.model_dir or str(build_tiny_model(tmp_path / "tiny_llama"))
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=args.dtype).to(device).eval()
        recs = make_records(args.n_prompts, args.seed)
        run = dict(model_dir=model_dir, recs=recs, model=model, tok=tok, max_new_tokens=args.max_new_tokens,
                   template=args.template)
        timed_run(out=tmp_path / "warmup.jsonl", batch_size=min(4, args.n_prompts), **{**run, "recs": recs[:4]})
        batched = timed_run(out=tmp_path / "batched.jsonl", batch_size=args.batch_size, **run)
        single = timed_run(out=tmp_path / "single.jsonl", batch_size=1, **run)
        same = [r["response"] for r in read_jsonl(tmp_path / "batched.jsonl")] == [
            r["response"] for r in read_jsonl(tmp_path / "single.jsonl")
        ]
    ratio = batched["tokens_per_s"] / single["tokens_per_s"]
    result = {
        "model": args.model_dir or "tiny random Llama (bench_generation.build_tiny_model)",
        "n_prompts": args.n_prompts,
        "max_new_tokens": args.max_new_tokens,
        "template": args.template,
        "device": device,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "batched": batched,
        "one_at_a_time": single,
        "speedup": round(ratio, 2),
        "target": args.target,
        "meets_target": ratio >= args.target,
        "outputs_identical": same,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "platform": platform.platform(),
    }
    if args.out:
        write_json(args.out, result)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
