"""Determinism, provenance and secrets, on two real tiny-world runs in two scratch copies.

The session's full tiny run (tests/integration/shared_run.py: tiny_run) and one more run here, of two
methods' judged results (SECOND_RUN_METHODS), in another copy of the same code. Same config and seed, two
different directories (so no output may embed an absolute path), the same fake API key in the environment of both: every per-benchmark
result JSON must be byte-identical, carry full provenance, and nothing under results/, logs/,
benchmarks/ or .snakemake/ of either copy may contain the key. The shared run's jobs run warm (forked from a
server that imported the stack, overrefusal.warm_start), the second run's cold: the same bytes either way, the
weights' hashes in every result's provenance included.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from overrefusal import warm_start
from tests.integration.shared_run import SECRET_ENV, TINY, R, TinyRun, eval_jsons
from tests.pipeline import copy_workflow, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCANNED = ("results", "logs", "benchmarks", ".snakemake")
SECOND_RUN_METHODS = ("dcr_stl", "tbr_external")


def second_run_share(files: dict[str, bytes]) -> dict[str, bytes]:
    """The per-benchmark JSONs of SECOND_RUN_METHODS among ``files`` (paths results/<run>/<model>/<method>/...)."""
    return {name: data for name, data in files.items() if name.split("/")[3] in SECOND_RUN_METHODS}


@pytest.fixture(scope="module")
def second_run(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second run, in a copy of the code the shared run ran (not of the working tree), of the judged results
    of the two longest chains: DCR then SFT, and TBR with the external teacher (its training, its reflections
    over HTTP, then SFT). Every other method's chain is a prefix of one of these or the same rules."""
    work = copy_workflow(tmp_path_factory.mktemp("determinism") / "wf", source=tiny_run.source)
    proc = snakemake(work, *second_run_share(tiny_run.eval_jsons), "--cores", "all", "--configfile", TINY,
                     env={**SECRET_ENV, "OVERREFUSAL_WARM_START": "0"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def two_runs(tiny_run: TinyRun, second_run: Path) -> list[Path]:
    assert tiny_run.work.parent != second_run.parent  # two directories: an embedded path would differ
    return [tiny_run.work, second_run]


def test_per_benchmark_json_is_byte_identical(tiny_run: TinyRun, second_run: Path) -> None:
    # The shared run's files as it wrote them (snapshotted before other tests could touch its copy).
    a, b = second_run_share(tiny_run.eval_jsons), eval_jsons(second_run)
    assert {name.split("/")[3] for name in b} == set(SECOND_RUN_METHODS) and set(a) == set(b)
    assert len(a) >= 24  # two methods x every benchmark
    differ = [name for name in a if a[name] != b[name]]
    assert not differ, f"{len(differ)} result files differ between identical runs, e.g. {differ[:5]}"


def test_the_shared_run_ran_warm_and_the_second_run_cold(tiny_run: TinyRun, second_run: Path) -> None:
    def warm_jobs(work: Path) -> list[str]:
        return [p.name for p in (work / "logs").rglob("*.log") if warm_start.USAGE_LINE in p.read_text(errors="replace")]

    # the server is ready ~10 s into a run: the first model jobs may import for themselves
    assert len(warm_jobs(tiny_run.work)) >= 10, warm_jobs(tiny_run.work)
    assert warm_jobs(second_run) == []


def test_no_absolute_paths_in_results(two_runs: list[Path]) -> None:
    for work in two_runs:
        needle = str(work.parent).encode()  # each copy's own directory (the two live under different ones)
        files = [p for p in (work / R).rglob("*") if p.is_file()]
        assert len(files) > 50, work
        leaked = [p for p in files if needle in p.read_bytes()]
        assert not leaked, f"outputs embed the run directory {work.parent}: {leaked[:5]}"


@pytest.mark.parametrize("run", [0, 1], ids=["shared-run", "second-run"])
def test_every_result_records_provenance(two_runs: list[Path], run: int) -> None:
    work = two_runs[run]
    manifest = work / R / "data/manifest.json"
    manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    splits = {k: v["sha256"] for k, v in json.loads(manifest.read_text())["files"].items()}
    results = eval_jsons(work)
    assert len(results) >= 12
    for rel in results:
        result = json.loads((work / rel).read_text())
        prov = result["provenance"]
        assert set(prov["git"]) == {"commit", "dirty"}  # None here: the scratch copy has no .git
        assert re.fullmatch(r"[0-9a-f]{64}", prov["code_sha256"]), rel
        assert re.fullmatch(r"[0-9a-f]{64}", prov["config_sha256"]), rel
        assert prov["packages"]["torch"] and prov["packages"]["transformers"] and prov["python"]
        assert prov["judge_id"] == result["judge_id"] and result["judge_id"] in prov["judges"].values()
        assert prov["data"]["manifest_sha256"] == manifest_sha and prov["data"]["files_sha256"] == splits
        # The evaluated checkpoint: the weights generation used, hashed again here.
        meta = json.loads((work / rel).parent.with_name("generations").joinpath("meta.json").read_text())
        entry = meta[result["benchmark"]]
        assert prov["model"]["revision"] == entry["revision"] and re.fullmatch(r"[0-9a-f]{64}", entry["revision"])
        model_dir = work / entry["model_dir"]
        assert prov["model"]["weights_sha256"] == {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(model_dir.glob("*.safetensors"))}


@pytest.mark.parametrize("run", [0, 1], ids=["shared-run", "second-run"])
def test_training_metrics_record_provenance_of_both_checkpoints(two_runs: list[Path], run: int) -> None:
    from overrefusal.provenance import weights_sha256

    work = two_runs[run]
    manifest_sha = hashlib.sha256((work / R / "data/manifest.json").read_bytes()).hexdigest()
    metrics = (sorted((work / R).glob("*/*/seed*/sft_metrics.json")) + sorted((work / R).glob("models/*/sft_metrics.json"))
               + sorted((work / R).glob("*/*/seed*/dcr/metrics.json")))
    assert work / R / "models/teacher/sft_metrics.json" in metrics  # the toy teacher's training too
    assert any(p.name == "sft_metrics.json" for p in metrics) and any(p.parent.name == "dcr" for p in metrics)
    for path in metrics:
        prov = json.loads(path.read_text())["provenance"]
        assert prov["data"]["manifest_sha256"] == manifest_sha, path
        assert prov["model"]["weights_sha256"] == weights_sha256(str(path.parent / "model")), path
        assert re.fullmatch(r"[0-9a-f]{64}", prov["start_model"]["weights_sha256"]), path
        assert prov["start_model"] != prov["model"], path  # training changed the weights
    pretrain = json.loads((work / R / "models/toy-llama/pretrain_metrics.json").read_text())["provenance"]
    assert pretrain["model"]["weights_sha256"] == weights_sha256(str(work / R / "models/toy-llama/base"))
    # SFT after DCR starts from the DCR checkpoint, and says so
    dcr = next(p for p in metrics if p.parent.name == "dcr")
    sft_after = json.loads((dcr.parents[1] / "sft_metrics.json").read_text())["provenance"]
    assert sft_after["start_model"] == json.loads(dcr.read_text())["provenance"]["model"]


def test_api_key_is_never_written(two_runs: list[Path]) -> None:
    secrets = [s.encode() for s in SECRET_ENV.values()]
    for work in two_runs:
        scanned = 0
        for top in SCANNED:
            for p in (work / top).rglob("*"):
                if p.is_file() and not p.is_symlink():
                    data = p.read_bytes()
                    scanned += 1
                    assert not any(s in data for s in secrets), f"{p} contains the API key"
        assert scanned > 50
