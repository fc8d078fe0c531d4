"""Hub models (Qwen2.5, LLaMA-3, ...): fetch a pinned snapshot once, then run everything offline.

A model entry with ``source: hub`` names ``repo_id`` and ``revision`` (a commit, so a rerun gets the
same bytes) and its depth ``num_layers`` (so a DCR layer is checked before any job starts). Rule
``fetch_model`` downloads the snapshot with ``huggingface_hub.snapshot_download`` on a machine with
internet (a login node: it is a local rule); ``local_dir`` points at a snapshot that is already on
disk instead (a cluster's shared model store), and no download happens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_dir, sha256_file

# What a transformers checkpoint needs. LLaMA-3 repos also carry `original/` (the consolidated
# Meta weights, another 16 GB for 8B) and some repos carry .bin copies next to safetensors.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken",
)
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = ("original/*",)


class HubModelError(RuntimeError):
    """A hub model cannot be fetched or does not match its config entry; the message says how to fix it."""


def config_num_layers(model_dir: str | Path) -> int:
    """``num_hidden_layers`` from a checkpoint's config.json, with the file named on any problem."""
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubModelError(f"{path}: missing; {model_dir} is not a transformers checkpoint") from None
    except json.JSONDecodeError as exc:
        raise HubModelError(f"{path}: not valid JSON ({exc})") from None
    cfg = cfg.get("text_config", cfg)
    if not isinstance(cfg.get("num_hidden_layers"), int):
        raise HubModelError(f"{path}: field num_hidden_layers is missing or not an integer")
    return int(cfg["num_hidden_layers"])


def check_model_dir(model_dir: str | Path, *, num_layers: int, key: str) -> None:
    """The checkpoint exists, has weights and a tokenizer, and has the depth the config says."""
    d = Path(model_dir)
    if not d.is_dir():
        raise HubModelError(f"{key}: {d} is not a directory")
    depth = config_num_layers(d)
    if depth != num_layers:
        raise HubModelError(f"{key}: num_layers is {num_layers}, but {d / 'config.json'} has num_hidden_layers="
                            f"{depth}; set {key}.num_layers: {depth}")
    if not (list(d.glob("*.safetensors")) or list(d.glob("*.bin"))):
        raise HubModelError(f"{key}: {d} holds no *.safetensors or *.bin weights")
    if not (list(d.glob("tokenizer*")) or (d / "vocab.json").is_file()):
        raise HubModelError(f"{key}: {d} holds no tokenizer files (tokenizer.json / tokenizer_config.json)")


def fetch_hub_model(spec: dict[str, Any], out_dir: str | Path, *, key: str = "models.<name>") -> dict[str, Any]:
    """Download ``spec['repo_id']`` at ``spec['revision']`` into ``out_dir`` atomically.

    Returns the record written beside it: repo, requested revision, the commit it resolved to
    (``pinned`` is false when the config named a branch), patterns and a sha256 per file. A failed or killed download leaves nothing at ``out_dir``.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    repo, rev = spec["repo_id"], spec["revision"]
    allow = list(spec.get("allow_patterns") or DEFAULT_ALLOW_PATTERNS)
    how = (f"or download it yourself on a machine with internet (`hf download {repo} --revision {rev} "
           f"--local-dir <dir>`) and set {key}.local_dir: <dir>")
    with atomic_dir(out_dir) as tmp:
        try:
            # The commit `rev` names now: with a branch such as main, this is what a later run must pin.
            commit = HfApi().model_info(repo, revision=rev).sha
            snapshot_download(repo_id=repo, revision=commit or rev, local_dir=str(tmp), allow_patterns=allow,
                              ignore_patterns=list(DEFAULT_IGNORE_PATTERNS))
        except GatedRepoError as exc:
            raise HubModelError(f"{key}: {repo} is gated: accept its licence on the hub and export HF_TOKEN "
                                f"with a token that has access ({exc.__class__.__name__}); {how}") from None
        except RevisionNotFoundError:
            raise HubModelError(f"{key}.revision: {rev!r} is not a revision of {repo}; {how}") from None
        except RepositoryNotFoundError:
            raise HubModelError(f"{key}.repo_id: {repo!r} was not found on the hub (a private or gated repo "
                                f"also needs HF_TOKEN); {how}") from None
        except (HfHubHTTPError, OSError) as exc:
            raise HubModelError(f"{key}: downloading {repo}@{rev} failed: {exc}; {how}") from None
        # snapshot_download keeps its own metadata under .cache/; it is not part of the checkpoint.
        cache = tmp / ".cache"
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        check_model_dir(tmp, num_layers=int(spec["num_layers"]), key=key)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    return {"repo_id": repo, "revision": rev, "commit": commit, "pinned": rev == commit, "allow_patterns": allow,
            "files": files}
