"""Tables in the papers' layouts beside the papers' values (overrefusal.report.paper_tables)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from overrefusal.io import DataError
from overrefusal.report.paper_tables import (
    NOT_IN_PAPER,
    NOT_RUN,
    load_paper_values,
    paper_layout,
    read_ours,
    to_latex,
    to_markdown,
    write_paper_table,
)

REPO = Path(__file__).resolve().parents[2]

VALUES = {
    "papers": {
        "dcr": {
            "models": {"Qwen2.5-1.5B": "qwen2.5-1.5b", "LLaMA-3-8B": "llama-3-8b"},
            "methods": {"STL": "stl", "DCR": "dcr", "SCANS": "scans"},
            "tables": [
                {"id": "main", "artifact": "Table 1", "caption": "Compliance & safety", "cited_from": "p. 8",
                 "source": "main", "columns": {"XS": "XS", "Safety": "Safety"},
                 "rows": [
                     {"model": "Qwen2.5-1.5B", "method": "STL", "values": {"XS": 0.73, "Safety": 0.72}},
                     {"model": "Qwen2.5-1.5B", "method": "DCR", "values": {"XS": 0.98, "Safety": None}},
                     {"model": "LLaMA-3-8B", "method": "STL", "values": {"XS": 0.79, "Safety": 0.93}},
                 ]},
                {"id": "win", "artifact": "Table 3", "caption": "Win rate", "cited_from": "p. 9", "source": "winrate",
                 "scale": 100, "columns": {"Win rate": "win_rate"},
                 "rows": [{"model": "Qwen2.5-1.5B", "method": "DCR", "values": {"Win rate": 51.8}}]},
            ],
        }
    }
}
KINDS = {"stl": "stl", "dcr_stl": "dcr", "scans": "scans", "base": "base"}


def _ours() -> pd.DataFrame:
    """Our main table (wide: C, C_ci_low, C_ci_high) for Qwen2.5-1.5B: STL, DCR and SCANS."""
    rows = [("stl", 0.70, 0.75), ("dcr_stl", 0.90, 0.70), ("scans", 0.85, 0.60), ("base", 0.95, 0.10)]
    return pd.DataFrame.from_records([
        {"model": "qwen2.5-1.5b", "method": m, "XS": xs, "XS_ci_low": xs - 0.05, "XS_ci_high": xs + 0.05,
         "Safety": sf, "Safety_ci_low": sf - 0.1, "Safety_ci_high": sf + 0.1, "n_seeds": 3} for m, xs, sf in rows])


@pytest.fixture
def values(tmp_path: Path) -> Path:
    path = tmp_path / "paper_values.yaml"
    path.write_text(yaml.safe_dump(VALUES, sort_keys=False))
    return path


def test_rows_join_on_model_key_and_method_kind(values: Path) -> None:
    table = load_paper_values(values)["main"]
    df, missing = paper_layout(table, _ours(), KINDS)
    assert missing == []
    by = {(r["model"], r["method"]): r for r in df.to_dict("records")}
    stl = by[("Qwen2.5-1.5B", "STL")]
    assert stl["our_method"] == "stl" and stl["status"] == "run"
    assert stl["XS"] == pytest.approx(0.70) and stl["XS_paper"] == pytest.approx(0.73)
    assert stl["XS_delta"] == pytest.approx(0.70 - 0.73)
    assert stl["XS_ci_low"] == pytest.approx(0.65)
    dcr = by[("Qwen2.5-1.5B", "DCR")]
    assert dcr["our_method"] == "dcr_stl"
    assert math.isnan(dcr["Safety_paper"]) and math.isnan(dcr["Safety_delta"])  # the paper leaves it empty
    llama = by[("LLaMA-3-8B", "STL")]
    assert llama["status"] == NOT_RUN and math.isnan(llama["XS"]) and llama["XS_paper"] == pytest.approx(0.79)
    scans = by[("Qwen2.5-1.5B", "SCANS (scans)")]  # ours, not reported by the paper
    assert scans["status"].endswith(NOT_IN_PAPER) and math.isnan(scans["XS_paper"])
    assert ("Qwen2.5-1.5B", "base") not in by and not any("base" in k[1] for k in by)  # not a kind of the table
    assert [k for k in by][:3] == [("Qwen2.5-1.5B", "STL"), ("Qwen2.5-1.5B", "DCR"), ("LLaMA-3-8B", "STL")]


def test_markdown_and_latex_show_ours_paper_and_delta(values: Path) -> None:
    table = load_paper_values(values)["main"]
    df, missing = paper_layout(table, _ours(), KINDS)
    md = to_markdown(table, df, missing)
    assert "| Qwen2.5-1.5B | STL | 0.70 [0.65, 0.75] / 0.73 (-0.03) | 0.75 [0.65, 0.85] / 0.72 (+0.03) | 3 | run |" in md
    assert "| LLaMA-3-8B | STL | not run / 0.79 | not run / 0.93 | — | not run |" in md
    assert "| Qwen2.5-1.5B | SCANS (scans) | 0.85 [0.80, 0.90] | 0.60 [0.50, 0.70] | 3 | run, not in paper |" in md
    assert "Table 1" in md and "p. 8" in md and "PARTIAL" not in md
    tex = to_latex(table, df, missing)
    assert r"\begin{tabular}{llccr}" in tex and r"Compliance \& safety" in tex
    assert r"0.70 [0.65, 0.75] & 0.75 [0.65, 0.85] & 3 \\" in tex
    assert r"\textit{paper} & 0.73 (-0.03) & 0.72 (+0.03) & \\" in tex


def test_scale_converts_the_papers_percentages(values: Path) -> None:
    table = load_paper_values(values)["win"]
    ours = pd.DataFrame.from_records([{"model": "qwen2.5-1.5b", "method": "dcr_stl", "win_rate": 0.55,
                                       "win_rate_ci_low": 0.5, "win_rate_ci_high": 0.6, "n_seeds": 2}])
    df, _ = paper_layout(table, ours, KINDS)
    assert df.loc[0, "Win rate_paper"] == pytest.approx(0.518)
    assert df.loc[0, "Win rate_delta"] == pytest.approx(0.55 - 0.518)
    assert "×100" in to_markdown(table, df, [])


def test_missing_cells_fail_unless_partial_is_asked_for(values: Path, tmp_path: Path) -> None:
    table = load_paper_values(values)["main"]
    ours = _ours().drop(columns=["Safety", "Safety_ci_low", "Safety_ci_high"])
    with pytest.raises(DataError, match=r"Qwen2.5-1.5B/STL: Safety \(Safety not in our main table\).*partial: true"):
        paper_layout(table, ours, KINDS)
    df, missing = paper_layout(table, ours, KINDS, partial=True)
    assert len(missing) == 3 and not df["complete"].iloc[0]
    assert bool(df.set_index("method").loc["STL", "complete"].iloc[-1]) is True  # LLaMA-3-8B STL: not run, complete
    write_paper_table(table, df, missing, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("> PARTIAL TABLE: 3 cell(s)") and "run, partial" in md
    assert (tmp_path / "t.tex").read_text().startswith("% PARTIAL TABLE")
    assert list(pd.read_csv(tmp_path / "t.csv")["complete"]) == list(df["complete"])


def test_missing_upstream_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"tables/main.csv: upstream table not found"):
        read_ours(tmp_path / "tables" / "main.csv")


@pytest.mark.parametrize("edit, message", [
    (lambda v: v["tables"][0]["rows"][0].update(model="Qwen-9B"), r"tables\.0\.rows\.0\.model: 'Qwen-9B' is not in"),
    (lambda v: v["tables"][0]["rows"][0]["values"].pop("XS"), r"rows\.0\.values: .*\['XS'\] missing"),
    (lambda v: v["tables"][0]["rows"][0]["values"].update(XS="0.73"), r"rows\.0\.values\.XS: '0.73' is not a number"),
    (lambda v: v["tables"][0].update(source="appendix"), r"tables\.0\.source: 'appendix' is not one of"),
    (lambda v: v["tables"][1].update(id="main"), r"tables\.1\.id: 'main' appears twice"),
    (lambda v: v["tables"][0].pop("cited_from"), r"tables\.0: missing cited_from"),
])
def test_bad_values_file_names_the_key(tmp_path: Path, edit, message: str) -> None:
    raw = yaml.safe_load(yaml.safe_dump(VALUES))
    edit(raw["papers"]["dcr"])
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match=message) as err:
        load_paper_values(path)
    assert str(path) in str(err.value)


def test_the_shipped_values_file_loads_and_cites_every_table() -> None:
    tables = load_paper_values(REPO / "config" / "paper_values.yaml")
    assert {"dcr_main", "dcr_winrate", "dcr_capability", "tbr_main", "tbr_capability"} <= set(tables)
    assert all(t.cited_from and t.artifact and t.caption for t in tables.values())
    main = tables["dcr_main"]
    assert len(main.rows) == 8 and main.rows[0].values["XS"] == 0.73  # DCR Table 1, Qwen2.5-1.5B STL
    assert all(not t.rows and t.note for t in tables.values() if t.paper == "tbr")  # no TBR numbers in our sources


def test_safety_names_the_sets_this_run_averages(values: Path, tmp_path: Path) -> None:
    from overrefusal.benchmarks import safety_caption

    table = load_paper_values(values)["main"]
    df, missing = paper_layout(table, _ours(), KINDS)
    safety = safety_caption(["xstest_safe", "advbench", "xstest_unsafe", "strongreject"])
    assert safety == "2 harmful benchmarks: AdvBench and StrongREJECT"  # controls and over-refusal sets are not
    write_paper_table(table, df, missing, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex", safety=safety)
    line = "Our Safety: the mean defense success rate over 2 harmful benchmarks: AdvBench and StrongREJECT"
    assert f"> {line} (eval.benchmarks)." in (tmp_path / "t.md").read_text()
    assert f"% {line} (eval.benchmarks)." in (tmp_path / "t.tex").read_text()
    # a table without a Safety column says nothing about it
    win = load_paper_values(values)["win"]
    ours = pd.DataFrame.from_records([{"model": "qwen2.5-1.5b", "method": "dcr_stl", "win_rate": 0.55,
                                       "win_rate_ci_low": 0.5, "win_rate_ci_high": 0.6, "n_seeds": 2}])
    wdf, _ = paper_layout(win, ours, KINDS)
    assert "Our Safety" not in to_markdown(win, wdf, [], safety=safety)


def test_the_shipped_caption_names_no_sets_the_paper_does_not() -> None:
    """The DCR summary gives only "five harmful benchmarks": the caption must not name sets of its own."""
    from overrefusal.benchmarks import BENCHMARKS

    caption = load_paper_values(REPO / "config" / "paper_values.yaml")["dcr_main"].caption
    named = [b.paper_column for b in BENCHMARKS.values() if b.suite == "harmful" and b.paper_column in caption]
    assert "five harmful benchmarks" in caption and named == [] and "I-" not in caption
