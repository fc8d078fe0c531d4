"""Kill-and-resume of the real `sft` rule: Snakemake is killed mid-training after a checkpoint
exists, and the rerun continues from that checkpoint instead of starting over.

Two kills: SIGKILL to Snakemake's whole process group (a node dying: no cleanup, stale lock,
the job marked incomplete) and SIGINT to the group (Ctrl-C in a terminal: the training job is
interrupted, Snakemake removes its outputs). Either way the checkpoints survive, because they live in the sibling directory
`<model>.checkpoints`, which is not an output of the rule, and the rerun with `--rerun-incomplete`
resumes from the newest complete checkpoint; the refusal-tracking curve keeps its points from
before the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.pipeline import REPO, SNAKEMAKE, copy_workflow, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = "tests/fixtures/tiny_config.yaml"
R = "results/tiny"
MAX_STEPS, EVERY = 600, 50
# Long enough on the tiny model (a few seconds of steps) that the kill lands mid-training.
EXTRA = {"sft": {"max_steps": MAX_STEPS, "save_steps": 5, "logging_steps": 10},
         "tracking": {"every_steps": EVERY, "kernel": {"every_steps": EVERY}}}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("resume") / "wf")
    (work / "resume.yaml").write_text(yaml.safe_dump(EXTRA))
    proc = snakemake(work, f"{R}/models/toy-llama/base", "--cores", "1", "--configfile", TINY, "resume.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def _complete_checkpoints(ckpts: Path) -> list[int]:
    steps = []
    for d in ckpts.glob("checkpoint-*"):
        try:
            json.loads((d / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(d.name.split("-")[1]))
    return sorted(steps)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize(("how", "method"), [("sigkill", "no_safety"), ("sigint", "stl")])
def test_killed_sft_resumes_from_its_checkpoint(work: Path, how: str, method: str) -> None:
    run_dir = work / R / "toy-llama" / method / "seed3"
    target = f"{R}/toy-llama/{method}/seed3/sft_metrics.json"
    ckpts = run_dir / "model.checkpoints"
    cmd = [SNAKEMAKE, target, "--cores", "1", "--configfile", TINY, "resume.yaml"]
    with open(work / f"{how}.log", "w") as log:
        # A shell that starts the test suite in the background makes its children ignore SIGINT, and
        # Python keeps an inherited SIG_IGN; reset it so the run reacts to Ctrl-C as in a terminal.
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
        try:
            deadline = time.monotonic() + 600
            while not _complete_checkpoints(ckpts):
                assert proc.poll() is None, f"snakemake ended before any checkpoint: {(work / f'{how}.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint within 600 s"
                time.sleep(0.05)
            if how == "sigkill":
                _kill_group(proc.pid)  # Snakemake and the training job die at once, like a lost node
            else:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
            proc.wait(timeout=120)
        finally:
            _kill_group(proc.pid)  # nothing of this run may outlive the test
    killed_at = _complete_checkpoints(ckpts)
    assert killed_at and max(killed_at) < MAX_STEPS, "training finished before the kill"
    assert not (run_dir / "sft_metrics.json").exists() and not (run_dir / "model").exists()

    if how == "sigkill":  # a dead Snakemake leaves its lock behind
        unlock = snakemake(work, "--unlock", "--configfile", TINY, "resume.yaml")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = snakemake(work, target, "--cores", "1", "--configfile", TINY, "resume.yaml", "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]

    metrics = json.loads((run_dir / "sft_metrics.json").read_text())
    assert metrics["resumed_from"] is not None
    resumed_step = int(Path(metrics["resumed_from"]).name.split("-")[1])
    assert resumed_step == max(killed_at) > 0
    assert metrics["global_step"] == MAX_STEPS
    assert not ckpts.exists()  # removed once the model is saved

    doc = json.loads((run_dir / "tracking.json").read_text())
    jsonschema.validate(doc, json.loads((REPO / "src/overrefusal/schemas/refusal_tracking.schema.json").read_text()))
    assert doc["resumed_from_step"] == resumed_step
    # every scheduled point, before and after the kill, exactly once per probe set
    steps = [r["step"] for r in doc["records"]]
    assert sorted(set(steps)) == [*range(0, MAX_STEPS + 1, EVERY)] and len(steps) == 3 * len(set(steps))
