"""README blocks rendered from ``results/``, so no number in the README is typed by hand.

A block is delimited by two HTML comments that name the file it shows::

    <!-- results: results/toy/tables/summary.md -->
    | model | method | ... |
    <!-- /results -->

``render`` replaces every block's body with the file's current content; ``stale_blocks`` lists
the blocks whose body differs (the test that keeps README and ``results/`` in step). The rule
``readme`` (``snakemake readme``) calls ``render`` after the tables it shows are built.
"""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- results: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.DOTALL)


def blocks(text: str) -> list[tuple[str, str]]:
    """``(path, body)`` of every block, in order."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


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
