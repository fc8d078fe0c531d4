"""Start the local chat-completions server (:mod:`overrefusal.llm.server`) as a subprocess, and read its
counters: what a rule uses to serve the toy teacher, and what benches use to measure a client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

_OPTION_FLAGS = {
    "template": "--template",
    "model_name": "--model-name",
    "max_tokens_default": "--max-tokens-default",
    "api_key_env": "--api-key-env",
    "latency_ms": "--latency-ms",
    "fail_first": "--fail-first",
    "fail_status": "--fail-status",
    "fail_after": "--fail-after",
    "fail_always_status": "--fail-always-status",
    "threads": "--threads",
    "scripted": "--scripted",
}


@contextlib.contextmanager
def local_server(
    model_dir: str | os.PathLike[str] | None,
    *,
    startup_timeout: float = 180.0,
    log_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **opts: Any,
) -> Iterator[str]:
    """Start the server CLI as a subprocess on a free loopback port; yield its ``base_url``.

    ``opts`` map to CLI flags (``template``, ``model_name``, ``api_key_env``, ``latency_ms``,
    ``fail_first``, ``fail_status``, ``fail_after``, ``fail_always_status``, ``threads``,
    ``scripted``; pass ``model_dir=None`` with ``scripted="echo"`` or ``scripted="module:function"``). Readiness is a 200 from
    ``GET /v1/models``. The process is terminated by pid on exit, also on exceptions; its stderr goes
    to ``log_path`` (default: a temporary file) and is quoted if startup fails.
    """
    unknown = sorted(set(opts) - set(_OPTION_FLAGS))
    if unknown:
        allowed = ", ".join(sorted(_OPTION_FLAGS))
        raise TypeError(f"local_server: unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
    if model_dir is None and not opts.get("scripted"):
        raise ValueError("local_server: give a model_dir or scripted='echo' / 'module:function'")
    with tempfile.TemporaryDirectory(prefix="llm-server-") as tmpdir:
        port_file = Path(tmpdir) / "port"
        log = Path(log_path) if log_path is not None else Path(tmpdir) / "server.log"
        cmd = [sys.executable, "-m", "overrefusal.llm.server", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--port-file", str(port_file)]
        if model_dir is not None:
            cmd += ["--model-dir", str(model_dir)]
        for name, value in opts.items():
            if value is not None:
                cmd += [_OPTION_FLAGS[name], str(value)]
        child_env = dict(os.environ if env is None else env)
        pkg_root = str(Path(__file__).resolve().parents[2])  # .../src, so the child imports this package
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, child_env.get("PYTHONPATH", "")) if p)
        api_key = child_env.get(opts["api_key_env"]) if opts.get("api_key_env") else None
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env
            )
        try:
            base_url = _wait_ready(proc, port_file, log, startup_timeout, api_key)
            yield base_url
        finally:
            _terminate(proc)


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path, log: Path, timeout: float, api_key: str | None) -> str:
    deadline = time.monotonic() + timeout
    base_url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-4000:] if log.exists() else ""
            raise RuntimeError(
                f"local LLM server (pid {proc.pid}) exited with status {proc.returncode} before it was ready:\n{tail}"
            )
        if base_url is None and port_file.exists():
            text = port_file.read_text(encoding="utf-8").strip()
            if text:
                base_url = f"http://127.0.0.1:{int(text)}/v1"
        if base_url is not None:
            req = urllib.request.Request(f"{base_url}/models")
            if api_key:
                req.add_header("Authorization", f"Bearer {api_key}")
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return base_url
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    _terminate(proc)
    raise TimeoutError(f"local LLM server (pid {proc.pid}) not ready after {timeout:.0f} s; log: {log}")


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def get_stats(base_url: str) -> dict[str, Any]:
    """``GET /stats`` of a server given its ``.../v1`` base URL."""
    root = base_url.rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def reset_stats(base_url: str) -> None:
    root = base_url.rstrip("/").removesuffix("/v1")
    req = urllib.request.Request(f"{root}/stats/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
