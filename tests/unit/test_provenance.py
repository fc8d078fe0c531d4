"""Provenance: code version, a stable config hash, package versions, and never a secret."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from overrefusal.provenance import PACKAGES, config_sha256, git_commit, package_versions, provenance

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
