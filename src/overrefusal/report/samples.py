"""A seeded sample of judged generations per method and benchmark (``results/<name>/samples.md``).

A rate is only as good as the answers behind it: this file puts a few of them, with the judge's label,
next to the tables, so a reader sees what "compliance" or "refusal" meant in this run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import read_json


def _cell(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def sample_rows(eval_jsons: Sequence[str | Path], *, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows of every result JSON, drawn with a seed per (model, method, seed, benchmark); the same
    prompts for every method of a benchmark, so the samples compare like with like."""
    out = []
    for path in eval_jsons:
        res = read_json(path)
        rows = sorted(res["rows"], key=lambda r: r["id"])
        if n > len(rows):
            raise ValueError(f"samples.n = {n} but {path} ({res['benchmark']}) holds {len(rows)} judged responses")
        idx = sorted(random.Random(f"{seed}:{res['benchmark']}").sample(range(len(rows)), n))
        for i in idx:
            r = rows[i]
            out.append({"model": res["model"], "method": res["method"], "seed": res.get("seed"),
                        "benchmark": res["benchmark"], "id": r["id"], "prompt": r["prompt"],
                        "response": r["response"], "label": r["judgement"]["label"], "judge_id": r["judge_id"]})
    return out


def samples_markdown(rows: list[dict[str, Any]], *, limit: int = 160) -> str:
    """One table per benchmark: prompt, then each method's response and label."""
    lines: list[str] = []
    for bench in sorted({r["benchmark"] for r in rows}):
        sub = [r for r in rows if r["benchmark"] == bench]
        judge = sorted({r["judge_id"] for r in sub})
        lines += [f"**{bench}** (judge: {', '.join(judge)})", "",
                  "| prompt | model | method | seed | response | label |", "|---|---|---|---|---|---|"]
        for r in sorted(sub, key=lambda r: (r["id"], r["model"], r["method"], r["seed"] or 0)):
            lines.append(f"| {_cell(r['prompt'], 80)} | {r['model']} | {r['method']} | {r['seed']} | "
                         f"{_cell(r['response'], limit)} | {r['label']} |")
        lines.append("")
    return "\n".join(lines)
