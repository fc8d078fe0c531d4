"""HF hub downloads over real HTTP against a local fake hub (tests/support/fake_hf_hub.py)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from overrefusal.data import SOURCES, ChecksumError, MissingSourceError, load_records, stage_source
from overrefusal.data.fetch import download_hf, staged_paths
from overrefusal.data.registry import PHTEST_REV
from tests.support.fake_hf_hub import HubURL, add_repo, serve_hub, use_hub

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "raw"
PHTEST = SOURCES["phtest"].files[0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, HubURL]]:
    """(repo root, server URL), huggingface_hub pointed at it with an empty cache in tmp_path."""
    root = tmp_path / "hub"
    root.mkdir()
    with serve_hub(root) as url:
        use_hub(monkeypatch, url, tmp_path / "hf_home")
        yield root, url


def test_download_hf_pinned_revision_atomic_and_checked(tmp_path: Path, hub: tuple[Path, HubURL]) -> None:
    root, url = hub
    pinned, newer = b"ID,Request,Harmfulness\n0,pinned,harmless\n", b"ID,Request,Harmfulness\n0,newer,harmless\n"
    add_repo(root, "dataset", "furonghuang-lab/PHTest", PHTEST_REV, {"PHTest.csv": pinned})
    add_repo(root, "dataset", "furonghuang-lab/PHTest", "main", {"PHTest.csv": newer})  # must not be picked

    dest = tmp_path / "dl" / "phtest" / "PHTest.csv"
    assert download_hf(PHTEST, dest, PHTEST_REV, sha256(pinned)) == sha256(pinned)
    assert dest.read_bytes() == pinned
    assert os.listdir(dest.parent) == ["PHTest.csv"]  # the atomic temp file is gone
    resolve = f"/datasets/furonghuang-lab/PHTest/resolve/{PHTEST_REV}/PHTest.csv"
    assert [(r.method, r.path) for r in url.requests] == [("HEAD", resolve), ("GET", resolve)]
    cached = list((tmp_path / "hf_home" / "hub").rglob("PHTest.csv"))
    assert cached and all(p.read_bytes() == pinned for p in cached)  # the HF cache is the test's, not ~/.cache

    # a wrong pin is refused before anything appears at dest
    bad = tmp_path / "dl2" / "phtest" / "PHTest.csv"
    with pytest.raises(ChecksumError, match=f"does not match the pinned {'0' * 64}"):
        download_hf(PHTEST, bad, PHTEST_REV, "0" * 64)
    assert not bad.exists() and os.listdir(bad.parent) == []

    # a commit revision already in the HF cache costs no request at all
    n = len(url.requests)
    again = tmp_path / "dl3" / "PHTest.csv"
    assert download_hf(PHTEST, again, PHTEST_REV, None) == sha256(pinned) and again.read_bytes() == pinned
    assert len(url.requests) == n


@pytest.mark.parametrize("what", ["revision", "file", "repo"])
def test_download_hf_missing_names_what_and_how(tmp_path: Path, hub: tuple[Path, HubURL], what: str) -> None:
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    root, _ = hub
    add_repo(root, "dataset", "furonghuang-lab/PHTest", PHTEST_REV, {"PHTest.csv": b"ID,Request,Harmfulness\n"})
    f, revision = PHTEST, PHTEST_REV
    if what == "revision":
        revision, cause = "f" * 40, RevisionNotFoundError
    elif what == "file":
        f, cause = dataclasses.replace(PHTEST, hf_file="PHTest_v2.csv"), RemoteEntryNotFoundError
    else:
        f, cause = dataclasses.replace(PHTEST, hf_repo="nobody/PHTest"), RepositoryNotFoundError
    dest = tmp_path / "dl" / "phtest" / "PHTest.csv"
    with pytest.raises(MissingSourceError) as exc:
        download_hf(f, dest, revision, None)
    msg = str(exc.value)
    assert isinstance(exc.value.__cause__, cause)
    assert f"HF dataset {f.hf_repo} revision {revision}: cannot download {f.hf_file}" in msg
    assert f"huggingface-cli download {f.hf_repo} {f.hf_file} --repo-type dataset --revision {revision}" in msg
    assert not dest.exists()


@pytest.mark.parametrize("name", ["phtest", "orbench_hard"])
def test_stage_source_downloads_from_hub_then_reuses_local(tmp_path: Path, hub: tuple[Path, HubURL],
                                                           name: str) -> None:
    root, url = hub
    src = SOURCES[name]
    f = src.files[0]
    data = (FIXTURES / f.path).read_bytes()  # the documented CSV layout (header + rows)
    # PHTest's revision is pinned in the registry; OR-Bench's comes from the config pin
    commit = add_repo(root, "dataset", str(f.hf_repo), f.revision or "main", {str(f.hf_file): data})
    with (FIXTURES / f.path).open(newline="") as fh:
        n_rows = sum(1 for _ in csv.DictReader(fh))
    # a fixture of a few rows, not the documented count: the pin restates it, as a user's would
    pins = {name: {"sha256": sha256(data), "rows": n_rows, **({} if f.revision else {"revision": commit})}}
    dl = tmp_path / "dl"

    st = stage_source(src, raw_dir=None, download_dir=str(dl), download=True, pins=pins)
    (rec,) = st["files"]
    assert rec["downloaded"] and rec["pinned"] and rec["sha256"] == sha256(data) and rec["revision"] == commit
    assert Path(rec["path"]) == dl / f.path and (dl / f.path).read_bytes() == data
    assert any(r.path.endswith(f"/resolve/{commit}/{f.hf_file}") and r.method == "GET" for r in url.requests)
    records, _ = load_records(src, staged_paths(st))
    assert len(records) == n_rows

    n = len(url.requests)
    st2 = stage_source(src, raw_dir=None, download_dir=str(dl), download=True, pins=pins)
    assert not st2["files"][0]["downloaded"] and st2["files"][0]["sha256"] == sha256(data)
    assert len(url.requests) == n  # found locally: no HTTP at all


def test_snapshot_download_model_repo(tmp_path: Path, hub: tuple[Path, HubURL]) -> None:
    import torch
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError
    from safetensors.torch import load_file, save_file

    root, url = hub
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([7, 8], dtype=torch.int64)}
    save_file(weights, tmp_path / "model.safetensors")
    files = {"config.json": json.dumps({"model_type": "llama", "hidden_size": 4}).encode(),
             "model.safetensors": (tmp_path / "model.safetensors").read_bytes(),
             "tokenizer/vocab.txt": b"a\nb\n"}
    commit = add_repo(root, "model", "tiny-org/tiny-llama", "main", files)

    out = Path(snapshot_download("tiny-org/tiny-llama", revision="main", repo_type="model", local_dir=tmp_path / "m"))
    assert out == (tmp_path / "m").resolve()
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    got = load_file(out / "model.safetensors")
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    paths = [r.path for r in url.requests]
    assert "/api/models/tiny-org/tiny-llama/revision/main" in paths
    assert f"/api/models/tiny-org/tiny-llama/tree/{commit}" in paths
    assert f"/tiny-org/tiny-llama/resolve/{commit}/model.safetensors" in paths

    # pinned to the commit and already in local_dir: nothing is asked of the hub
    n = len(url.requests)
    snapshot_download("tiny-org/tiny-llama", revision=commit, repo_type="model", local_dir=tmp_path / "m")
    assert len(url.requests) == n
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("tiny-org/tiny-llama", revision="v9", repo_type="model", local_dir=tmp_path / "m2")


def test_use_hub_is_undone(tmp_path: Path) -> None:
    from huggingface_hub import constants

    before = (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, constants.HF_HUB_CACHE,
              constants.HF_HUB_OFFLINE, os.environ.get("HF_ENDPOINT"), os.environ.get("HF_HOME"))
    with pytest.MonkeyPatch.context() as mp:
        use_hub(mp, "http://127.0.0.1:9", tmp_path)
        assert constants.ENDPOINT == "http://127.0.0.1:9" and constants.HF_HUB_CACHE == str(tmp_path / "hub")
    assert (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, constants.HF_HUB_CACHE,
            constants.HF_HUB_OFFLINE, os.environ.get("HF_ENDPOINT"), os.environ.get("HF_HOME")) == before
