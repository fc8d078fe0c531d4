"""Inference-time interventions on an unchanged checkpoint: SCANS steering and Surgical ablation.

An intervention is fitted once per checkpoint (rule ``intervention``) into a safetensors file whose
metadata names its kind and settings; generation and lm-eval then run the checkpoint with
:func:`attached` hooks, so every later stage treats it like any other method.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..io import sha256_file
from ..records import read_records, user_text
from .activations import directional_ablation
from .scans import ScansConfig, ScansSteering, ScansVectors, fit_scans
from .surgical import SelectionError, SurgicalConfig, fit_surgical

__all__ = ["INTERVENTIONS", "SelectionError", "attached", "fingerprint", "fit", "load", "pools_from_files", "save"]
INTERVENTIONS: tuple[str, ...] = ("scans", "surgical")
META_KEY = "overrefusal_intervention"


def pools_from_files(contrastive: str, general: str) -> dict[str, list[str]]:
    """Harmful and pseudo-harmful prompts from the contrastive split (its toxic and seemingly toxic
    rows, the sets DCR contrasts), harmless ones from the general SFT split."""
    rows = read_records(contrastive)
    return {
        "harmful": [user_text(r) for r in rows if r["label"] == "toxic"],
        "pseudo_harmful": [user_text(r) for r in rows if r["label"] == "seemingly_toxic"],
        "harmless": [user_text(r) for r in read_records(general)],
    }


def fit(kind: str, model: Any, tokenizer: Any, pools: dict[str, Sequence[str]], params: dict[str, Any], *,
        template: Any, refusal_ids: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tensors, settings, report) of a ``kind`` intervention fitted on ``model``."""
    if kind == "scans":
        vectors, report = fit_scans(model, tokenizer, pools["harmful"], pools["harmless"],
                                    ScansConfig.from_params(params), template=template,
                                    probes={"pseudo_harmful": pools["pseudo_harmful"]})
        return vectors.tensors(), vectors.settings, report
    if kind == "surgical":
        cfg = SurgicalConfig.from_params(params)
        tensors, report = fit_surgical(model, tokenizer, pools, refusal_ids, cfg, template=template)
        return tensors, {"ablation_coeff": cfg.ablation_coeff, "selected": report["selected"]}, report
    raise ValueError(f"unknown intervention {kind!r}; known: {', '.join(INTERVENTIONS)}")


def save(path: str | Path, kind: str, tensors: dict[str, Any], settings: dict[str, Any]) -> None:
    """Tensors plus ``{kind, settings}`` metadata, written atomically. The metadata is one key: safetensors
    writes several keys in a random order, and the file's hash is what generation's resume checks."""
    from safetensors.torch import save_file

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={META_KEY: json.dumps({"kind": kind, "settings": settings}, sort_keys=True)})
    tmp.replace(out)


def load(path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(kind, tensors, settings) of a saved intervention."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get(META_KEY)
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    meta = json.loads(raw) if raw else {}
    if meta.get("kind") not in INTERVENTIONS:
        raise ValueError(f"{path}: not an intervention file (metadata kind {meta.get('kind')!r})")
    return meta["kind"], tensors, meta["settings"]


def fingerprint(path: str | Path) -> dict[str, str]:
    """What a resumed generation must match: the intervention file's identity."""
    return {"intervention_sha256": sha256_file(path)}


@contextlib.contextmanager
def attached(model: Any, path: str | Path) -> Iterator[None]:
    """The saved intervention's hooks on ``model`` for the duration of the block, removed after."""
    kind, tensors, settings = load(path)
    if kind == "scans":
        steering = ScansSteering(model, ScansVectors(tensors["steer"], tensors["transition"], settings))
        with steering.attached():
            yield
    else:
        with directional_ablation(model, tensors["direction"], coeff=float(settings["ablation_coeff"])):
            yield
