"""Hub models: fetching a pinned snapshot over real HTTP (a local fake hub), checking it against the
config, and the config rules for hub entries (depth, local_dir, switched-off entries)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import ConfigError, enabled_methods, enabled_models, model_depth, validate_config
from overrefusal.models.hub import HubModelError, check_model_dir, config_num_layers, fetch_hub_model
from tests.pipeline import REPO
from tests.support.fake_hf_hub import add_repo, serve_hub, use_hub
from tests.support.tiny_models import checkpoint_files, save_tiny_checkpoint

REPO_ID = "test-org/tiny-qwen2"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "qwen2", "qwen2", num_layers=2)


@pytest.fixture
def hub(tmp_path: Path, tiny_qwen: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    files = checkpoint_files(tiny_qwen)
    # What real repos also carry and a fetch must skip: Meta's consolidated weights and .bin copies.
    files["original/consolidated.00.pth"] = b"x" * 1000
    files["pytorch_model.bin"] = b"y" * 1000
    root = tmp_path / "hub"
    commit = add_repo(root, "model", REPO_ID, "main", files)
    with serve_hub(root) as url:
        use_hub(monkeypatch, url, tmp_path / "hf_home")
        yield url, commit


def spec(**over: Any) -> dict[str, Any]:
    return {"source": "hub", "repo_id": REPO_ID, "revision": "main", "num_layers": 2, "template": "chat", **over}


def test_fetch_downloads_the_snapshot_and_records_its_commit(hub: Any, tmp_path: Path, tiny_qwen: Path) -> None:
    url, commit = hub
    out = tmp_path / "models" / "tiny-qwen"
    record = fetch_hub_model(spec(), out, key="models.tiny-qwen")
    assert record["commit"] == commit and record["pinned"] is False
    assert set(record["files"]) == set(checkpoint_files(tiny_qwen))  # no original/, no .bin
    for name, digest in record["files"].items():
        import hashlib

        assert hashlib.sha256((tiny_qwen / name).read_bytes()).hexdigest() == digest
    assert not (out / "original").exists() and not (out / ".cache").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left
    check_model_dir(out, num_layers=2, key="models.tiny-qwen")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "qwen2"
    assert "<|im_start|>assistant" in AutoTokenizer.from_pretrained(out).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    # pinned by commit: the record says so
    assert fetch_hub_model(spec(revision=commit), tmp_path / "again")["pinned"] is True
    assert url.requests and not any("/original/" in r.path or r.path.endswith(".bin") for r in url.requests)


def test_fetch_refuses_a_snapshot_whose_depth_differs(hub: Any, tmp_path: Path) -> None:
    out = tmp_path / "m"
    with pytest.raises(HubModelError, match=r"models.m: num_layers is 28, but .*config.json has "
                                            r"num_hidden_layers=2; set models.m.num_layers: 2"):
        fetch_hub_model(spec(num_layers=28), out, key="models.m")
    assert not out.exists() and not list(tmp_path.glob(".m.tmp-*"))


@pytest.mark.parametrize(("over", "message"), [
    ({"revision": "no-such-branch"}, r"models.m.revision: 'no-such-branch' is not a revision of test-org/tiny-qwen2"),
    ({"repo_id": "test-org/absent"}, r"models.m.repo_id: 'test-org/absent' was not found on the hub"),
])
def test_fetch_errors_say_which_field_and_how_to_supply_it(hub: Any, tmp_path: Path, over: dict[str, str],
                                                           message: str) -> None:
    with pytest.raises(HubModelError, match=message) as info:
        fetch_hub_model(spec(**over), tmp_path / "m", key="models.m")
    assert "set models.m.local_dir" in str(info.value)
    assert not (tmp_path / "m").exists()


def test_config_num_layers_names_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(HubModelError, match=r"config.json: missing"):
        config_num_layers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(HubModelError, match=r"config.json: field num_hidden_layers is missing"):
        config_num_layers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 32}}))
    assert config_num_layers(tmp_path) == 32


# ---------------------------------------------------------------- config rules for hub entries

def base_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def with_hub(**over: Any) -> dict[str, Any]:
    cfg = base_config()
    cfg["models"]["toy-llama"]["enabled"] = False
    cfg["models"]["qwen"] = spec(num_layers=28, **over)
    cfg["methods"]["tbr_external"]["enabled"] = False  # its local toy teacher needs toy-llama
    return cfg


def test_hub_entry_depth_is_checked_before_any_job() -> None:
    cfg = with_hub()
    assert enabled_models(cfg) == ["qwen"] and model_depth(cfg, "qwen") == 28
    validate_config(cfg, "cfg", env={})
    cfg["dcr"]["layer"] = 28
    with pytest.raises(ConfigError, match=r"dcr.layer: 28 is outside the depth of model 'qwen', which has 28 "
                                          r"decoder layers \(allowed 0..27\)"):
        validate_config(cfg, "cfg", env={})


@pytest.mark.parametrize("missing", ["repo_id", "revision", "num_layers"])
def test_hub_entry_needs_repo_revision_and_depth(missing: str) -> None:
    cfg = with_hub()
    del cfg["models"]["qwen"][missing]
    with pytest.raises(ConfigError, match=rf"models.qwen.*{missing}"):
        validate_config(cfg, "cfg", env={})


def test_hub_entry_rejects_toy_architecture_keys() -> None:
    cfg = with_hub(arch=copy.deepcopy(base_config()["models"]["toy-llama"]["arch"]))
    with pytest.raises(ConfigError, match=r"models.qwen"):
        validate_config(cfg, "cfg", env={})


def test_local_dir_must_exist_and_agree_with_num_layers(tmp_path: Path, tiny_qwen: Path) -> None:
    cfg = with_hub(local_dir=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"models.qwen.local_dir: .*absent is not a directory"):
        validate_config(cfg, "cfg", env={})
    cfg = with_hub(local_dir=str(tiny_qwen))
    with pytest.raises(ConfigError, match=r"models.qwen.num_layers: 28 disagrees with .*config.json "
                                          r"num_hidden_layers=2"):
        validate_config(cfg, "cfg", env={})
    cfg["models"]["qwen"]["num_layers"] = 2
    cfg["dcr"]["layer"] = 1
    validate_config(cfg, "cfg", env={})


def test_switched_off_entries_need_nothing_and_are_left_out() -> None:
    cfg = with_hub()
    cfg["models"]["never-defined"] = {"enabled": False}  # what an overlay writes for another preset's model
    cfg["methods"]["dcr_stl"]["enabled"] = False
    cfg["methods"]["dcr_deep"] = {"kind": "dcr", "layer": 99, "enabled": False}  # off: its layer is not checked
    validate_config(cfg, "cfg", env={})
    assert "never-defined" not in enabled_models(cfg)
    assert "dcr_stl" not in enabled_methods(cfg) and "dcr_deep" not in enabled_methods(cfg)
    cfg["models"]["qwen"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"models: every model has enabled: false"):
        validate_config(cfg, "cfg", env={})


def test_local_toy_teacher_needs_its_model_enabled() -> None:
    cfg = with_hub()
    cfg["methods"]["tbr_external"]["enabled"] = True  # config.yaml: the local toy teacher, from toy-llama
    with pytest.raises(ConfigError, match=r"teacher.from_model: the local toy teacher .* 'toy-llama', which has "
                                          r"enabled: false"):
        cfg["models"]["toy-llama"]["enabled"] = False
        cfg["tbr"]["external"]["base_url"] = "local"
        validate_config(cfg, "cfg", env={})
