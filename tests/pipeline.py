"""Helpers for tests that run the real Snakemake workflow in a scratch copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from overrefusal.config import merge_config, preset_files  # noqa: F401 - re-exported for the tests

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# Never copied: outputs, caches and environments of the developer's own runs.
IGNORE = shutil.ignore_patterns(".venv", ".git", "results", "logs", "benchmarks", ".snakemake", "__pycache__",
                                "*.egg-info", ".pytest_cache", ".slurm-local")


def copy_workflow(dest: Path, source: Path = REPO) -> Path:
    """A clean copy of the workflow (code, config, schemas), as a fresh clone would have it.

    ``source`` is the repository by default, or an earlier clean copy: runs copied from one copy see the
    same code even while the working tree changes."""
    shutil.copytree(source, dest, ignore=IGNORE, symlinks=True)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 1800, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def jobs_in_dry_run(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of ``snakemake -n`` as {rule: count} (empty when nothing to do)."""
    counts: dict[str, int] = {}
    lines = stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return counts
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def preset_config(*names: str) -> dict:
    """config.yaml with ``config/presets/<name>.yaml`` merged over it, in order, as --configfile does."""
    import yaml

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for name in names:
        merge_config(cfg, yaml.safe_load((REPO / "config" / "presets" / f"{name}.yaml").read_text()))
    return cfg
