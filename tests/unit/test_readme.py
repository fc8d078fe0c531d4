"""The README's numbers are the committed results/ files, rendered, never typed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from overrefusal.report.readme import blocks, render, stale_blocks

REPO = Path(__file__).resolve().parents[2]


def test_readme_blocks_equal_the_results_they_name() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    named = [p for p, _ in blocks(text)]
    assert "results/toy/tables/summary.md" in named and "results/toy/tables/main.md" in named
    assert "results/toy/tables/dcr_sweep.md" in named
    assert stale_blocks(text, REPO) == [], "README is out of step with results/: run `snakemake --cores all readme`"


def test_render_replaces_only_block_bodies(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- results: t.md -->\nold\n<!-- /results -->\noutro 0.5\n"
    out = render(text, tmp_path)
    assert out == "intro\n<!-- results: t.md -->\n| a |\n|---|\n| 1 |\n<!-- /results -->\noutro 0.5\n"
    assert stale_blocks(text, tmp_path) == ["t.md"] and stale_blocks(out, tmp_path) == []
    assert render(out, tmp_path) == out


def test_a_block_naming_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.md"):
        render("<!-- results: nope.md -->\n<!-- /results -->\n", tmp_path)
