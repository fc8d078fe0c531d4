"""A small OpenAI-compatible chat-completions server on the standard library.

It serves two purposes:

* the toy world's "external teacher" and "LLM judge" (``base_url: local`` in the config): a local
  transformers model answers ``POST /v1/chat/completions`` exactly like a hosted API would, so the
  pipeline exercises the same client code path (cache, retries, concurrency, token accounting);
* tests and benches: a scripted backend plus fault and latency injection (``fail_first``,
  ``fail_after``, ``fail_always_status``, ``latency_ms``) and counters at ``GET /stats``
  (requests received, maximum concurrent in-flight requests).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /stats``, ``POST /stats/reset``.
The server binds to loopback only. Decoding in :class:`HFBackend` is greedy unless the request asks
for ``temperature > 0``, in which case it samples with ``seed`` (default 0).

CLI::

    python -m overrefusal.llm.server --model-dir DIR [--template chat] --port 0 --port-file F
    python -m overrefusal.llm.server --scripted echo --latency-ms 50 --port-file F
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .backends import (
    HFBackend,
    RequestError,
    ScriptedBackend,
    load_script,
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")  # IPv4 loopback only (the server is AF_INET)

# Request fields the server understands; anything else is rejected with 400 so that a typo in a
# parameter name cannot silently change what is generated.
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "n",
        "stop",
        "stream",
        "user",
        "presence_penalty",
        "frequency_penalty",
    }
)


class _State:
    """Thread-safe counters exposed at ``GET /stats``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0  # chat-completion requests received (any outcome)
        self.completions = 0  # answered 200
        self.injected_failures = 0
        self.auth_failures = 0
        self.bad_requests = 0
        self.backend_errors = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=64)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "injected_failures": self.injected_failures,
                "auth_failures": self.auth_failures,
                "bad_requests": self.bad_requests,
                "backend_errors": self.backend_errors,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "recent_requests": list(self.recent),
            }


class ChatServer(ThreadingHTTPServer):
    """The HTTP server. Construct, then ``serve_forever()`` or :meth:`start_in_thread`.

    Fault injection, decided by arrival order of chat-completion requests (0-based index ``i``):
    ``fail_always_status`` fails every request; ``i < fail_first`` fails with ``fail_status``;
    ``fail_after is not None and i >= fail_first + fail_after`` fails with ``fail_status`` (a
    server that dies after k successes). ``latency_ms`` is slept before every answer.
    """

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        backend: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name: str = "local",
        api_key: str | None = None,
        latency_ms: float = 0.0,
        fail_first: int = 0,
        fail_status: int = 429,
        fail_after: int | None = None,
        fail_always_status: int | None = None,
        verbose: bool = False,
    ):
        if host not in LOOPBACK_HOSTS:
            allowed = ", ".join(LOOPBACK_HOSTS)
            raise ValueError(f"refusing to bind to {host!r}: this server listens on loopback only ({allowed})")
        for name, status in (("fail_status", fail_status), ("fail_always_status", fail_always_status)):
            if status is not None and not 400 <= int(status) <= 599:
                raise ValueError(f"{name} must be an HTTP error status 400..599, got {status}")
        self.backend = backend
        self.model_name = model_name
        self.api_key = api_key
        self.latency_s = float(latency_ms) / 1000.0
        self.fail_first = int(fail_first)
        self.fail_status = int(fail_status)
        self.fail_after = None if fail_after is None else int(fail_after)
        self.fail_always_status = None if fail_always_status is None else int(fail_always_status)
        self.verbose = verbose
        self.state = _State()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def injected_status(self, index: int) -> int | None:
        if self.fail_always_status is not None:
            return self.fail_always_status
        if index < self.fail_first:
            return self.fail_status
        if self.fail_after is not None and index >= self.fail_first + self.fail_after:
            return self.fail_status
        return None

    def start_in_thread(self) -> ChatServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"chat-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def serve_in_thread(backend: Any, **opts: Any) -> Iterator[ChatServer]:
    """Run a :class:`ChatServer` in a background thread for the duration of the block."""
    server = ChatServer(backend, **opts).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


def _error_body(message: str, status: int, code: str | None = None) -> dict[str, Any]:
    if status == 429:
        kind, code = "requests", code or "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK adds
    # ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are dropped after this many seconds

    # -- plumbing ---------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"[llm-server] {self.address_string()} {format % args}\n")

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _authorised(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {key}"

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/stats":
            self._send_json(200, self.server.stats())
        elif path == "/v1/models":
            if not self._authorised():
                self._send_json(401, _error_body("Incorrect API key provided.", 401, "invalid_api_key"))
                return
            model = {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "local"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error_body(f"unknown path {path!r}", 404))

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_body()
        if path == "/stats/reset":
            with self.server.state.lock:
                self.server.state.reset()
            self._send_json(200, {"ok": True})
        elif path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._send_json(404, _error_body(f"unknown path {path!r}", 404))

    def _chat(self, body: bytes) -> None:
        state = self.server.state
        with state.lock:
            index = state.requests
            state.requests += 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            status, payload = self._chat_inner(body, index)
            self._send_json(status, payload)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _chat_inner(self, body: bytes, index: int) -> tuple[int, dict[str, Any]]:
        server, state = self.server, self.server.state
        if server.latency_s > 0:
            time.sleep(server.latency_s)
        if not self._authorised():
            with state.lock:
                state.auth_failures += 1
            # Like api.openai.com, echo a masked form of the key (clients must not log it verbatim).
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            masked = f"{given[:6]}{'*' * 8}{given[-4:]}" if len(given) > 10 else "***"
            return 401, _error_body(f"Incorrect API key provided: {masked}.", 401, "invalid_api_key")
        injected = server.injected_status(index)
        if injected is not None:
            with state.lock:
                state.injected_failures += 1
            return injected, _error_body(f"injected failure for request #{index}", injected)
        try:
            req = json.loads(body.decode("utf-8") or "null")
            messages, params = _validate(req)
        except (RequestError, ValueError, UnicodeDecodeError) as exc:
            with state.lock:
                state.bad_requests += 1
            return 400, _error_body(str(exc), 400)
        with state.lock:
            state.recent.append({k: v for k, v in req.items()})
        try:
            result = server.backend.complete(messages, params)
        except RequestError as exc:
            with state.lock:
                state.bad_requests += 1
            return 400, _error_body(str(exc), 400)
        except Exception as exc:  # the backend failed: a server error, reported, never papered over
            with state.lock:
                state.backend_errors += 1
            return 500, _error_body(f"backend error: {type(exc).__name__}: {exc}", 500)
        text, finish = _apply_stop(result.text, params.get("stop"), result.finish_reason)
        with state.lock:
            state.completions += 1
            state.prompt_tokens += result.prompt_tokens
            state.completion_tokens += result.completion_tokens
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model") or server.model_name,
            "system_fingerprint": f"overrefusal-local-{getattr(server.backend, 'name', 'backend')}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        }


def _validate(req: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not isinstance(req, dict):
        raise RequestError("request body must be a JSON object")
    unknown = sorted(set(req) - KNOWN_FIELDS)
    if unknown:
        raise RequestError(f"unsupported field(s): {', '.join(unknown)}")
    if not req.get("model"):
        raise RequestError("'model' is required")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise RequestError(f"messages[{i}] must be an object with role system|developer|user|assistant")
        if not isinstance(m.get("content"), str):
            raise RequestError(f"messages[{i}].content must be a string")
    if req.get("n", 1) != 1:
        raise RequestError("only n=1 is supported")
    if req.get("stream"):
        raise RequestError("stream=true is not supported")
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise RequestError("max_tokens must be a positive integer")
    params = {
        "max_tokens": max_tokens,
        "temperature": req.get("temperature"),
        "top_p": req.get("top_p"),
        "seed": req.get("seed"),
        "stop": req.get("stop"),
    }
    return messages, params


def _apply_stop(text: str, stop: str | list[str] | None, finish: str) -> tuple[str, str]:
    if not stop:
        return text, finish
    stops = [stop] if isinstance(stop, str) else list(stop)
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], "stop"
    return text, finish


# -- CLI -------------------------------------------------------------------------------------------
def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m overrefusal.llm.server", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="a local transformers checkpoint (HFBackend)")
    src.add_argument("--scripted", metavar="echo|MODULE:FUNCTION",
                     help="a scripted backend instead of a model: 'echo' or a script named as module:function")
    p.add_argument("--template", default="chat", choices=["chat", "alpaca"])
    p.add_argument("--model-name", default=None, help="id listed at /v1/models (default: model dir name or 'scripted')")
    p.add_argument("--max-tokens-default", type=int, default=256)
    p.add_argument("--host", default="127.0.0.1", choices=list(LOOPBACK_HOSTS))
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    p.add_argument("--api-key-env", help="require 'Authorization: Bearer $VAR' (the key is read from this env var)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=429)
    p.add_argument("--fail-after", type=int, default=None)
    p.add_argument("--fail-always-status", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads for the HF backend")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise SystemExit(f"--api-key-env {args.api_key_env}: that environment variable is unset or empty")
    if args.model_dir:
        if not (Path(args.model_dir) / "config.json").is_file():
            raise SystemExit(f"--model-dir {args.model_dir}: not a transformers checkpoint (no config.json)")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        backend: Any = HFBackend(args.model_dir, template=args.template, default_max_tokens=args.max_tokens_default)
        model_name = args.model_name or Path(args.model_dir).resolve().name
    else:
        try:
            script = load_script(args.scripted)
        except (ImportError, AttributeError, ValueError) as exc:
            raise SystemExit(f"--scripted {args.scripted}: {exc}") from exc
        backend = ScriptedBackend(script)
        model_name = args.model_name or f"scripted-{args.scripted.rpartition(':')[2]}"
    server = ChatServer(
        backend,
        args.host,
        args.port,
        model_name=model_name,
        api_key=api_key,
        latency_ms=args.latency_ms,
        fail_first=args.fail_first,
        fail_status=args.fail_status,
        fail_after=args.fail_after,
        fail_always_status=args.fail_always_status,
        verbose=args.verbose,
    )
    # SIGTERM -> clean shutdown (serve_forever returns), so the port is released promptly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if args.port_file:
        from overrefusal.io import atomic_path

        with atomic_path(args.port_file) as tmp:
            tmp.write_text(f"{server.port}\n", encoding="utf-8")
    print(f"serving {model_name} at {server.base_url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
