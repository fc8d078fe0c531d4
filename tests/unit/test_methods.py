"""Method instances resolve to plain-dict params: kind section merged with the instance's overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import validate_config
from overrefusal.methods import KINDS, method_params

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
PLAIN = (dict, list, str, int, float, bool, type(None))


@pytest.fixture
def cfg() -> dict[str, Any]:
    c = copy.deepcopy(DEFAULT)
    c["methods"]["tbr_g05"] = {"kind": "tbr", "reflection": "external", "gamma": 0.5, "sft": {"lr": 3e-4}}
    c["methods"]["dcr_l2"] = {"kind": "dcr", "layer": 2, "pooling": "mean", "steps": 7}
    validate_config(c, env={})
    return c


def assert_plain(obj: Any, where: str = "params") -> None:
    assert type(obj) in PLAIN, f"{where}: {type(obj).__name__} is not a builtin"
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str, f"{where}: key {k!r}"
            assert_plain(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain(v, f"{where}[{i}]")


def trained(cfg: dict[str, Any]) -> list[str]:
    return [m for m, s in cfg["methods"].items() if s["kind"] != "base"]


def test_every_trained_method_resolves_to_plain_builtins(cfg):
    for m in trained(cfg):
        p = method_params(cfg, m)
        assert_plain(p, m)
        assert json.loads(json.dumps(p)) == p


def test_plain_check_can_fail():
    class Custom(dict):
        pass

    with pytest.raises(AssertionError):
        assert_plain({"a": [Custom()]})


def test_kind_and_sft_data(cfg):
    for m in trained(cfg):
        p = method_params(cfg, m)
        kind = cfg["methods"][m]["kind"]
        assert p["kind"] == kind
        assert p["sft_data"] == list(KINDS[kind].sft_data)
    assert method_params(cfg, "stl_aug")["sft_data"] == ["sft_general", "sft_safety", "sft_aug"]
    assert method_params(cfg, "no_safety")["sft_data"] == ["sft_general"]


def test_sections_only_where_they_apply(cfg):
    assert "tbr" not in method_params(cfg, "stl") and "dcr" not in method_params(cfg, "stl")
    assert "tbr" in method_params(cfg, "tbr_internal") and "dcr" not in method_params(cfg, "tbr_internal")
    assert "dcr" in method_params(cfg, "dcr_stl") and "tbr" not in method_params(cfg, "dcr_stl")


def test_tbr_overrides_merge_over_section(cfg):
    p = method_params(cfg, "tbr_g05")
    assert p["tbr"]["gamma"] == 0.5 and p["tbr"]["reflection"] == "external"
    assert p["tbr"]["open_tag"] == cfg["tbr"]["open_tag"]
    assert p["tbr"]["internal"] == cfg["tbr"]["internal"]
    assert p["sft"] == {**cfg["sft"], "lr": 3e-4}
    # the defaults are untouched for the sibling instance
    q = method_params(cfg, "tbr_internal")
    assert q["tbr"]["gamma"] == cfg["tbr"]["gamma"] == 1.0 and q["tbr"]["reflection"] == "internal"
    assert q["sft"] == cfg["sft"]
    # no instance-only keys leak into a section
    assert "kind" not in p["tbr"] and "sft" not in p["tbr"]


def test_dcr_overrides_merge_over_section(cfg):
    p = method_params(cfg, "dcr_l2")
    assert p["dcr"] == {**cfg["dcr"], "layer": 2, "pooling": "mean", "steps": 7}
    assert method_params(cfg, "dcr_stl")["dcr"] == cfg["dcr"]


def test_does_not_mutate_config(cfg):
    before = copy.deepcopy(cfg)
    for m in trained(cfg):
        method_params(cfg, m)
    assert cfg == before


def test_params_are_independent_of_config(cfg):
    """Changing resolved params (e.g. a stage editing its copy) must not change the config."""
    before = copy.deepcopy(cfg)
    p = method_params(cfg, "tbr_g05")
    p["tbr"]["internal"]["batch_size"] = 1
    p["sft"]["lora"]["r"] = 99
    p["sft_data"].append("x")
    assert cfg == before


def test_changed_override_changes_params(cfg):
    a = method_params(cfg, "dcr_l2")
    cfg["methods"]["dcr_l2"]["layer"] = 3
    assert method_params(cfg, "dcr_l2") != a


def test_unknown_method_lists_configured(cfg):
    with pytest.raises(KeyError) as info:
        method_params(cfg, "tbr_gpt5")
    msg = str(info.value)
    assert "tbr_gpt5" in msg
    for m in cfg["methods"]:
        assert m in msg


def test_base_method_resolves(cfg):
    """``base`` is a configured method instance of a valid kind; resolving it must not crash."""
    p = method_params(cfg, "base")
    assert p["kind"] == "base"
    assert_plain(p)


def test_rules_and_scripts_ask_the_kind_never_its_name() -> None:
    """A new kind is an entry in KINDS plus the schema's enum (README "Add a method"): no rule or script
    may branch on a kind's name."""
    import re
    from pathlib import Path

    from overrefusal.methods import KINDS

    repo = Path(__file__).resolve().parents[2]
    names = "|".join(KINDS)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=|in\b)""")
    for path in [*repo.glob("rules/*.smk"), *repo.glob("scripts/*.py"), repo / "src/overrefusal/config.py"]:
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            assert not pattern.search(line), f"{path.name}:{lineno} compares a method kind by name: {line.strip()}"
