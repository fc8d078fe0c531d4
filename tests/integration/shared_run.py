"""The tiny-world run shared by tests/integration/test_rules.py and test_determinism.py (fixture tiny_run,
made available to every integration test by tests/integration/conftest.py).

One full run of the workflow on tests/fixtures/tiny_config.yaml (every rule, a few minutes), made once
per session with a fake API key in its environment. The per-benchmark result JSONs are snapshotted
right after the run, before any test reruns or edits something in the copy, so the determinism tests
compare a second run against exactly what this run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipeline import copy_workflow, snakemake

TINY = "tests/fixtures/tiny_config.yaml"
R = "results/tiny"
# A fake API key, in the environment of every tiny run: no output, log or Snakemake record may contain it.
SECRET = "sk-test-0123456789abcdefDETERMINISM"
SECRET_ENV = {"OPENAI_API_KEY": SECRET, "HF_TOKEN": "hf_" + SECRET}


def eval_jsons(work: Path) -> dict[str, bytes]:
    """The bytes of every per-benchmark result JSON of a copy (capability.json aside), by path relative to it."""
    files = sorted(p for p in (work / R).glob("**/eval/*.json") if p.name != "capability.json")
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in files}


@dataclass(frozen=True)
class TinyRun:
    work: Path  # the copy the full run ran in (tests may rerun rules or edit files in it)
    source: Path  # an untouched copy of the workflow as it was when the run started: copy it for more runs
    eval_jsons: dict[str, bytes]  # eval_jsons(work) right after the run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    # The working tree may change during the session; every run compared with this one copies `source`,
    # so all of them see the same code.
    source = copy_workflow(tmp_path_factory.mktemp("tiny_source") / "wf")
    work = copy_workflow(tmp_path_factory.mktemp("tiny") / "wf", source=source)
    proc = snakemake(work, "--cores", "all", "--configfile", TINY, env=SECRET_ENV)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return TinyRun(work=work, source=source, eval_jsons=eval_jsons(work))
