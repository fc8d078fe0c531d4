"""A real HTTP server speaking the slice of the Hugging Face Hub protocol that downloads use.

Written against huggingface_hub 2.4 (file_download.py, _snapshot_download.py, hf_api.py). It serves

- ``HEAD``/``GET /[datasets/]<repo>/resolve/<rev>/<file>``: the file, with ``X-Repo-Commit``, ``ETag``
  (the git blob sha1, as the Hub sends for non-LFS files) and ``Content-Length``. No ``X-Xet-Hash``
  header is ever sent, so huggingface_hub takes its plain HTTP path (no Xet, no CDN redirect);
- ``GET /api/{models,datasets}/<repo>[/revision/<rev>]``: repo info with ``sha`` and ``siblings``;
- ``GET /api/{models,datasets}/<repo>/tree/<rev>[/<path>]``: the listing ``snapshot_download`` walks.

Unknown repo, revision or file: 404 with ``X-Error-Code`` ``RepoNotFound``/``RevisionNotFound``/
``EntryNotFound``, the header huggingface_hub turns into its typed errors.

Repos live on disk as ``root/{models,datasets}/<owner>/<name>/<revision>/<files>`` (build them with
:func:`add_repo`). A revision directory named by 40 hex digits is that commit; any other name (a branch
or tag) gets a fixed commit derived from repo and name. A revision may be asked for by name or commit.
Point huggingface_hub at the server with :func:`use_hub`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

REPO_DIRS = {"model": "models", "dataset": "datasets"}
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # as sent, percent-encoded, without the query


class HubURL(str):
    """The base URL (``http://127.0.0.1:PORT``); ``.requests`` lists every request served, in order."""

    requests: list[Request]


def commit_of(repo_type: str, repo_id: str, revision: str) -> str:
    """The commit a revision directory stands for: its own name if that is a commit, else a fixed sha1."""
    if _HEX40.fullmatch(revision):
        return revision
    return hashlib.sha1(f"{REPO_DIRS[repo_type]}/{repo_id}@{revision}".encode()).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_repo(root: Path, repo_type: str, repo_id: str, revision: str, files: dict[str, bytes]) -> str:
    """Write ``files`` (repo-relative posix paths) as ``revision`` of the repo; returns its commit sha."""
    rev_dir = Path(root) / REPO_DIRS[repo_type] / repo_id / revision
    for name, data in files.items():
        p = rev_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    rev_dir.mkdir(parents=True, exist_ok=True)  # an empty revision is still a revision
    return commit_of(repo_type, repo_id, revision)


class _NotFound(Exception):
    def __init__(self, code: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.commit = code, message, commit


@dataclass(frozen=True)
class _Rev:
    dir: Path
    commit: str

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.dir).as_posix() for p in self.dir.rglob("*") if p.is_file())


def _inside(base: Path, rel: str) -> Path:
    """``base / rel``, refusing anything that escapes ``base`` (the path comes off the wire)."""
    p = (base / rel).resolve()
    if p != base.resolve() and base.resolve() not in p.parents:
        raise _NotFound("EntryNotFound", f"{rel}: outside the repository")
    return p


def _resolve_rev(root: Path, repo_type: str, repo_id: str, revision: str) -> _Rev:
    repo_dir = root / REPO_DIRS[repo_type]
    repo_dir = _inside(repo_dir, repo_id)
    # a repo is a directory of revision directories; an owner directory alone is not a repo
    if not repo_dir.is_dir() or (root / REPO_DIRS[repo_type]).resolve() == repo_dir:
        raise _NotFound("RepoNotFound", "Repository not found")
    for d in sorted(repo_dir.iterdir()):
        if d.is_dir() and revision in (d.name, commit_of(repo_type, repo_id, d.name)):
            return _Rev(d, commit_of(repo_type, repo_id, d.name))
    raise _NotFound("RevisionNotFound", f"Invalid rev id: {revision}")


def _split(segments: list[str], keyword: str) -> tuple[str, str, str] | None:
    """(repo_id, revision, rest) around ``keyword`` in raw path segments; the revision is one segment
    (huggingface_hub quotes it with safe=""), so split before unquoting."""
    if keyword not in segments[1:]:
        return None
    i = segments.index(keyword, 1)
    if i + 1 >= len(segments):
        return None
    return (unquote("/".join(segments[:i])), unquote(segments[i + 1]), unquote("/".join(segments[i + 2:])))


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    log: list[Request]
    server_version = "fake-hf-hub/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep pytest output clean
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        url = urlsplit(self.path)
        self.log.append(Request(self.command, url.path))
        segs = url.path.strip("/").split("/")
        try:
            if segs[0] == "api" and len(segs) > 2 and segs[1] in ("models", "datasets"):
                self._api("model" if segs[1] == "models" else "dataset", segs[2:], parse_qs(url.query), body)
            elif segs[0] == "datasets" and (parts := _split(segs[1:], "resolve")):
                self._resolve("dataset", *parts, body=body)
            elif segs[0] != "api" and (parts := _split(segs, "resolve")):
                self._resolve("model", *parts, body=body)
            else:
                self._send(404, {"error": "Not Found"}, body)
        except _NotFound as nf:
            extra = {"X-Error-Code": nf.code, "X-Error-Message": nf.message}
            if nf.commit:
                extra["X-Repo-Commit"] = nf.commit  # the Hub sends it with EntryNotFound (cached as .no_exist)
            self._send(404, {"error": nf.message}, body, extra)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str, *, body: bool) -> None:
        rev = _resolve_rev(self.root, repo_type, repo_id, revision)
        p = _inside(rev.dir, filename) if filename else rev.dir
        if not p.is_file():
            raise _NotFound("EntryNotFound", f"{filename} does not exist on \"{revision}\"", rev.commit)
        data = p.read_bytes()
        self._send(200, data, body, {"X-Repo-Commit": rev.commit, "ETag": f'"{git_blob_sha1(data)}"'},
                   content_type="application/octet-stream")

    def _api(self, repo_type: str, segs: list[str], query: dict[str, list[str]], body: bool) -> None:
        if tree := _split(segs, "tree"):
            repo_id, revision, sub = tree
            rev = _resolve_rev(self.root, repo_type, repo_id, revision)
            base = _inside(rev.dir, sub) if sub else rev.dir
            if not base.is_dir():
                raise _NotFound("EntryNotFound", f"{sub} does not exist on \"{revision}\"", rev.commit)
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            entries = []
            for p in sorted(base.rglob("*") if recursive else base.iterdir()):
                path = p.relative_to(rev.dir).as_posix()
                if p.is_file():
                    data = p.read_bytes()
                    entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
                else:
                    entries.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                                    "path": path})
            return self._send(200, entries, body)
        info = _split(segs, "revision")
        repo_id, revision = (info[0], info[1]) if info else ("/".join(unquote(s) for s in segs), "main")
        rev = _resolve_rev(self.root, repo_type, repo_id, revision)
        self._send(200, {"_id": rev.commit[:24], "id": repo_id, "sha": rev.commit, "private": False,
                         "siblings": [{"rfilename": f} for f in rev.files()]}, body)

    def _send(self, status: int, payload: Any, body: bool, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextlib.contextmanager
def serve_hub(root: Path) -> Iterator[HubURL]:
    """Serve the repos under ``root`` on 127.0.0.1 (a free port) from a daemon thread."""
    log: list[Request] = []
    handler = type("FakeHubHandler", (_Handler,), {"root": Path(root), "log": log})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a short poll makes shutdown() return in ~50 ms instead of the default 0.5 s per test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = HubURL(f"http://127.0.0.1:{server.server_address[1]}")
    url.requests = log
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def use_hub(monkeypatch: pytest.MonkeyPatch, url: str, hf_home: Path) -> None:
    """Point huggingface_hub (and transformers/snapshot code built on it) at ``url`` with an empty
    cache under ``hf_home``; ``monkeypatch`` undoes all of it.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is imported, into
    ``huggingface_hub.constants``; its download code reads those constants at call time. So the
    environment is set for anything that starts later (subprocesses) and the constants for this process.
    """
    from huggingface_hub import constants

    home = Path(hf_home)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    # never send (or refresh) a developer's real token to the fake server
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    # telemetry on means a user-agent probe that GETs <endpoint>/api/agent-harnesses: an extra request
    # that would muddle request counts
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
