"""Make this run's tables and figures the committed ones (rule publish, never part of `all`).

Copies them into results/published/<name>/, records the machine they were computed on beside them, and renders
the README and docs pages from the published copies: the only step of the workflow that changes tracked files."""
import fcntl
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import atomic_path
from overrefusal.provenance import cpu_model
from overrefusal.report.readme import PUBLISHED, publish, render
from overrefusal.runtime import rule_context


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    root, name = Path(smk.params.root), smk.params.name
    # before copying, which itself changes the tree
    commit, dirty = _git(root, "rev-parse", "HEAD"), _git(root, "status", "--porcelain") not in ("", "unknown")
    # publish_tune_grid jobs may run at once: each copies, then renders from every copy so far, one at a time
    (root / ".snakemake").mkdir(exist_ok=True)
    with open(root / ".snakemake" / "publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        parts = smk.params.get("parts")
        copied = publish(root, name, parts) if parts else publish(root, name)
        try:
            torch = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch = "not installed"
        record = (f"# results/published/{name}\n\n"
                  f"Published by `snakemake {smk.rule}` from `results/{name}/` ({len(copied)} files"
                  f"{', of ' + ', '.join(parts) if parts else ''}).\n\n"
                  f"- machine: {cpu_model()}, os.cpu_count() {os.cpu_count()}, {platform.system()} {platform.machine()}\n"
                  f"- software: Python {platform.python_version()}, torch {torch}\n"
                  f"- code: commit {commit}{' (with uncommitted changes)' if dirty else ''}\n")
        with atomic_path(root / PUBLISHED / name / smk.params.get("record", "published.md")) as tmp:
            tmp.write_text(record, encoding="utf-8")
        for page in smk.params.pages:
            path = root / page
            path.write_text(render(path.read_text(encoding="utf-8"), root), encoding="utf-8")
    with atomic_path(smk.output[0]) as tmp:
        tmp.write_text("".join(f"{c}\n" for c in copied), encoding="utf-8")
    log.info("published %d files of results/%s; rendered %s", len(copied), name, ", ".join(smk.params.pages))
