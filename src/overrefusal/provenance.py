"""Provenance recorded in every result: code version, config hash, package versions, judge ids.

Nothing time-dependent goes in, so reruns of the same config stay byte-identical, and nothing
secret: the config names the environment variable that holds an API key, never the key.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "tokenizers", "lm_eval", "openai", "snakemake",
            "overrefusal")
REPO = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def config_sha256(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "git": git_commit(),
        "config_sha256": config_sha256(dict(config)),
        "packages": package_versions(),
        "python": platform.python_version(),
        **extra,
    }
