"""eval.backend: vllm, run by Snakemake on a copy of the session's tiny run, with tests/support/fake_vllm standing
in for the vllm package (vLLM's call shapes, transformers' greedy decoding): the rule reaches vLLM with the
configured engine arguments and writes the same responses, and a hooked checkpoint (SCANS) stays on hf."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.shared_run import TINY, R, TinyRun
from tests.pipeline import jobs_in_dry_run, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAKE_VLLM = Path(__file__).resolve().parents[1] / "support/fake_vllm"
GEN = f"{R}/toy-llama/{{method}}/seed3/generations"


def test_vllm_backend_from_config(tiny_run: TinyRun, tmp_path: Path) -> None:
    work = Path(shutil.copytree(tiny_run.work, tmp_path / "wf", symlinks=True))
    before = {m: (work / GEN.format(method=m) / "xstest_safe.jsonl").read_text() for m in ("stl", "scans")}
    (work / "vllm.yaml").write_text(yaml.safe_dump({"eval": {"backend": "vllm",
                                                             "vllm": {"gpu_memory_utilization": 0.8}}}))
    log = tmp_path / "engines.jsonl"
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(FAKE_VLLM), os.environ.get("PYTHONPATH")) if p),
           "FAKE_VLLM_LOG": str(log)}
    targets = [f"{GEN.format(method=m)}/meta.json" for m in ("stl", "scans")]
    # the engine is a decoding param: only generation reruns for these targets
    assert jobs_in_dry_run(snakemake(work, *targets, "-n", "--configfile", TINY, "vllm.yaml").stdout) == {
        "generate": 2}
    proc = snakemake(work, *targets, "--cores", "1", "--configfile", TINY, "vllm.yaml", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stl = json.loads((work / GEN.format(method="stl") / "meta.json").read_text())
    scans = json.loads((work / GEN.format(method="scans") / "meta.json").read_text())
    assert {b["backend"] for b in stl.values()} == {"vllm"}
    assert {b["runtime"]["vllm_version"] for b in stl.values() if "runtime" in b} == {"0.0.0+fake"}
    assert {b["backend"] for b in scans.values()} == {"hf"}  # its hooks live in the transformers model
    engines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(engines) == 1 and engines[0]["gpu_memory_utilization"] == 0.8  # one engine for every benchmark
    for m in ("stl", "scans"):  # greedy decoding: the same responses from either engine
        assert (work / GEN.format(method=m) / "xstest_safe.jsonl").read_text() == before[m], m
    assert "generates with hf" in (work / "logs/tiny/toy-llama/scans/seed3/generate.log").read_text()
