"""README and docs blocks rendered from committed result files, so no number in them is typed by hand.

A block is delimited by two HTML comments that name the file it shows::

    <!-- results: results/published/toy/tables/summary.md -->
    | model | method | ... |
    <!-- /results -->

``render`` replaces every block's body with the file's current content; ``stale_blocks`` lists the blocks whose
body differs (the test that keeps the pages and the committed files in step).

Runs write only to ``results/<name>/``, which git ignores; the committed copies of a run's tables and figures
live in ``results/published/<name>/``, which no run writes. So a run on another machine, with other numbers,
leaves every tracked file as it was. Two targets connect the two trees:

- ``snakemake readme`` (``preview``): every page rendered with *this run's* files in place of the published ones,
  into ``results/<name>/readme/``; the pages themselves are not touched.
- ``snakemake publish`` (``publish``): copies the run's tables, figures and samples into
  ``results/published/<name>/`` and renders the pages in place from them: the one step that changes tracked
  files, and only when asked for.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

BLOCK = re.compile(r"(<!-- results: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.DOTALL)
PUBLISHED = "results/published"
# What `publish` copies from a run, relative to results/<name>/: what the pages show, and the files beside it.
PUBLISHED_PARTS = ("tables", "figures", "samples.md", "data/data_card.md", "data/data_card.json", "tuning", "judges")


def blocks(text: str) -> list[tuple[str, str]]:
    """``(path, body)`` of every block, in order."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


def pages(root: Path) -> list[Path]:
    """The pages that may hold blocks: the README and every docs page."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _content(root: Path, rel: str) -> str:
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"README block names {rel}, which does not exist under {root}: build it first")
    body = path.read_text(encoding="utf-8")
    return body if body.endswith("\n") else body + "\n"


def render(text: str, root: Path) -> str:
    """``text`` with every block's body replaced by its file under ``root``."""
    return BLOCK.sub(lambda m: m.group(1) + _content(root, m["path"]) + m.group(4), text)


def stale_blocks(text: str, root: Path) -> list[str]:
    """Paths of the blocks whose body is not their file's content."""
    return [path for path, body in blocks(text) if body != _content(root, path)]


def run_path(published: str, name: str) -> str | None:
    """The run's own file behind a published path (``results/published/<name>/X`` -> ``results/<name>/X``)."""
    prefix = f"{PUBLISHED}/{name}/"
    return f"results/{name}/{published[len(prefix):]}" if published.startswith(prefix) else None


def run_files(root: Path, name: str) -> list[str]:
    """Every run file that some page's block shows, as published copies of run ``name``."""
    found = {run_path(p, name) for page in pages(root) if page.is_file()
             for p, _ in blocks(page.read_text(encoding="utf-8"))}
    return sorted(p for p in found if p)


def preview(text: str, root: Path, name: str) -> str:
    """``text`` with each block of run ``name``'s published copies rendered from the run's own file instead.

    Such a block then names the run's file, so the preview says where each table came from. Blocks of other
    runs, of files no run writes (benchmarks, judges) and of files this run has not written (the DCR sweep's,
    until it is run) keep their committed bodies."""

    def sub(m: re.Match[str]) -> str:
        run = run_path(m["path"], name)
        if run is None or not (root / run).is_file():
            return m.group(0)
        return f"<!-- results: {run} -->\n" + _content(root, run) + m.group(4)

    return BLOCK.sub(sub, text)


def publish(root: Path, name: str, parts: tuple[str, ...] | list[str] = PUBLISHED_PARTS) -> list[str]:
    """Copy run ``name``'s published ``parts`` into ``results/published/<name>/``; the copied paths, relative to it.

    Files the run did not write this time (the DCR sweep, say, which is its own target) keep their earlier
    published copies: publishing adds and overwrites, it never deletes."""
    src, dest = root / "results" / name, root / PUBLISHED / name
    copied: list[str] = []
    for part in parts:
        path = src / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            rel = f.relative_to(src)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / rel)
            copied.append(rel.as_posix())
    return copied


def main(argv: list[str] | None = None) -> int:
    """``python -m overrefusal.report.readme [PAGE...]``: render pages in place from the committed files."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("pages", nargs="*", type=Path, help="default: README.md and docs/*.md under --root")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the directory the blocks' paths start from")
    args = ap.parse_args(argv)
    for page in args.pages or pages(args.root):
        page.write_text(render(page.read_text(encoding="utf-8"), args.root), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
