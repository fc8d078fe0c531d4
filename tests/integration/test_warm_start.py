"""Warm start (overrefusal.warm_start) under a real Snakemake: jobs run in children forked from a server that has
imported torch and transformers, compute exactly what a cold job computes, fail with the script's own status,
and die with their job's process.

A minimal workflow of its own keeps this fast; tests/integration/test_determinism.py compares the pipeline's
real rules run warm (the shared tiny run) and cold (its second run) byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
import pytest

from overrefusal import warm_start
from tests.pipeline import SNAKEMAKE

pytestmark = pytest.mark.integration

SNAKEFILE = '''
from pathlib import Path
from overrefusal import warm_start
_SERVER = []
onstart:
    _SERVER.append(warm_start.start_server(Path.cwd(), workflow.basedir, "logs/warm_start.log"))
onsuccess:
    warm_start.stop_server(_SERVER.pop())
onerror:
    warm_start.stop_server(_SERVER.pop())
rule ready:  # the jobs below wait for the server (if there is one), which a real run's jobs do not
    output: "ready.flag"
    log: "logs/ready.log"
    shell:
        'if [ -n "${{OVERREFUSAL_WARM_START_SOCKET:-}}" ]; then for i in $(seq 300); do'
        ' [ -S "$OVERREFUSAL_WARM_START_SOCKET" ] && break; sleep 0.1; done; fi; touch {output}'
rule job:
    input: "ready.flag"
    output: "out/{x}.json"
    log: "logs/{x}.log"
    threads: 2
    script: "job.py"
rule slow:
    input: "ready.flag"
    output: "out/slow.txt"
    log: "logs/slow.log"
    script: "slow.py"
'''
JOB = '''
import json, os, sys
preloaded = "transformers" in sys.modules  # before this script imports anything heavy
from overrefusal.warm_start import enter_job
enter_job()
from overrefusal.runtime import rule_context
import torch
with rule_context(snakemake) as log:
    torch.manual_seed(int(snakemake.wildcards.x[-1]))
    w = torch.randn(256, 256)
    x = torch.nn.functional.gelu(torch.randn(64, 256) @ w).softmax(-1)
    print("job stdout")  # into the log, through rule_context
    if snakemake.wildcards.x == "fail3":
        sys.exit(3)
    with open(snakemake.output[0], "w") as fh:
        json.dump({"preloaded": preloaded, "values": x.flatten().tolist()[:50], "sum": float(x.double().sum()),
                   "threads": torch.get_num_threads(), "cwd": os.getcwd(), "env": os.environ.get("WARM_TEST")}, fh)
'''
SLOW = '''
import time
from overrefusal.warm_start import enter_job
enter_job()
from overrefusal.runtime import rule_context
with rule_context(snakemake) as log:
    log.info("started")
    time.sleep(120)
    open(snakemake.output[0], "w").write("finished")
'''


def _workflow(root: Path) -> Path:
    root.mkdir()
    (root / "Snakefile").write_text(SNAKEFILE)
    (root / "job.py").write_text(JOB)
    (root / "slow.py").write_text(SLOW)
    return root


def _servers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if "from overrefusal.warm_start import serve" in " ".join(p.info["cmdline"] or [])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One warm run (two jobs, one job that exits 3, one job killed while it runs) and one cold run."""
    base = tmp_path_factory.mktemp("warm_start")
    warm, cold = _workflow(base / "warm"), _workflow(base / "cold")
    env = {**os.environ, "WARM_TEST": "from the job's environment"}
    env.pop(warm_start.SWITCH, None)
    before = {p.pid for p in _servers()}
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "2", "--keep-going", "out/a1.json", "out/b2.json",
                             "out/fail3.json", "out/slow.txt"], cwd=warm, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Kill the slow job's own process with SIGKILL (nothing can be passed on) once its script has started.
    deadline, children = time.monotonic() + 300, []
    while time.monotonic() < deadline and "started" not in _read(warm / "logs/slow.log"):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    servers = [p for p in _servers() if p.pid not in before and p.ppid() == proc.pid]
    children = [c for s in servers for c in s.children()]
    job = next(p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [""])[-1].endswith("slow.py")
               and str(warm) in p.info["cmdline"][-1])
    job.send_signal(signal.SIGKILL)
    time.sleep(1.0)
    alive_after_kill = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    out, _ = proc.communicate(timeout=600)
    time.sleep(1.5)  # a server polls for its parent once a second
    cold_proc = subprocess.run([SNAKEMAKE, "--cores", "2", "out/a1.json", "out/b2.json"], cwd=cold, capture_output=True,
                               text=True, env={**env, warm_start.SWITCH: "0"}, timeout=600, check=False)
    return {"warm": warm, "cold": cold, "stdout": out, "rc": proc.returncode, "servers": servers,
            "children": children, "alive_after_kill": alive_after_kill, "cold_proc": cold_proc}


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_warm_jobs_compute_what_cold_jobs_compute(runs: dict) -> None:
    assert runs["cold_proc"].returncode == 0, runs["cold_proc"].stdout[-2000:] + runs["cold_proc"].stderr[-2000:]
    for name in ("a1", "b2"):
        warm = json.loads((runs["warm"] / f"out/{name}.json").read_text())
        cold = json.loads((runs["cold"] / f"out/{name}.json").read_text())
        assert warm["preloaded"] is True and cold["preloaded"] is False  # the warm job really ran in a warm child
        assert warm["values"] == cold["values"] and warm["sum"] == cold["sum"]
        # the job's threads, directory and environment, not the server's
        assert warm["threads"] == cold["threads"] == 2
        assert warm["cwd"] == str(runs["warm"]) and warm["env"] == "from the job's environment"
        log = _read(runs["warm"] / f"logs/{name}.log")
        assert "job stdout" in log and warm_start.USAGE_LINE in log
        assert warm_start.USAGE_LINE not in _read(runs["cold"] / f"logs/{name}.log")


def test_a_failing_script_fails_its_job_with_its_status(runs: dict) -> None:
    assert runs["rc"] != 0
    assert "returned non-zero exit status 3" in runs["stdout"], runs["stdout"][-3000:]
    assert not (runs["warm"] / "out/fail3.json").exists()


def test_a_killed_job_takes_its_child_along_and_writes_nothing(runs: dict) -> None:
    assert len(runs["servers"]) == 1 and runs["children"], "the slow job did not run in a warm child"
    assert runs["alive_after_kill"] == []
    assert not (runs["warm"] / "out/slow.txt").exists()


def test_the_server_ends_with_the_run(runs: dict) -> None:
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in runs["servers"])
    log = _read(runs["warm"] / "logs/warm_start.log")
    assert "preloaded" in log and "stopped after 4 jobs" in log, log


def test_switched_off_under_slurm_and_by_the_variable() -> None:
    assert warm_start.enabled({})
    assert not warm_start.enabled({"SLURM_JOB_ID": "17"})
    assert not warm_start.enabled({warm_start.SWITCH: "0"})


def test_a_job_from_another_interpreter_or_package_is_declined() -> None:
    mine = warm_start._identity()
    assert warm_start._mismatch(mine) == ""
    assert "prefix" in warm_start._mismatch({**mine, "prefix": "/opt/conda/envs/other"})
    assert "package" in warm_start._mismatch({**mine, "package": "/elsewhere/overrefusal/__init__.py"})


def test_outside_a_snakemake_job_nothing_is_delegated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # pytest's own __main__ has no Snakemake object: with a server listening, this process still keeps its work
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(0.3)
        monkeypatch.setenv(warm_start.SOCKET, str(path))
        warm_start.delegate_if_served()
        with pytest.raises(TimeoutError):
            listener.accept()


class Snakemake:  # the type name is what a job's process is recognised by
    log = ("logs/job.log",)


@pytest.fixture
def job_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process dressed as a Snakemake script job's (its __main__ holds the job's object and script path)."""
    main = types.ModuleType("__main__")
    main.snakemake = Snakemake()
    main.__real_file__ = "/nonexistent/.snakemake/scripts/tmp.job.py"
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.delenv(warm_start.SWITCH, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


@pytest.mark.parametrize("answer", [None, b"N"], ids=["silent-server", "declining-server"])
def test_a_server_that_does_not_take_the_job_leaves_it_to_the_job(job_main: None, answer: bytes | None,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    monkeypatch.setattr(warm_start, "HANDSHAKE_TIMEOUT_S", 0.5)
    monkeypatch.setenv(warm_start.SOCKET, str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(5)
        got: list[dict] = []

        def serve_once() -> None:
            conn, _ = listener.accept()
            with conn:
                head, fds, _, _ = socket.recv_fds(conn, 8, 3)
                for fd in fds:
                    os.close(fd)
                got.append(json.loads(warm_start._recv_exact(conn, warm_start._HEADER.unpack(head)[0])))
                if answer:
                    conn.sendall(answer)
                else:
                    time.sleep(3.0)  # silent: the job gives up after its handshake timeout

        server = threading.Thread(target=serve_once)
        server.start()
        t0 = time.monotonic()
        warm_start.delegate_if_served()  # returns: this process keeps the job (it would have exited otherwise)
        waited = time.monotonic() - t0
        server.join()
    assert got and got[0]["script"].endswith("tmp.job.py") and got[0]["log"] == "logs/job.log"
    assert got[0]["cwd"] == os.getcwd() and got[0]["package"] == warm_start._identity()["package"]
    # well under the silent server's 3 s either way: a loaded machine may add scheduling delay, not seconds
    assert waited < 2.5 if answer else 0.4 < waited < 2.5
