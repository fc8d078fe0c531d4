"""Provenance: code version, a stable config hash, package versions, and never a secret."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from overrefusal.provenance import (
    PACKAGES,
    code_sha256,
    config_sha256,
    data_provenance,
    git_commit,
    model_provenance,
    package_versions,
    provenance,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
SECRET = "sk-test-SECRET123"


def reorder(obj):
    """The same mapping with every dict's keys in reverse insertion order."""
    if isinstance(obj, dict):
        return {k: reorder(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [reorder(x) for x in obj]
    return obj


def test_has_git_config_hash_and_packages():
    p = provenance(DEFAULT)
    assert set(p) >= {"git", "config_sha256", "packages", "python"}
    assert set(p["git"]) == {"commit", "dirty"}
    assert re.fullmatch(r"[0-9a-f]{64}", p["config_sha256"])
    assert set(p["packages"]) == set(PACKAGES)
    assert p["packages"]["transformers"]  # installed in this environment
    assert json.loads(json.dumps(p)) == p


def test_extra_fields_are_included():
    p = provenance(DEFAULT, judge="xstest_strmatch_v1")
    assert p["judge"] == "xstest_strmatch_v1"


def test_provenance_is_deterministic():
    assert json.dumps(provenance(DEFAULT), sort_keys=True) == json.dumps(provenance(DEFAULT), sort_keys=True)


def test_config_hash_stable_under_key_order():
    shuffled = reorder(DEFAULT)
    assert list(shuffled) != list(DEFAULT)
    assert list(shuffled["tbr"]) != list(DEFAULT["tbr"])
    assert config_sha256(shuffled) == config_sha256(DEFAULT)
    assert provenance(shuffled)["config_sha256"] == provenance(DEFAULT)["config_sha256"]


def test_config_hash_changes_with_any_value():
    changed = copy.deepcopy(DEFAULT)
    changed["tbr"]["external"]["concurrency"] = 5
    assert config_sha256(changed) != config_sha256(DEFAULT)
    listed = copy.deepcopy(DEFAULT)
    listed["eval"]["benchmarks"] = list(reversed(listed["eval"]["benchmarks"]))
    assert config_sha256(listed) != config_sha256(DEFAULT)  # list order is meaningful


def test_provenance_does_not_mutate_config():
    cfg = copy.deepcopy(DEFAULT)
    provenance(cfg)
    assert cfg == DEFAULT


def test_api_key_never_recorded(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET + "HF")
    cfg = copy.deepcopy(DEFAULT)
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    text = json.dumps(provenance(cfg, stage="reflect"))
    assert "SECRET123" not in text


def test_git_commit_outside_a_repository(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_git_commit_and_dirty_flag(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "x")
    info = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", info["commit"]) and info["dirty"] is False
    (tmp_path / "untracked.txt").write_text("u")
    assert git_commit(tmp_path)["dirty"] is False  # untracked files do not count
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == {"commit": info["commit"], "dirty": True}


def test_package_versions_missing_is_none(monkeypatch):
    monkeypatch.setattr("overrefusal.provenance.PACKAGES", ("transformers", "surely_not_installed_pkg"))
    v = package_versions()
    assert v["surely_not_installed_pkg"] is None and v["transformers"]


def _workflow(root: Path, text: str = "rule all:\n    input: []\n") -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "Snakefile").write_text(text)
    (root / "rules" / "a.smk").write_text("rule a:\n    output: 'x'\n")
    return root


def test_code_hash_follows_content_not_location(tmp_path):
    a, b = _workflow(tmp_path / "a"), _workflow(tmp_path / "elsewhere" / "b")
    assert re.fullmatch(r"[0-9a-f]{64}", code_sha256(a))
    assert code_sha256(a) == code_sha256(b)
    (b / "results").mkdir()
    (b / "results" / "out.json").write_text("{}")  # outputs are not code
    assert code_sha256(a) == code_sha256(b)
    (b / "rules" / "a.smk").write_text("rule a:\n    output: 'y'\n")
    assert code_sha256(a) != code_sha256(b)
    assert code_sha256(tmp_path / "empty") is None


def test_provenance_of_a_workflow_dir_without_git(tmp_path):
    wf = _workflow(tmp_path / "wf")
    p = provenance(DEFAULT, workflow_dir=wf)
    assert p["git"] == {"commit": None, "dirty": None}
    assert p["code_sha256"] == code_sha256(wf)
    assert str(tmp_path) not in json.dumps(p)


def test_model_and_data_provenance(tmp_path):
    meta = tmp_path / "meta.json"
    entry = {"revision": "r" * 64, "weights_sha256": {"model.safetensors": "r" * 64}, "fingerprint": "f" * 64,
             "backend": "hf", "seconds": 1.5}
    meta.write_text(json.dumps({"xstest_safe": entry, "advbench": {**entry, "fingerprint": "g" * 64}}))
    m = model_provenance(meta, "xstest_safe")
    assert m == {"revision": "r" * 64, "weights_sha256": {"model.safetensors": "r" * 64},
                 "generation_fingerprint": "f" * 64, "backend": "hf"}  # no timings
    assert model_provenance(meta, "unknown")["generation_fingerprint"] == "g" * 64  # first benchmark, sorted
    assert model_provenance(tmp_path / "missing.json") is None

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"source": "toy", "config": {}, "files": {"b": {"n": 1, "sha256": "2" * 64},
                                                                             "a": {"n": 2, "sha256": "1" * 64}}}))
    d = data_provenance(manifest)
    assert d["source"] == "toy" and d["files_sha256"] == {"a": "1" * 64, "b": "2" * 64}
    assert d["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert data_provenance(tmp_path / "missing.json") is None
