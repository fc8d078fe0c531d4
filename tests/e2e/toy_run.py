"""The toy world's run for the e2e tests, started when the session starts and run beside every other test.

It is the suite's longest job (minutes, both cores most of the time) while the unit and integration tests
leave a core idle for much of theirs; the e2e tests run last (tests/conftest.py) and wait for it here. The run
itself is unchanged: a clean copy, `snakemake --cores all`, its own process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipeline import SNAKEMAKE, copy_workflow

CORES = os.environ.get("OVERREFUSAL_E2E_CORES", "all")
TIMEOUT_S = 3600 if CORES == "all" else 7200


@dataclass
class _Run:
    work: Path
    proc: subprocess.Popen[bytes]
    started: float


_run: _Run | None = None


def start(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Start the run once per session (a second call does nothing)."""
    global _run
    if _run is not None:
        return
    work = copy_workflow(tmp_path_factory.mktemp("toy") / "wf")
    with (work.parent / "stdout.txt").open("wb") as out, (work.parent / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen([SNAKEMAKE, "--cores", CORES], cwd=work, stdout=out, stderr=err,
                                start_new_session=True)
    _run = _Run(work, proc, time.monotonic())


def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished run's directory (started here if the session did not): fails with the run's output tail."""
    start(tmp_path_factory)
    assert _run is not None
    try:
        code = _run.proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - _run.started)))
    except subprocess.TimeoutExpired:
        stop()
        pytest.fail(f"the toy run took more than {TIMEOUT_S} s")
    tail = "".join((_run.work.parent / f).read_text(errors="replace")[-4000:] for f in ("stdout.txt", "stderr.txt"))
    assert code == 0, tail
    return _run.work


def stop() -> None:
    """End a run still going (the session ends early): the whole group, Snakemake and its jobs."""
    if _run is not None and _run.proc.poll() is None:
        os.killpg(_run.proc.pid, signal.SIGTERM)
        try:
            _run.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(_run.proc.pid, signal.SIGKILL)
