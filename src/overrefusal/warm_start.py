"""Warm start: a local run's script jobs execute in children forked from one interpreter that has imported the stack.

Each of the toy run's ~85 model jobs spends 5–7 s importing torch, transformers, TRL and lm-eval before it does
any work, a third of a generation job. For a local run the Snakefile's ``onstart`` starts this module as a
server (``start_server``): it imports that stack once, then listens on a Unix socket. A script job's own
process, when its script calls ``runtime.enter_job()`` (``delegate_if_served``), hands the server its stdin, stdout and
stderr, working directory, environment and script file, and waits; a child forked from the server runs the
script, and the job's process exits with the child's status. To Snakemake a job is still one process: its
outputs, log, exit status and ``benchmark:`` wall time are the job's own. A signal to the waiting process is
passed on to the child, and a waiting process that dies (even by SIGKILL) takes the child with it.

Nothing changes in what a job computes (byte-identical outputs, tests/integration/test_warm_start.py). Two
things differ from a job that imports for itself: a ``benchmark:`` file's memory and CPU columns count the
waiting process, not the child, so the child writes its own peak RSS and CPU time to the job's log; and the
server holds the code as it was when the run started, as a running job does.

Used only where it is safe: a local executor in Snakemake's main process, no SLURM job around the script, the
same interpreter and the same ``overrefusal`` package on both sides. ``OVERREFUSAL_WARM_START=0`` switches it
off; a job that finds no server, or a server still importing, imports for itself as before.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from overrefusal.runtime import job_object, pause_collector_in_job

SWITCH = "OVERREFUSAL_WARM_START"
SOCKET = "OVERREFUSAL_WARM_START_SOCKET"
# What the model jobs import (module, or module:attribute for a lazily loaded name). A job that needs more
# imports the rest itself; nothing here is required. Not scikit-learn: its BLAS sizes its thread pool when it
# loads, which a job does after ``rule_context`` has set the rule's threads.
PRELOAD = (
    "torch",
    "transformers:LlamaForCausalLM",
    "transformers:AutoTokenizer",
    "transformers:Trainer",
    "peft:LoraConfig",
    "trl:SFTTrainer",
    "trl:SFTConfig",
    "datasets:Dataset",
    "lm_eval.tasks:TaskManager",
    "lm_eval.models.huggingface:HFLM",
    "overrefusal.generate",
    "overrefusal.models.loading",
    "overrefusal.models.pretrain",
    "overrefusal.sft",
    "overrefusal.tracking",
    "overrefusal.capability",
    "overrefusal.dcr",
    "overrefusal.interventions",
    "overrefusal.winrate",
    "overrefusal.provenance",
)
# The line a warm-start child appends to its job's log: how tests and bench/bench_pipeline.py count warm jobs.
USAGE_LINE = "warm-start child: peak RSS"
_SERVE = "import sys; from overrefusal.warm_start import serve; serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])"
HANDSHAKE_TIMEOUT_S = 30.0
_HEADER = struct.Struct("!Q")
_STATUS = struct.Struct("!i")
_PID = struct.Struct("!q")
# True in a child that runs a job: the script's own enter_job() must not hand the job on a second time.
_in_child = False


def enabled(environ: dict[str, str] | None = None) -> bool:
    """False under ``OVERREFUSAL_WARM_START=0`` or inside a SLURM job (whose limits a forked child would escape)."""
    env = os.environ if environ is None else environ
    return env.get(SWITCH, "1") != "0" and "SLURM_JOB_ID" not in env


def start_server(workdir: str | os.PathLike[str], scripts_dir: str | os.PathLike[str], log_path: str | os.PathLike[str]
                 ) -> subprocess.Popen[bytes] | None:
    """Start a server for this process's jobs and point them at it (``OVERREFUSAL_WARM_START_SOCKET``).

    The server lives as long as this process: it exits within a second of this process's end.
    """
    if not enabled():
        return None
    name = f"overrefusal-warm-{os.getuid()}-{os.getpid()}.sock"
    path = os.path.join(tempfile.gettempdir(), name)
    if len(path.encode()) > 100:  # a Unix socket's path holds at most 107 bytes on Linux
        path = os.path.join("/tmp", name)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # -P: no working directory at the front of sys.path, as in a script job
        proc = subprocess.Popen([sys.executable, "-P", "-c", _SERVE, path, str(os.getpid()), str(scripts_dir)],
                                cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    os.environ[SOCKET] = path
    return proc


def stop_server(proc: subprocess.Popen[bytes] | None) -> None:
    os.environ.pop(SOCKET, None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------- the server


def _preload(log: logging.Logger) -> None:
    start = time.perf_counter()
    gc.disable()  # see runtime.pause_collector_in_job
    for spec in PRELOAD:
        module, _, attr = spec.partition(":")
        try:
            obj = importlib.import_module(module)
            if attr:
                getattr(obj, attr)
        except Exception as exc:  # noqa: BLE001 - a missing optional library only costs its job the import
            log.warning("preload %s: %s", spec, exc)
    gc.freeze()
    gc.enable()
    log.info("preloaded %d modules in %.1f s", len(sys.modules), time.perf_counter() - start)


def serve(path: str, parent: int, scripts_dir: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s warm_start %(message)s")
    log = logging.getLogger("overrefusal.warm_start")
    sys.path.append(scripts_dir)  # as a script job's preamble does
    _preload(log)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(64)
    os.rename(staging, path)  # jobs find the socket only once everything is imported
    listener.settimeout(1.0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("listening on %s for process %d", path, parent)
    served = 0
    try:
        while _alive(parent):
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                pass
            else:
                served += _handle(conn, listener, log)
            _reap()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        log.info("stopped after %d jobs", served)


def _alive(parent: int) -> bool:
    return os.getppid() == parent  # an orphan is adopted by another process


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _handle(conn: socket.socket, listener: socket.socket, log: logging.Logger) -> int:
    """Read one job's request and fork its child; 1 when a child took the job."""
    fds: list[int] = []
    try:
        conn.settimeout(10.0)
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        head += _recv_exact(conn, _HEADER.size - len(head))
        request = json.loads(_recv_exact(conn, _HEADER.unpack(head)[0]))
        why = _mismatch(request)
        if why or len(fds) != 3:
            log.info("declined %s: %s", request.get("script"), why or "stdin/stdout/stderr missing")
            conn.sendall(b"N")
            return 0
        conn.settimeout(None)
        sys.stderr.flush()  # nothing of the server's may reach the job's stderr
        pid = os.fork()
        if pid == 0:
            listener.close()
            code = 1
            try:
                code = _run_child(conn, fds, request)
            finally:
                os._exit(code)
        return 1
    except (OSError, ValueError, EOFError) as exc:
        log.warning("request failed: %s", exc)
        return 0
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()


def _identity() -> dict[str, str]:
    import overrefusal

    return {"prefix": sys.prefix, "version": sys.version, "package": str(Path(overrefusal.__file__).resolve())}


def _mismatch(request: dict[str, Any]) -> str:
    mine = _identity()
    return "; ".join(f"{k} {request.get(k)!r} is not {v!r}" for k, v in mine.items() if request.get(k) != v)


def _run_child(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> int:
    """Become the job: its stdio, directory, environment and script; the status goes back to the job's process."""
    global _in_child
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["environ"])
    os.umask(request["umask"])
    sys.argv[:] = request["argv"]
    sys.path[:] = request["path"]
    _fresh_state()
    _in_child = True
    conn.sendall(b"Y" + _PID.pack(os.getpid()))
    threading.Thread(target=_exit_with_client, args=(conn,), daemon=True, name="warm-start-client").start()
    code = 0
    try:
        import runpy

        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - reported as a fresh interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    _log_usage(request.get("log"))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(OSError):
        conn.sendall(_STATUS.pack(code))
    return code


def _fresh_state() -> None:
    """What a fresh interpreter would start with: unseeded RNGs, torch's default seed, no exit handlers."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.manual_seed(torch.initial_seed())
    atexit._clear()  # the server's own handlers are not the job's


def _exit_with_client(conn: socket.socket) -> None:
    """The job's process sends nothing more: end of stream means it is gone, and so must the child be."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os._exit(1)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _log_usage(log_path: str | None) -> None:
    """What ``benchmark:`` cannot see of a warm-start job: the child's peak memory and CPU time, in the job's log."""
    if not log_path:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} overrefusal.warm_start INFO {USAGE_LINE} "
                 f"{usage.ru_maxrss / 1024:.0f} MiB, CPU {usage.ru_utime:.1f} s user + {usage.ru_stime:.1f} s system\n")


# --------------------------------------------------------------------------------------------- the job's side


def enter_job() -> None:
    """The first call of every pipeline script, before it imports torch or anything else heavy.

    With a server to go to, a warm child runs the script and this process exits with the child's status;
    otherwise the collector is paused for the heavy imports (``runtime.pause_collector_in_job``). Importing the
    package does neither: a script asks for it here, on purpose.
    """
    delegate_if_served()
    pause_collector_in_job()


def delegate_if_served() -> None:
    """In a Snakemake script job with a server to go to: let a warm child run the script, and exit with its status.

    Returns (and the job imports for itself) when there is no server, it is not ready, or it declines.
    """
    smk, path = job_object(), os.environ.get(SOCKET)
    script = getattr(sys.modules.get("__main__"), "__real_file__", None)
    if _in_child or smk is None or not path or not script or not enabled():
        return
    logs = list(getattr(smk, "log", None) or [])
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A server that does not answer within this time is given up on, and the job imports for itself; a child
    # it forks after that finds this end closed and never runs the script (see _run_child).
    conn.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        conn.connect(path)
        request = json.dumps({"script": script, "cwd": os.getcwd(), "environ": dict(os.environ),
                              "umask": _umask(), "argv": sys.argv, "path": sys.path, "log": str(logs[0]) if logs else None,
                              **_identity()}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        if _recv_exact(conn, 1) != b"Y":
            raise EOFError("declined")
        child = _PID.unpack(_recv_exact(conn, _PID.size))[0]
    except (OSError, EOFError):
        conn.close()
        return
    conn.settimeout(None)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    try:
        code = _STATUS.unpack(_recv_exact(conn, _STATUS.size))[0]
    except (OSError, EOFError):
        print(f"warm start: the job's child process {child} ended without a status (killed?)", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(left)
        if not chunk:
            raise EOFError(f"connection closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
