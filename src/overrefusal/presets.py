"""Presets as Snakemake reads them: which ``--configfile`` files make one, and how they merge.

Kept apart from ``overrefusal.config`` (which validates with jsonschema) so that code running where only
torch, transformers and yaml are installed, such as the GPU check, reads presets the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def preset_files(name: str) -> list[str]:
    """The ``--configfile`` list (relative to the workflow) that makes preset ``name``: a DCR model overlay
    (``dcr_<model>``) goes over the shared recipe ``dcr.yaml``; any other preset is one file."""
    files = [f"config/presets/{name}.yaml"]
    return ["config/presets/dcr.yaml", *files] if name.startswith("dcr_") else files


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Snakemake's ``--configfile`` merge: nested mappings update, everything else replaces."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_config(base[k], v)
        else:
            base[k] = v
    return base


def load_preset(name: str, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``config.yaml`` with the preset's files merged over it, the preset's files alone), read under ``root``."""
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    own: dict[str, Any] = {}
    for f in preset_files(name):
        layer = yaml.safe_load((root / f).read_text())
        merge_config(cfg, layer)
        merge_config(own, layer)
    return cfg, own
