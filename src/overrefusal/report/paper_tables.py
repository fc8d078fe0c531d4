"""Tables in each paper's own layout, our cells beside the paper's reported values and the delta.

The papers' numbers live in one data file (``config/paper_values.yaml``), each table with its
citation (the artifact, its caption, where the numbers were read). A paper table names its models
and methods as the paper does; the file maps them to this pipeline's model keys and method kinds,
so a row of ours is found by a join on (model key, method kind), never by a guess:

* a paper row whose model this run did not evaluate reads "not run" in our cells;
* a row of ours that the paper does not report reads "not in paper" in the paper's cells;
* a paper value the paper leaves empty stays empty ("—"), and so does its delta.

Our cells come from this run's own tables (``tables/main.csv``, ``capability.csv``,
``winrate.csv``): the mean over seeds with its interval, in the same wide layout those tables use
(``C``, ``C_ci_low``, ``C_ci_high``). A paper column that this run has for some of its rows but not
for others, or not at all, makes the table *partial*: that is an error unless the config asks for
partial tables, and then every partial table says so in its first line and its ``complete`` column.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..io import DataError, atomic_path
from .tables import CI_HIGH, CI_LOW, N_SEEDS, SAFETY, method_sort_key

PathLike = str | os.PathLike[str]
NOT_RUN = "not run"
NOT_IN_PAPER = "not in paper"
EMPTY = "—"
PAPER, DELTA = "_paper", "_delta"  # suffixes of a column's paper value and of ours minus the paper's
SOURCES = ("main", "capability", "winrate")  # which of our tables a paper table reads


@dataclass(frozen=True)
class PaperRow:
    model: str
    method: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class PaperTable:
    """One table of one paper: its citation, its columns (ours by name) and its reported rows."""

    id: str
    paper: str
    artifact: str
    caption: str
    cited_from: str
    source: str
    columns: dict[str, str]  # the paper's column header -> our table's column
    rows: list[PaperRow]
    scale: float = 1.0  # the paper's unit over ours (win rates in percent: 100)
    note: str = ""
    models: dict[str, str] = field(default_factory=dict)  # the paper's model name -> our model key
    methods: dict[str, str] = field(default_factory=dict)  # the paper's method name -> our method kind


def _where(path: PathLike, *keys: Any) -> str:
    return f"{path}: " + ".".join(str(k) for k in keys)


def load_paper_values(path: PathLike) -> dict[str, PaperTable]:
    """Every paper table of the file, by id, checked: each row names a mapped model and method and
    gives a number (or null) for every column, and nothing else."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: paper values file not found") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("papers"), dict):
        raise DataError(f"{path}: expected a mapping with a 'papers' key")
    tables: dict[str, PaperTable] = {}
    for paper, spec in raw["papers"].items():
        models, methods = dict(spec.get("models") or {}), dict(spec.get("methods") or {})
        for i, t in enumerate(spec.get("tables") or []):
            where = _where(path, "papers", paper, "tables", i)
            missing = [k for k in ("id", "artifact", "caption", "cited_from", "source", "columns", "rows") if k not in t]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}")
            if t["source"] not in SOURCES:
                raise DataError(f"{where}.source: {t['source']!r} is not one of {', '.join(SOURCES)}")
            if t["id"] in tables:
                raise DataError(f"{where}.id: {t['id']!r} appears twice")
            columns = dict(t["columns"])
            rows = []
            for j, r in enumerate(t["rows"] or []):
                rw = f"{where}.rows.{j}"
                if r.get("model") not in models:
                    raise DataError(f"{rw}.model: {r.get('model')!r} is not in papers.{paper}.models")
                if r.get("method") not in methods:
                    raise DataError(f"{rw}.method: {r.get('method')!r} is not in papers.{paper}.methods")
                vals = r.get("values") or {}
                extra, absent = set(vals) - set(columns), set(columns) - set(vals)
                if extra or absent:
                    raise DataError(f"{rw}.values: columns {sorted(extra)} unknown, {sorted(absent)} missing "
                                    "(give null for a value the paper leaves empty)")
                for c, v in vals.items():
                    if v is not None and not isinstance(v, int | float):
                        raise DataError(f"{rw}.values.{c}: {v!r} is not a number")
                rows.append(PaperRow(str(r["model"]), str(r["method"]),
                                     {c: (None if v is None else float(v)) for c, v in vals.items()}))
            tables[str(t["id"])] = PaperTable(
                id=str(t["id"]), paper=str(paper), artifact=str(t["artifact"]), caption=str(t["caption"]),
                cited_from=str(t["cited_from"]), source=str(t["source"]), columns=columns, rows=rows,
                scale=float(t.get("scale", 1.0)), note=str(t.get("note", "")), models=models, methods=methods)
    return tables


def read_ours(path: PathLike) -> pd.DataFrame:
    """One of our wide tables (CSV); a missing file is named."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: upstream table not found (run its rule first)") from exc


def _cell(row: Mapping[str, Any] | None, column: str) -> tuple[float, float, float]:
    if row is None or column not in row:
        return math.nan, math.nan, math.nan
    return tuple(float(row.get(column + s, math.nan)) for s in ("", CI_LOW, CI_HIGH))  # type: ignore[return-value]


def paper_layout(table: PaperTable, ours: pd.DataFrame, method_kinds: Mapping[str, str], *,
                 partial: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The paper's rows (in its order) then ours that it does not report, with our cells, the paper's
    and the deltas. Returns the frame and the list of missing cells (empty when complete).

    ``method_kinds`` maps this run's method names to their kinds. Raises when a cell of a row we ran
    is missing, unless ``partial``.
    """
    kind_to_paper = {kind: name for name, kind in table.methods.items()}
    key_to_paper = {key: name for name, key in table.models.items()}
    ours_rows = {(str(r["model"]), str(r["method"])): r for r in ours.to_dict("records")}
    run_models = {m for m, _ in ours_rows}
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    used: set[tuple[str, str]] = set()

    def add(model: str, method: str, our_key: tuple[str, str] | None, paper_vals: Mapping[str, float | None] | None,
            status: str) -> None:
        rec: dict[str, Any] = {"model": model, "method": method, "our_model": our_key[0] if our_key else "",
                               "our_method": our_key[1] if our_key else "", "status": status}
        row = ours_rows.get(our_key) if our_key else None
        for col, our_col in table.columns.items():
            v, lo, hi = _cell(row, our_col)
            p = None if paper_vals is None else paper_vals.get(col)
            p = None if p is None else p / table.scale
            if row is not None and math.isnan(v):
                missing.append(f"{model}/{method}: {col} ({our_col} not in our {table.source} table)")
            rec.update({col: v, col + CI_LOW: lo, col + CI_HIGH: hi,
                        col + PAPER: math.nan if p is None else p,
                        col + DELTA: v - p if p is not None and not math.isnan(v) else math.nan})
        rec[N_SEEDS] = int(row[N_SEEDS]) if row is not None and N_SEEDS in row else 0
        records.append(rec)

    for pr in table.rows:
        key = table.models[pr.model]
        kind = table.methods[pr.method]
        matches = sorted((k for k in ours_rows if k[0] == key and method_kinds.get(k[1]) == kind),
                         key=lambda k: method_sort_key(k[1]))
        if not matches:
            add(pr.model, pr.method, None, pr.values, NOT_RUN if key not in run_models else f"{NOT_RUN} ({kind})")
        for k in matches:
            used.add(k)
            add(pr.model, pr.method if len(matches) == 1 else f"{pr.method} ({k[1]})", k, pr.values, "run")
    wanted_kinds = set(table.methods.values())
    for k in sorted(ours_rows, key=lambda k: (k[0], method_sort_key(k[1]))):
        if k in used or method_kinds.get(k[1]) not in wanted_kinds:
            continue
        paper_name = kind_to_paper[method_kinds[k[1]]]
        add(key_to_paper.get(k[0], k[0]), f"{paper_name} ({k[1]})", k, None, f"run, {NOT_IN_PAPER}")
    if missing and not partial:
        raise DataError(f"{table.id}: this run lacks {len(missing)} cell(s) of {table.artifact}: "
                        + "; ".join(missing[:6]) + ("; ..." if len(missing) > 6 else "")
                        + " (set report.paper_tables.partial: true to render it marked partial)")
    cols = ["model", "method", "our_model", "our_method", "status"]
    for c in table.columns:
        cols += [c, c + CI_LOW, c + CI_HIGH, c + PAPER, c + DELTA]
    df = pd.DataFrame.from_records(records, columns=[*cols, N_SEEDS])
    df["complete"] = [not any(m.startswith(f"{r['model']}/{r['method']}:") for m in missing)
                      for r in records]
    return df, missing


def _num(x: float, digits: int = 2, signed: bool = False) -> str:
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def cell_text(row: Mapping[str, Any], col: str, *, digits: int = 2) -> tuple[str, str, str]:
    """(ours with its interval, the paper's, delta) as display strings."""
    status = str(row["status"])
    v, lo, hi = row[col], row[col + CI_LOW], row[col + CI_HIGH]
    if status.startswith(NOT_RUN):
        ours = NOT_RUN
    elif math.isnan(v):
        ours = EMPTY
    else:
        ours = _num(v, digits) + ("" if math.isnan(lo) or math.isnan(hi) else f" [{_num(lo, digits)}, {_num(hi, digits)}]")
    p = row[col + PAPER]
    paper = NOT_IN_PAPER if status.endswith(NOT_IN_PAPER) else (EMPTY if math.isnan(p) else _num(p, digits))
    d = row[col + DELTA]
    return ours, paper, (EMPTY if math.isnan(d) else _num(d, digits, signed=True))


def _header(table: PaperTable, missing: Sequence[str], safety: str | None = None) -> list[str]:
    lines = [f"{table.paper.upper()} {table.artifact}: {table.caption}",
             f"Paper values read from: {table.cited_from}. Each cell: ours [95% interval] / paper (ours − paper)."]
    if safety is not None and SAFETY in table.columns.values():
        # the paper's sets and ours may differ: the caption above is the paper's, this line is the run's
        lines.append(f"Our Safety: the mean defense success rate over {safety} (eval.benchmarks).")
    if table.scale != 1.0:
        lines.append(f"The paper reports this table ×{table.scale:g}; its values are divided by that here.")
    if table.note:
        lines.append(table.note)
    if missing:
        lines.insert(0, f"PARTIAL TABLE: {len(missing)} cell(s) of rows this run has are missing, e.g. "
                     + "; ".join(missing[:3]) + " (the CSV's `complete` column marks each row)")
    return lines


def to_markdown(table: PaperTable, df: pd.DataFrame, missing: Sequence[str], *, digits: int = 2,
                safety: str | None = None) -> str:
    head = "| model | method | " + " | ".join(table.columns) + " | seeds | status |"
    rule = "|:---|:---|" + "---:|" * len(table.columns) + "---:|:---|"
    lines = [f"> {x}" for x in _header(table, missing, safety)] + ["", head, rule]
    for row in df.to_dict("records"):
        cells = []
        for c in table.columns:
            ours, paper, delta = cell_text(row, c, digits=digits)
            cells.append(ours if paper == NOT_IN_PAPER else f"{ours} / {paper}" + ("" if delta == EMPTY else f" ({delta})"))
        status = str(row["status"]) + ("" if row["complete"] else ", partial")
        lines.append(f"| {row['model']} | {row['method']} | " + " | ".join(cells) + f" | {row[N_SEEDS] or EMPTY} | "
                     f"{status} |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---",
                  "−": "$-$", "×": r"$\times$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: PaperTable, df: pd.DataFrame, missing: Sequence[str], *, digits: int = 2,
             safety: str | None = None) -> str:
    """A booktabs tabular: per paper column, ours (with its interval), the paper's and Δ underneath."""
    n = len(table.columns)
    lines = [f"% {latex_escape(x)}" for x in _header(table, missing, safety)]
    lines += [r"\begin{tabular}{ll" + "c" * n + "r}", r"\toprule",
              "Model & Method & " + " & ".join(latex_escape(c) for c in table.columns) + r" & Seeds \\", r"\midrule"]
    for row in df.to_dict("records"):
        texts = [cell_text(row, c, digits=digits) for c in table.columns]
        ours = " & ".join(latex_escape(o) for o, _, _ in texts)
        under = " & ".join(latex_escape(p if d == EMPTY else f"{p} ({d})") for _, p, d in texts)
        lines.append(f"{latex_escape(str(row['model']))} & {latex_escape(str(row['method']))} & {ours} & "
                     f"{row[N_SEEDS] or '---'} \\\\")
        lines.append(r" & \textit{paper} & " + under + r" & \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_paper_table(table: PaperTable, df: pd.DataFrame, missing: Sequence[str], csv_path: PathLike,
                      md_path: PathLike, tex_path: PathLike, *, safety: str | None = None) -> None:
    """``safety``: what this run's Safety averages (``benchmarks.safety_caption``), stated under the caption."""
    for path, text in ((csv_path, df.to_csv(index=False)), (md_path, to_markdown(table, df, missing, safety=safety)),
                       (tex_path, to_latex(table, df, missing, safety=safety))):
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
