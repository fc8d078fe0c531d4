"""The stage settings (dcr, scans, surgical, sft) have one home: their dataclass. The schema's sections are
generated from it, every bound the dataclass declares is refused by both the dataclass and config validation,
and config.yaml's values equal the dataclass defaults except where a reason is given."""

from __future__ import annotations

import copy
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import ConfigError, load_schema, schema_keys, validate_config
from overrefusal.settings import Settings, properties, setting
from overrefusal.stage_settings import SECTIONS, DCRConfig, LoraSettings, ScansConfig, SFTConfig, SurgicalConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA_KEYS = ("type", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "enum", "minLength",
               "minItems", "maxItems", "items", "oneOf", "properties", "required", "additionalProperties")

# config.yaml's value where it is not the dataclass default (library callers: tests, bench/), and why.
DIFFERENT_DEFAULTS: dict[tuple[str, str], str] = {
    ("dcr", "save_steps"): "the workflow checkpoints a job so a kill resumes it; a library call writes no checkpoint",
    ("scans", "threshold"): "0.75 is the paper's for Llama-2-7B; the toy model is not one the paper covers (null)",
    ("scans", "affirmative"): "the toy world's vocabulary is lower case ('sure'); chat models answer 'Sure'",
    ("scans", "batch_size"): "inference batch only (speed); the toy model is small enough for 64",
    ("scans", "max_length"): "the toy model's context is 128 tokens",
    ("surgical", "n_train"): "the paper's 128 + 32 per pool do not fit the toy world's 100 seemingly toxic prompts",
    ("surgical", "batch_size"): "inference batch only (speed); the toy model is small enough for 64",
    ("surgical", "max_length"): "the toy model's context is 128 tokens",
}


def _declared(schema: dict[str, Any], sub: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Every property node the subschema declares for ``key``, through ``$ref`` and ``allOf``."""
    if "$ref" in sub:
        sub = schema["$defs"][sub["$ref"].rsplit("/", 1)[1]]
    own = [sub["properties"][key]] if key in sub.get("properties", {}) else []
    return own + [p for part in sub.get("allOf", []) for p in _declared(schema, part, key)]


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_schema_section_is_its_dataclass(name: str) -> None:
    cls, schema = SECTIONS[name], load_schema()
    section = schema["properties"][name]
    names = [f.name for f in fields(cls)]
    assert schema_keys(schema, section) == {*names, *cls.CONSUMED_ELSEWHERE}
    assert set(section["required"]) == {*names, *cls.CONSUMED_ELSEWHERE}
    generated = properties(cls)
    for key in names:
        (prop,) = _declared(schema, section, key)  # declared once: nowhere but the dataclass
        assert {k: prop.get(k) for k in SCHEMA_KEYS} == {k: generated[key].get(k) for k in SCHEMA_KEYS}, key
    # the YAML adds only the keys the dataclass documents as read elsewhere
    raw = yaml.safe_load((REPO / "src/overrefusal/schemas/config.schema.yaml").read_text())
    assert "properties" not in raw["$defs"][name]
    assert schema_keys(raw, raw["properties"][name]) == set(cls.CONSUMED_ELSEWHERE)


def test_properties_from_annotations_and_metadata() -> None:
    @dataclass(frozen=True)
    class Toy(Settings):
        SECTION = "toy"
        n: int = setting("count", 1, minimum=1)
        p: float | None = setting("share", None, exclusive_minimum=0, maximum=1)
        mode: str = setting("how", "a", choices=("a", "b"))
        span: tuple[int, int] | None = setting("range", None, minimum=0)
        name: str = setting("label", "x", min_length=1)
        on: bool = setting("switch", True)

    assert properties(Toy) == {
        "n": {"type": "integer", "minimum": 1, "description": "count"},
        "p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1, "description": "share"},
        "mode": {"type": "string", "enum": ["a", "b"], "description": "how"},
        "span": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0}, "minItems": 2,
                 "maxItems": 2, "description": "range"},
        "name": {"type": "string", "minLength": 1, "description": "label"},
        "on": {"type": "boolean", "description": "switch"},
    }
    with pytest.raises(ValueError) as info:
        Toy(n=0, p=0, mode="c", span=(3, -1), name="", on=1)
    for part in ["toy.n: 0 is out of range (allowed >= 1)", "toy.p: 0 is out of range (allowed > 0 and <= 1)",
                 "toy.mode: 'c' is not allowed; valid values: a, b", "toy.span: -1 is out of range (allowed >= 0)",
                 "toy.name: '' is too short (at least 1)", "toy.on: 1 is not a boolean"]:
        assert part in str(info.value)
    assert Toy(p=None, span=[1, 2]).span == [1, 2]


def _outside(meta: dict[str, Any]) -> list[Any]:
    """A value just outside each bound the metadata declares."""
    out = []
    if "minimum" in meta:
        out.append(meta["minimum"] - 1)
    if "exclusive_minimum" in meta:
        out.append(meta["exclusive_minimum"])
    if "maximum" in meta:
        out.append(meta["maximum"] + 1)
    if "exclusive_maximum" in meta:
        out.append(meta["exclusive_maximum"])
    if "choices" in meta:
        out.append("nope")
    if "min_length" in meta:
        out.append("")
    return out


BOUND_CASES = [(name, f.name, bad, nested)
               for name, cls in SECTIONS.items()
               for nested, sub in [(None, cls), *([("lora", LoraSettings)] if cls is SFTConfig else [])]
               for f in fields(sub) for bad in _outside(dict(f.metadata))]


@pytest.mark.parametrize(("section", "key", "bad", "nested"), BOUND_CASES,
                         ids=[f"{s}.{n + '.' if n else ''}{k}={b}" for s, k, b, n in BOUND_CASES])
def test_every_bound_is_refused_by_the_dataclass_and_the_schema(section, key, bad, nested) -> None:
    cfg = copy.deepcopy(DEFAULT)
    node = cfg[section][nested] if nested else cfg[section]
    prop = properties(LoraSettings if nested else SECTIONS[section])[key]
    node[key] = [bad, 3] if "array" in prop["type"] else bad  # a list's bounds bind its items
    where = re.escape(f"{section}.{nested + '.' if nested else ''}{key}")
    with pytest.raises(ValueError, match=rf"{where}: .*{re.escape(repr(bad))}"):
        SECTIONS[section].from_params(cfg[section])
    with pytest.raises(ConfigError, match=rf"cfg: {where}\b"):
        validate_config(cfg, "cfg", env={})


def test_config_yaml_values_are_the_defaults_except_where_a_reason_is_given() -> None:
    differ = {}
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if f.default is not MISSING and DEFAULT[name][f.name] != f.default:
                differ[(name, f.name)] = (DEFAULT[name][f.name], f.default)
    assert set(differ) == set(DIFFERENT_DEFAULTS), differ
    assert SFTConfig.__dataclass_fields__["lr"].default is MISSING  # sft: config.yaml is the only home


def test_config_yaml_builds_every_section() -> None:
    for name, cls in SECTIONS.items():
        assert cls.from_params(DEFAULT[name])
    assert isinstance(SFTConfig.from_params(DEFAULT["sft"]).lora, LoraSettings)


@pytest.mark.parametrize("cls", [DCRConfig, ScansConfig, SurgicalConfig, SFTConfig])
def test_from_params_refuses_unknown_keys_and_names_the_allowed(cls) -> None:
    params = {**DEFAULT[cls.SECTION], "nope": 1}
    with pytest.raises(ValueError, match=rf"^{cls.SECTION}: unknown key\(s\) nope; allowed: .*max_length"):
        cls.from_params(params)


def test_apply_to_is_read_elsewhere_for_interventions_only() -> None:
    assert ScansConfig.from_params({"apply_to": "stl"}) == ScansConfig()
    assert SurgicalConfig.from_params({"apply_to": "stl", "n_train": 4}) == SurgicalConfig(n_train=4)
    with pytest.raises(ValueError, match=r"unknown key\(s\) apply_to"):
        DCRConfig.from_params({"layer": 0, "apply_to": "stl"})


def test_dcr_steps_at_least_one_and_sft_keys_all_given() -> None:
    with pytest.raises(ValueError, match=r"dcr.steps: 0 is out of range \(allowed >= 1\)"):
        DCRConfig(layer=0, steps=0)
    with pytest.raises(ValueError, match=r"^sft: missing key\(s\) optim$"):
        SFTConfig.from_params({k: v for k, v in DEFAULT["sft"].items() if k != "optim"})
    with pytest.raises(ValueError, match=r"sft.lora: unknown key\(s\) rank"):
        SFTConfig.from_params({**DEFAULT["sft"], "lora": {**DEFAULT["sft"]["lora"], "rank": 4}})


def test_train_sft_refuses_a_bad_key_before_loading_anything(tmp_path: Path) -> None:
    from overrefusal.sft import train_sft

    bad = {**DEFAULT["sft"], "lora": {**DEFAULT["sft"]["lora"], "target_modules": "all"}}
    with pytest.raises(ValueError, match=r"sft.lora.target_modules: 'all' does not match"):
        train_sft(str(tmp_path / "no-model"), str(tmp_path / "out"), [], bad)
    assert not (tmp_path / "out").exists()
