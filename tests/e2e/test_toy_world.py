"""The whole toy world, end to end, exactly as `snakemake --cores all` runs it from a clean clone."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from overrefusal.benchmarks import get_benchmark
from tests.pipeline import REPO, copy_workflow, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("toy") / "wf")
    proc = snakemake(work, "--cores", "all")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work


def _evals(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / "results/toy").glob("*/*/eval/*.json"))
            if p.name != "capability.json"]


def test_every_method_and_benchmark_has_schema_valid_json(toy_run: Path) -> None:
    schema = json.loads((REPO / "schemas/benchmark_result.schema.json").read_text())
    evals = _evals(toy_run)
    methods = {e["method"] for e in evals}
    assert methods == {"base", "no_safety", "stl", "stl_aug", "tbr_internal", "tbr_external", "dcr_stl"}
    assert len(evals) == len(methods) * 12
    for e in evals:
        jsonschema.validate(e, schema)
        assert all(row["judge_id"] == e["judge_id"] for row in e["rows"])
    cap_schema = json.loads((REPO / "schemas/capability.schema.json").read_text())
    for p in (toy_run / "results/toy").glob("*/*/eval/capability.json"):
        jsonschema.validate(json.loads(p.read_text()), cap_schema)


def test_tables_and_figures_written(toy_run: Path) -> None:
    for rel in ["tables/main.csv", "tables/main.md", "tables/capability.csv", "tables/capability.md",
                "figures/compliance_by_method.png", "figures/safety_vs_overrefusal.png"]:
        assert (toy_run / "results/toy" / rel).stat().st_size > 100, rel


def test_second_run_has_nothing_to_do(toy_run: Path) -> None:
    proc = snakemake(toy_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _mean(evals: list[dict], method: str, suite: str) -> float:
    vals = [e["value"] for e in evals if e["method"] == method and get_benchmark(e["benchmark"]).suite == suite]
    return sum(vals) / len(vals)


def test_over_refusal_phenomenon_and_its_mitigation(toy_run: Path) -> None:
    """STL over-refuses seemingly toxic prompts; DCR and TBR recover part of it and still refuse."""
    evals = _evals(toy_run)
    comp = {m: _mean(evals, m, "over_refusal") for m in ("no_safety", "stl", "dcr_stl", "tbr_internal", "tbr_external")}
    safety = {m: _mean(evals, m, "harmful") for m in ("no_safety", "stl", "dcr_stl", "tbr_internal", "tbr_external")}
    assert comp["stl"] < comp["no_safety"] - 0.3, comp
    for m in ("dcr_stl", "tbr_internal", "tbr_external"):
        assert comp[m] > comp["stl"] + 0.2, (m, comp)
        assert safety[m] > 0.8, (m, safety)
    assert safety["stl"] > 0.8 and safety["no_safety"] < 0.2, safety


def test_refusal_curves_show_targeted_refusal(toy_run: Path) -> None:
    """DCR's "targeted refusal probability": STL raises refusal on seemingly toxic prompts along with
    toxic ones; after DCR, SFT raises it on toxic prompts much more than on seemingly toxic ones."""
    assert (toy_run / "results/toy/figures/refusal_dynamics.png").stat().st_size > 1000

    def final(method: str) -> dict[str, float]:
        doc = json.loads((toy_run / f"results/toy/toy-llama/{method}/tracking.json").read_text())
        last = max(r["step"] for r in doc["records"])
        return {r["probe_set"]: r["mean_logodds"] for r in doc["records"] if r["step"] == last}

    stl, dcr = final("stl"), final("dcr_stl")
    assert stl["seemingly_toxic"] > 0 and stl["toxic"] > 0, stl  # refusal is the likelier first token
    assert dcr["toxic"] > 0 and dcr["toxic"] - dcr["seemingly_toxic"] > stl["toxic"] - stl["seemingly_toxic"] + 3, dcr
    assert max(stl["general"], dcr["general"]) < -5, (stl, dcr)
