"""Find a source's files in the local mirror, or download them pinned and checksummed.

Lookup order per file: ``<raw_dir>/<layout path>`` (a mirror laid out like ../shared/data), then
``<download_dir>/<layout path>`` (where earlier downloads went). A file found nowhere is downloaded
only when downloads are enabled, from its pinned origin: GitHub raw over plain HTTP (commit in the
URL) or the HF hub (``huggingface_hub.hf_hub_download(..., revision=...)``). Every file is hashed;
a pinned sha256 that does not match is an error that says where the right bytes come from.

The staged record says where each file's bytes really came from: a download names the URL and the
revision it was read at; a local copy (the mirror, an earlier download) names its path and sha256, and
keeps the upstream revision only when its bytes equal a pinned sha256 (else nothing vouches for it).
It also carries the row count the loaders hold the source to (``pins.<source>.rows`` or the registry's).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..io import atomic_path, sha256_file
from .registry import GH, RawFile, Source


class MissingSourceError(FileNotFoundError):
    """A source is absent locally and cannot be downloaded; the message says how to supply it."""


class ChecksumError(ValueError):
    """A file's sha256 differs from its pin; the message says where the right bytes come from."""


def pin_of(src: Source, f: RawFile, pins: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(revision, sha256): the registry's, overridden by ``data.real.pins.<source>``. A source of several files
    (PIQA's rows and labels) pins each by its layout path: ``sha256: {<layout path>: <sha256>}``."""
    p = (pins or {}).get(src.name) or {}
    sha = p.get("sha256", f.sha256)
    if isinstance(sha, dict):
        sha = sha.get(f.path, f.sha256)
    return p.get("revision", f.revision), sha


def rows_of(src: Source, pins: dict[str, Any] | None) -> int | None:
    """The row count the loaders require: ``data.real.pins.<source>.rows``, else the registry's documented one."""
    p = (pins or {}).get(src.name) or {}
    rows = p.get("rows", src.rows)
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"data.real.pins.{src.name}.rows must be a positive integer, got {rows!r}")
    return rows


def origin_of(f: RawFile, revision: str | None) -> str:
    """Where the upstream bytes are; an HF file without a revision says so (no placeholder in a record)."""
    if f.url:
        return f.url
    if f.hf_repo:
        if revision is None:
            return f"HF dataset {f.hf_repo}, file {f.hf_file}, no revision pinned"
        return f"https://huggingface.co/datasets/{f.hf_repo}/resolve/{revision}/{f.hf_file}"
    return "(no public download; local mirror only)"


def local_origin(path: Path, sha256: str, upstream: str | None) -> str:
    """The origin of bytes found on disk: the path and hash, and the upstream a pinned hash ties them to
    (None: nothing does, so no upstream revision is named, not even as a claim)."""
    if upstream is not None:
        return f"local copy {path} (sha256 {sha256}), identical to the pinned bytes of {upstream}"
    return f"local copy {path} (sha256 {sha256}); no pinned sha256 ties it to an upstream revision"


class StagedPaths(list[Path]):
    """A staged source's files, carrying the row count staging resolved, so that ``load_records`` on
    ``staged_paths(staged)`` holds the files to ``data.real.pins.<source>.rows`` where the config sets it."""

    def __init__(self, paths: list[Path], expected_rows: int | None) -> None:
        super().__init__(paths)
        self.expected_rows = expected_rows


def how_to_supply(src: Source, f: RawFile, raw_dir: str | None, download_dir: str | None,
                  revision: str | None) -> str:
    target = f"{raw_dir or '<data.raw_dir>'}/{f.path}"
    lines = [(f"source '{src.name}' ({src.description}) is missing: no {f.path} under "
              f"data.raw_dir={raw_dir!r} or data.real.download_dir={download_dir!r}.")]
    if f.url:
        lines.append(f"  Supply it: download {f.url} (pinned commit {revision}) to {target}")
    elif f.hf_repo:
        rev = revision or "<a commit of the HF repo; put it in data.real.pins." + src.name + ".revision>"
        lines.append(f"  Supply it: huggingface-cli download {f.hf_repo} {f.hf_file} --repo-type dataset "
                     f"--revision {rev} --local-dir {Path(target).parent}")
    else:
        lines.append(f"  Supply it: place the files matching {f.path} under {raw_dir or '<data.raw_dir>'} "
                     f"({src.origin})")
    if f.url or f.hf_repo:
        lines.append("  or set data.real.download: true and run the staging rules on a machine with internet "
                     "(`snakemake --cores 1 stage_real_data`); everything after staging runs offline.")
    return "\n".join(lines)


def _check(path: Path, src: Source, f: RawFile, sha: str | None, origin: str) -> str:
    got = sha256_file(path)
    if sha is not None and got != sha:
        key = f"data.real.pins.{src.name}.sha256" + (f" (a mapping; this file's key is {f.path})"
                                                     if len(src.files) > 1 else "")
        raise ChecksumError(f"{path}: sha256 {got} does not match the pinned {sha} for source '{src.name}'. "
                            f"The expected bytes are {origin}; replace the file with that download, or if the "
                            f"upstream file changed on purpose, set {key}.")
    return got


def download_http(url: str, dest: Path, sha256: str | None, *, timeout: float = 60, retries: int = 3) -> str:
    """GET ``url`` into ``dest`` atomically; verify ``sha256`` before the file appears."""
    last: Exception | None = None
    for attempt in range(retries):
        try:
            h = hashlib.sha256()
            with atomic_path(dest) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as out:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
                if sha256 is not None and h.hexdigest() != sha256:
                    raise ChecksumError(f"{url}: sha256 {h.hexdigest()} does not match the pinned {sha256}")
            return h.hexdigest()
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise MissingSourceError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last = exc
            time.sleep(min(2 ** attempt, 10) * 0.1)
    raise MissingSourceError(f"{url}: download failed after {retries} attempts: {last}")


def download_hf(f: RawFile, dest: Path, revision: str, sha256: str | None) -> str:
    return download_hf_resolved(f, dest, revision, sha256)[0]


SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})/")


def download_hf_resolved(f: RawFile, dest: Path, revision: str, sha256: str | None) -> tuple[str, str | None]:
    """``download_hf``, also returning the commit the file was read at (a branch such as ``main`` moves;
    the HF cache keeps each file under ``snapshots/<commit>/``), or None where the cache path does not say."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        cached = hf_hub_download(repo_id=str(f.hf_repo), filename=str(f.hf_file), repo_type="dataset",
                                 revision=revision)
    except (HfHubHTTPError, EntryNotFoundError) as exc:  # no such repo/revision/file, HTTP error, offline
        # huggingface_hub's own message is a URL and a status; say what was asked for and how to supply it
        raise MissingSourceError(
            f"HF dataset {f.hf_repo} revision {revision}: cannot download {f.hf_file} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())}). Check the repo, revision and file name "
            f"(the revision pin is data.real.pins.<source>.revision), or supply the file yourself: "
            f"huggingface-cli download {f.hf_repo} {f.hf_file} --repo-type dataset --revision {revision} "
            f"--local-dir {dest.parent}") from exc
    with atomic_path(dest) as tmp:
        shutil.copyfile(cached, tmp)
        got = sha256_file(tmp)
        if sha256 is not None and got != sha256:
            raise ChecksumError(f"HF {f.hf_repo}@{revision}/{f.hf_file}: sha256 {got} does not match the pinned {sha256}")
    m = SNAPSHOT.search(Path(cached).as_posix())
    return got, m.group(1) if m else None


def stage_source(src: Source, *, raw_dir: str | None, download_dir: str | None, download: bool = False,
                 pins: dict[str, Any] | None = None, allow_unpinned: bool = False,
                 github_base: str | None = None) -> dict[str, Any]:
    """Resolve every file of ``src``; returns what the data card records (paths, hashes, origins)."""
    files: list[dict[str, Any]] = []
    expected_rows = rows_of(src, pins)
    for f in src.files:
        revision, sha = pin_of(src, f, pins)
        origin = origin_of(f, revision)
        roots = [Path(d) for d in (raw_dir, download_dir) if d]
        if f.glob:
            found = next((sorted(r.glob(f.path)) for r in roots if sorted(r.glob(f.path))), [])
            if not found:
                raise MissingSourceError(how_to_supply(src, f, raw_dir, download_dir, revision))
            for p in found:
                got = sha256_file(p)
                files.append({"path": str(p), "layout": str(p.relative_to(p.parents[len(Path(f.path).parts) - 1])),
                              "sha256": got, "origin": local_origin(p, got, None),
                              "revision": None, "pinned": False, "downloaded": False})
            continue
        local = next((r / f.path for r in roots if (r / f.path).is_file()), None)
        downloaded = False
        if local is None:
            if not download or not (f.url or f.hf_repo):
                raise MissingSourceError(how_to_supply(src, f, raw_dir, download_dir, revision))
            if not download_dir:
                raise MissingSourceError(f"source '{src.name}': data.real.download is true but data.real.download_dir "
                                         "is not set")
            if sha is None and not allow_unpinned:
                raise ChecksumError(f"source '{src.name}': {origin} has no pinned sha256, so the download is refused. "
                                    f"Set data.real.pins.{src.name}.sha256 (and .revision for HF sources), or set "
                                    "data.real.allow_unpinned: true to accept and record whatever is downloaded.")
            local = Path(download_dir) / f.path
            if f.url:
                url = f.url if github_base is None else f.url.replace(GH, github_base.rstrip("/"), 1)
                download_http(url, local, sha)
                origin = f.url if url == f.url else f"{url} (a mirror of {f.url})"
            else:
                if revision is None and not allow_unpinned:
                    raise ChecksumError(f"source '{src.name}': HF {f.hf_repo} has no pinned revision; set "
                                        f"data.real.pins.{src.name}.revision")
                _, commit = download_hf_resolved(f, local, revision or "main", sha)
                # record the commit the bytes were read at, not the branch name that will move on
                revision = commit or revision or "main"
                origin = origin_of(f, revision)
            downloaded = True
        got = _check(local, src, f, sha, origin)
        if not downloaded:  # found on disk: only a pinned hash ties these bytes to the upstream revision
            origin = local_origin(local, got, origin if sha is not None else None)
            revision = revision if sha is not None else None
        files.append({"path": str(local), "layout": f.path, "sha256": got, "origin": origin, "revision": revision,
                      "pinned": sha is not None, "downloaded": downloaded})
    return {"source": src.name, "role": src.role, "licence": src.licence, "upstream": src.origin,
            "documented_rows": src.rows, "expected_rows": expected_rows, "files": files}


def is_available(src: Source, raw_dir: str | None, download_dir: str | None, download: bool) -> bool:
    """True when every file is local, or downloadable and downloads are on (decided before any job runs)."""
    roots = [Path(d) for d in (raw_dir, download_dir) if d]
    for f in src.files:
        if f.glob:
            if not any(list(r.glob(f.path)) for r in roots):
                return False
        elif not any((r / f.path).is_file() for r in roots) and not (download and (f.url or f.hf_repo)):
            return False
    return True


def staged_paths(staged: dict[str, Any]) -> StagedPaths:
    """The staged files, with the row count they are held to (a record from before it was kept: the registry's).

    Each file must still hold the bytes staging recorded: the workflow marks local sources ``ancient`` (a mirror
    that is copied afresh keeps its bytes but not its mtimes, and must not rerun every model), so a file whose
    bytes changed is caught here, by its hash, rather than read silently."""
    rows = staged["expected_rows"] if "expected_rows" in staged else staged.get("documented_rows")
    for f in staged["files"]:
        if "sha256" in f and Path(f["path"]).is_file() and (got := sha256_file(Path(f["path"]))) != f["sha256"]:
            raise ChecksumError(
                f"{f['path']}: sha256 {got} differs from the {f['sha256']} recorded when source "
                f"'{staged.get('source', '?')}' was staged, so the file changed since; stage it again "
                f"(snakemake --forcerun stage_real_source ...) and let what depends on it rerun")
    return StagedPaths([Path(f["path"]) for f in staged["files"]], rows)


def env_offline() -> None:
    """Everything after staging runs offline (HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
