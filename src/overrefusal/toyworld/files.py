"""Write the toy world to disk: one JSONL per split plus a manifest (counts, hashes, config)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..io import sha256_file, write_json, write_jsonl
from ..records import validate_record
from .world import build_world

# Splits whose rows are prompt records (validated against the shared record schema).
NON_RECORD = ("pretrain", "capability/")


def write_world(cfg: dict[str, Any], manifest_path: str) -> dict[str, Any]:
    """Build the world and write ``<data dir>/<split>.jsonl`` next to ``manifest_path``."""
    data_dir = Path(manifest_path).parent
    world = build_world(cfg)
    files: dict[str, Any] = {}
    for split, rows in sorted(world.items()):
        if not split.startswith(NON_RECORD):
            for i, row in enumerate(rows, start=1):
                validate_record(row, f"toy world split {split}: row {i}")
        path = data_dir / f"{split}.jsonl"
        write_jsonl(path, rows)
        entry: dict[str, Any] = {"n": len(rows), "sha256": sha256_file(path)}
        if rows and "label" in rows[0]:
            entry["by_label"] = dict(sorted(Counter(r["label"] for r in rows).items()))
            entry["by_category"] = dict(sorted(Counter(r["category"] for r in rows).items()))
        files[split] = entry
    manifest = {"source": "toy", "config": cfg, "files": files}
    write_json(manifest_path, manifest)
    return manifest
