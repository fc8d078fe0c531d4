"""Cross-field checks of a real-data config (``data.source: real``), run before any job starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import source_of
from .registry import SOURCES


def real_data_errors(config: dict[str, Any], source: str) -> list[str]:
    data = config["data"]
    real = data.get("real")
    if real is None:
        return [f"{source}: data.real: data.source is 'real' but there is no data.real section "
                "(see config/presets/tbr.yaml)"]
    errs: list[str] = []
    raw = data.get("raw_dir")
    if raw is None and not real["download"]:
        errs.append(f"{source}: data.raw_dir: real data needs a local mirror (data.raw_dir, laid out like "
                    "../shared/data) or data.real.download: true")
    elif raw is not None and not Path(raw).is_dir():
        errs.append(f"{source}: data.raw_dir: {raw!r} is not a directory")
    for split, spec in real["splits"].items():
        for name in [spec["source"], *real.get("substitutes", {}).get(spec["source"], [])]:
            try:
                src, _ = source_of(name)
            except KeyError as exc:
                errs.append(f"{source}: data.real.splits.{split}.source: {exc.args[0]}")
                continue
            if SOURCES[src].role == "capability":
                errs.append(f"{source}: data.real.splits.{split}.source: {name!r} is a capability task, not prompts")
    for name in real.get("pins", {}):
        if name not in SOURCES:
            errs.append(f"{source}: data.real.pins.{name}: unknown source; valid: {', '.join(SOURCES)}")
    if "contrastive_seemingly" in real["splits"] and "contrastive_toxic" not in real["splits"] \
            or "contrastive_toxic" in real["splits"] and "contrastive_seemingly" not in real["splits"]:
        errs.append(f"{source}: data.real.splits: contrastive_seemingly and contrastive_toxic come together")
    from ..config import enabled_capability_tasks
    from ..toyworld import CAPABILITY_TASKS

    written = set(real.get("capability", {}))
    for task, spec in enabled_capability_tasks(config).items():
        if task in CAPABILITY_TASKS or spec["kind"] == "lm_eval":
            continue  # toy tasks are written for real data too; registry tasks are staged from the hub
        if task not in written:
            errs.append(f"{source}: capability.tasks.{task}: real data writes the capability task(s) named in "
                        f"data.real.capability ({', '.join(sorted(written)) or 'none'}) and the toy tasks "
                        f"({', '.join(CAPABILITY_TASKS)})")
        elif spec["kind"] != "mc":
            errs.append(f"{source}: capability.tasks.{task}.kind: {task} is multiple choice (mc)")
    return errs
