"""DCR's contrastive stage alone on a real checkpoint, for several (layer, lr, optimiser) settings.

What it measures per setting, on the run's own contrastive set: the mean cosine between the two classes
(seemingly toxic vs toxic) and within them before and after, how far each prompt's layer-l representation
moved (cosine to itself before, norm ratio), and seconds. The separation it reaches is ``within -
between`` after the stage. This is what chose the real-model DCR settings of config/presets/smol.yaml and
the 7B/8B presets:

    python bench/bench_dcr_stage_settings.py --model resources/models/smollm2-135m \\
        --contrastive results/smol/data/contrastive.jsonl --out results/smol/dcr_stage_settings \\
        15:1e-5 15:5e-5 8:5e-5 8:1e-4 4:5e-5 8:1e-3:adafactor 8:1e-2:adafactor

Each setting is ``layer:lr[:optimiser]``; steps 40, batch 16, Circle loss m 0.25, gamma 64, last-token
pooling, prompts cut at 96 tokens, float32 on the CPU (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def run(model: str, contrastive: str, settings: list[str], *, steps: int, threads: int) -> list[dict]:
    import torch

    from overrefusal.dcr import DCRConfig, train_dcr
    from overrefusal.records import read_records

    torch.set_num_threads(threads)
    rows = read_records(contrastive)
    seemingly = [r["prompt"] for r in rows if r["label"] == "seemingly_toxic"]
    toxic = [r["prompt"] for r in rows if r["label"] == "toxic"]
    out = []
    for spec in settings:
        layer, lr, *rest = spec.split(":")
        optim = rest[0] if rest else "adamw"
        tmp = tempfile.mkdtemp(prefix="dcr-bench-")
        t0 = time.perf_counter()
        try:
            cfg = DCRConfig(layer=int(layer), steps=steps, lr=float(lr), batch_size=16, margin=0.25, scale=64,
                            max_length=96, optim=optim)
            m = train_dcr(model, f"{tmp}/m", seemingly, toxic, cfg, template="chat",
                          compute={"device": "cpu", "dtype": "float32"})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out.append({"layer": int(layer), "lr": float(lr), "optim": optim, "steps": steps,
                    "before": m["similarity_before"], "after": m["similarity_after"], "drift": m["drift"],
                    "trainable_params": m["trainable_params"], "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(out[-1]), flush=True)
    return out


def render(results: list[dict]) -> str:
    lines = [("| layer | optimiser | lr | between (before → after) | within (before → after) | separation after "
              "| drift cosine | norm ratio | seconds |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['layer']} | {r['optim']} | {r['lr']:g} | {b['between']:.3f} → {a['between']:.3f} | "
                     f"{b['within']:.3f} → {a['within']:.3f} | {a['within'] - a['between']:.3f} | "
                     f"{r['drift']['cosine']:.2f} | {r['drift']['norm_ratio']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--model", required=True)
    ap.add_argument("--contrastive", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="writes <out>.json and <out>.md")
    args = ap.parse_args()
    results = run(args.model, args.contrastive, args.settings, steps=args.steps, threads=args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(results))
    print(render(results), end="")


if __name__ == "__main__":
    main()
