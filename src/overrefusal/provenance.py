"""Provenance recorded in every result: code version, config hash, package versions, judge ids.

Nothing time-dependent and no absolute path goes in, so reruns of the same config stay
byte-identical (also from another checkout directory), and nothing secret: the config names the
environment variable that holds an API key, never the key.

The code version is the git commit of the *workflow directory* (``None`` outside a git checkout,
e.g. an unpacked archive) plus ``code_sha256``, a hash over the workflow's source files that
identifies the code even without git or with a dirty tree. Model and data identity come from the
files the pipeline already writes: the generation ``meta.json`` (weights sha256) and the data
``manifest.json`` (sha256 of every split).
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
# What ``code_sha256`` covers, relative to the workflow directory.
CODE_GLOBS = ("Snakefile", "rules/*.smk", "scripts/*.py", "src/overrefusal/**/*.py", "envs/*.yaml", "src/overrefusal/schemas/*",
              "pyproject.toml", "requirements.txt")


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def code_sha256(workflow_dir: str | Path = REPO) -> str | None:
    """sha256 over ``CODE_GLOBS`` files (relative path + content), independent of where the checkout lives."""
    root = Path(workflow_dir)
    files = sorted({p for g in CODE_GLOBS for p in root.glob(g) if p.is_file() and "__pycache__" not in p.parts})
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_provenance(generation_meta: str | Path, benchmark: str | None = None) -> dict[str, Any] | None:
    """Weights identity from a generation ``meta.json`` (``{benchmark: generate() metadata}``).

    ``revision`` is the combined weights sha256; ``generation_fingerprint`` also covers tokenizer,
    template and decoding settings. ``None`` if the file is missing or unreadable.
    """
    meta = _read_json(generation_meta)
    if not isinstance(meta, dict) or not meta:
        return None
    entry = meta.get(benchmark) if benchmark is not None else None
    if not isinstance(entry, dict):
        entry = next((v for _, v in sorted(meta.items()) if isinstance(v, dict)), None)
    if entry is None:
        return None
    return {
        "revision": entry.get("revision"),
        "weights_sha256": entry.get("weights_sha256"),
        "generation_fingerprint": entry.get("fingerprint"),
        "backend": entry.get("backend"),
    }


def data_provenance(manifest: str | Path) -> dict[str, Any] | None:
    """sha256 of the data ``manifest.json`` itself and of every split it lists."""
    m = _read_json(manifest)
    if not isinstance(m, dict):
        return None
    files = m.get("files") if isinstance(m.get("files"), dict) else {}
    return {
        "source": m.get("source"),
        "manifest_sha256": hashlib.sha256(Path(manifest).read_bytes()).hexdigest(),
        "files_sha256": {k: v.get("sha256") for k, v in sorted(files.items()) if isinstance(v, dict)},
    }


def provenance(config: dict[str, Any], *, workflow_dir: str | Path | None = None, **extra: Any) -> dict[str, Any]:
    """The provenance block of a result; ``extra`` (judge ids, model, data, ...) is merged in."""
    root = Path(workflow_dir) if workflow_dir is not None else REPO
    return {
        "git": git_commit(root),
        "code_sha256": code_sha256(root),
        "config_sha256": config_sha256(dict(config)),
        "packages": package_versions(),
        "python": platform.python_version(),
        **extra,
    }


def weight_file_sha256(model_dir: str | Path) -> dict[str, str]:
    """sha256 of every ``*.safetensors`` file in ``model_dir`` (``{file name: hex}``; {} for no dir).

    A generation's model revision: checkpoints made by this pipeline have no git revision, and a
    path says nothing about what is inside it.
    """
    from .io import sha256_file

    d = Path(model_dir)
    if not d.is_dir():
        return {}
    return {p.name: sha256_file(p) for p in sorted(d.glob("*.safetensors"))}


def weights_sha256(model_dir: str | Path) -> str:
    """One hash over every weight file (name and bytes): a checkpoint's identity in provenance."""
    h = hashlib.sha256()
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def model_dir_provenance(model_dir: str | Path) -> dict[str, Any]:
    """Identity of a checkpoint directory: its weights sha256, plus the hub fetch record (or the GGUF
    conversion record) when it is a fetched snapshot (``resources/models/<name>`` beside
    ``<name>.fetch.json``) or a converted GGUF file (beside ``<name>.convert.json``)."""
    out: dict[str, Any] = {"weights_sha256": weights_sha256(model_dir)}
    record = _read_json(Path(str(model_dir).rstrip("/") + ".fetch.json"))
    if isinstance(record, dict):
        out["hub"] = {k: record.get(k) for k in ("repo_id", "revision", "commit", "pinned")}
    record = _read_json(Path(str(model_dir).rstrip("/") + ".convert.json"))
    if isinstance(record, dict):
        out["gguf"] = {k: record.get(k) for k in ("package", "version", "file", "path", "gguf_sha256")}
    return out


def rule_provenance(smk: Any, **extra: Any) -> dict[str, Any]:
    """:func:`provenance` for a Snakemake job: the workflow directory's code, the run's config, its
    data manifest (``input.manifest``, declared so a new manifest reruns the job) and ``extra``."""
    manifest = getattr(smk.input, "manifest", None)
    return provenance(smk.config, workflow_dir=Path(smk.scriptdir).parent,
                      data=data_provenance(manifest) if manifest else None, **extra)
