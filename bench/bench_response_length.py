"""Benchmark: how many new tokens the judges need, measured on responses the study generated.

Generation time grows with ``eval.max_new_tokens``, so the study should generate no more than its judges read.
This cuts every response of the tuning generations (made at a longer cap, default 64) to its first k tokens
with the model's tokenizer, judges the cut text with each judge, and counts how often the verdict differs from
the verdict on the whole response. A cap k is enough when, for every judge, at most ``--max-flip`` of the
verdicts change (the target). It also reports the share of new tokens that a cap of k saves, an upper bound on
the time it saves (prompt processing and early-stopping batches are not cut).

Responses that ended before k tokens are unchanged by the cut, so they count as agreeing; that is the
point: a cap only matters for the responses it cuts.

Usage::

    PYTHONPATH=src python bench/bench_response_length.py \\
        --generations 'results/smol-study/smollm2-135m/tune_*/seed*/tuning/generations/*.jsonl' \\
        --tokenizer results/smol-study/smollm2-135m/stl/seed0/model \\
        --judge refusal_clf_v2=results/published/smol/judges/refusal_clf_v2 --judge xstest_strmatch_v1 \\
        --judge jbb_substring_v1 --cuts 24,32,40,48 --out results/bench/response_length
"""

from __future__ import annotations

import argparse
import glob
import platform
from pathlib import Path

from overrefusal.io import read_jsonl, write_json, write_text


def parse_judge(spec: str):
    from overrefusal.judges import get_judge

    name, _, artefact = spec.partition("=")
    return get_judge(name, artefact=Path(artefact)) if artefact else get_judge(name)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generations", required=True, help="glob of generation JSONL files")
    ap.add_argument("--tokenizer", required=True, help="a model directory holding the generating tokenizer")
    ap.add_argument("--judge", action="append", required=True, help="judge id, or id=artefact dir")
    ap.add_argument("--cuts", default="24,32,40,48")
    ap.add_argument("--max-flip", type=float, default=0.01, help="the target: at most this share of verdicts change")
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    files = sorted(glob.glob(args.generations))
    if not files:
        raise SystemExit(f"no generation files match {args.generations}")
    rows = [r for f in files for r in read_jsonl(f) if r.get("response") is not None]
    cap = max(int(r["n_new_tokens"]) for r in rows)
    cuts = [int(c) for c in args.cuts.split(",")]
    token_ids = [tok(r["response"], add_special_tokens=False)["input_ids"] for r in rows]
    judges = [parse_judge(s) for s in args.judge]
    results = []
    for judge in judges:
        full = [j.label for j in judge.judge_many([(r["prompt"], r["response"]) for r in rows])]
        for k in cuts:
            cut_rows = [(i, tok.decode(ids[:k], skip_special_tokens=True)) for i, ids in enumerate(token_ids)
                        if len(ids) > k]
            cut = {i: j.label for (i, _), j in zip(cut_rows, judge.judge_many([(rows[i]["prompt"], t)
                                                                                  for i, t in cut_rows]))}
            flips = sum(1 for i, label in cut.items() if label != full[i])
            results.append({"judge": judge.id, "cut": k, "n": len(rows), "n_cut": len(cut), "flips": flips,
                            "flip_share": flips / len(rows), "meets_target": flips / len(rows) <= args.max_flip})
    new_tokens = sum(int(r["n_new_tokens"]) for r in rows)
    saved = {k: 1 - sum(min(int(r["n_new_tokens"]), k) for r in rows) / new_tokens for k in cuts}
    enough = [k for k in cuts if all(x["meets_target"] for x in results if x["cut"] == k)]
    out = {"files": files, "n_responses": len(rows), "generated_cap": cap, "max_flip": args.max_flip,
           "results": results, "new_tokens_saved": saved, "smallest_enough": min(enough) if enough else None,
           "target": f"verdict changes <= {args.max_flip:.0%} for every judge",
           "meets_target": bool(enough), "machine": platform.processor() or platform.machine()}
    lines = [f"Verdicts on {len(rows)} responses ({len(files)} generation files, generated at up to {cap} new "
             f"tokens) against the same responses cut to their first k tokens. A cap is enough when every judge "
             f"changes at most {args.max_flip:.0%} of its verdicts.", "",
             "| judge | k | responses cut | verdicts changed | share |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {x['judge']} | {x['cut']} | {x['n_cut']} | {x['flips']} | {x['flip_share']:.3f} |" for x in results]
    lines += ["", "| k | new tokens saved (upper bound on generation time saved) |", "|---:|---:|"]
    lines += [f"| {k} | {saved[k]:.2f} |" for k in cuts]
    lines += ["", f"Smallest cap that is enough: {out['smallest_enough']}."]
    if args.out is not None:
        write_json(args.out.with_suffix(".json"), out)
        write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
