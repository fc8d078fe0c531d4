"""Agreement of refusal judges with the 2,250 human-labelled XSTest completions.

XSTest ships 5 models x 450 completions, each labelled by two annotators (``final_label`` is
``1_full_compliance`` / ``2_full_refusal`` / ``3_partial_refusal``), plus the labels its own string
matcher produced (``automated_evaluation_labels/*_streval.csv``). That makes an offline golden set:
every judge in this repository is scored against it, and ``xstest_strmatch_v1`` must reproduce the
archived labels row by row and the published 88.4% binary agreement.

Binary agreement = (judge says compliance) == (final_label is 1_full_compliance). Judge errors are
excluded from the denominator and counted, as in scoring. ``accuracy_3class`` compares the three
classes directly (a two-class judge can never be right on partial refusals). Safe/unsafe splits
follow XSTest: a prompt is unsafe when its ``type`` starts with ``contrast_``.

Command line: ``python -m overrefusal.judge_validation --judge xstest_strmatch_v1 --out table.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import atomic_path
from .judges import RefusalJudge, get_judge
from .judges.base import Label

COMPLETIONS_GLOB = "xstest/model_completions/xstest_v2_completions_*.csv"
STREVAL_GLOB = "xstest/automated_evaluation_labels/xstest_v2_completions_*_streval.csv"
XSTEST_TO_LABEL: dict[str, Label] = {
    "1_full_compliance": "compliance",
    "2_full_refusal": "refusal",
    "3_partial_refusal": "partial_refusal",
}
LABEL_TO_XSTEST: dict[str, str] = {v: k for k, v in XSTEST_TO_LABEL.items()}
DEFAULT_JUDGES: tuple[str, ...] = ("xstest_strmatch_v1", "xstest_strmatch_curly_v1", "jbb_substring_v1")
TABLE_COLUMNS: tuple[str, ...] = (
    "judge_id", "model", "n", "n_judge_errors", "agreement", "accuracy_3class",
    "human_compliance_rate", "judge_compliance_rate", "n_safe", "agreement_safe", "n_unsafe", "agreement_unsafe",
)


def default_data_dir() -> Path | None:
    """``$OVERREFUSAL_DATA_DIR`` if set, else ``<repo>/../shared/data`` if it exists, else None."""
    env = os.environ.get("OVERREFUSAL_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def _model_name(path: Path, suffix: str = "") -> str:
    m = re.fullmatch(rf"xstest_v2_completions_(.+){re.escape(suffix)}\.csv", path.name)
    if m is None:
        raise ValueError(f"unexpected XSTest completions file name: {path}")
    return m.group(1)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def load_xstest_completions(data_dir: str | os.PathLike[str]) -> dict[str, list[dict[str, str]]]:
    """``{model: rows}`` from ``<data_dir>/xstest/model_completions``; rows keep the CSV columns."""
    files = sorted(Path(data_dir).glob(COMPLETIONS_GLOB))
    if not files:
        raise FileNotFoundError(f"no {COMPLETIONS_GLOB} under {data_dir}")
    out: dict[str, list[dict[str, str]]] = {}
    for f in files:
        rows = _read_csv(f)
        for line, r in enumerate(rows, start=2):
            if r.get("final_label") not in XSTEST_TO_LABEL:
                raise ValueError(f"{f}: record {line}: final_label {r.get('final_label')!r} is not an XSTest label")
        out[_model_name(f)] = rows
    return out


def _agreement_row(
    judge_id: str, model: str, rows: Sequence[dict[str, str]], labels: Sequence[str | None]
) -> dict[str, Any]:
    judged = [(r, lab) for r, lab in zip(rows, labels, strict=True) if lab is not None]

    def agree(pairs: list[tuple[dict[str, str], str]]) -> float | None:
        if not pairs:
            return None
        return sum((lab == "compliance") == (r["final_label"] == "1_full_compliance") for r, lab in pairs) / len(pairs)

    safe = [(r, lab) for r, lab in judged if not r["type"].startswith("contrast_")]
    unsafe = [(r, lab) for r, lab in judged if r["type"].startswith("contrast_")]
    n = len(judged)
    return {
        "judge_id": judge_id,
        "model": model,
        "n": len(rows),
        "n_judge_errors": len(rows) - n,
        "agreement": agree(judged),
        "accuracy_3class": sum(XSTEST_TO_LABEL[r["final_label"]] == lab for r, lab in judged) / n if n else None,
        "human_compliance_rate": sum(r["final_label"] == "1_full_compliance" for r in rows) / len(rows),
        "judge_compliance_rate": sum(lab == "compliance" for _, lab in judged) / n if n else None,
        "n_safe": len(safe),
        "agreement_safe": agree(safe),
        "n_unsafe": len(unsafe),
        "agreement_unsafe": agree(unsafe),
    }


def judge_labels(judge: RefusalJudge, rows: Sequence[dict[str, str]]) -> list[str | None]:
    """The judge's label for each row's completion (None for a judge error)."""
    return [j.label for j in judge.judge_many([(r["prompt"], r["completion"]) for r in rows])]


def validate_judge(judge: RefusalJudge, data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One table row per XSTest model (sorted by name) plus an ``overall`` row pooling all 2,250."""
    data = load_xstest_completions(data_dir)
    table: list[dict[str, Any]] = []
    all_rows: list[dict[str, str]] = []
    all_labels: list[str | None] = []
    for model, rows in data.items():
        labels = judge_labels(judge, rows)
        table.append(_agreement_row(judge.id, model, rows, labels))
        all_rows += rows
        all_labels += labels
    table.append(_agreement_row(judge.id, "overall", all_rows, all_labels))
    return table


def validate_judges(names: Sequence[str], data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``validate_judge`` for each registered judge name, concatenated."""
    return [row for name in names for row in validate_judge(get_judge(name), data_dir)]


def compare_to_archived_strmatch(
    judge: RefusalJudge, data_dir: str | os.PathLike[str]
) -> tuple[int, list[dict[str, str]]]:
    """Compare ``judge`` with XSTest's archived string-match labels row by row.

    Returns ``(n_compared, mismatches)``; each mismatch names the model, id, both labels (XSTest
    spelling, ``error`` for a judge error) and the completion's first 80 characters.
    """
    files = sorted(Path(data_dir).glob(STREVAL_GLOB))
    if not files:
        raise FileNotFoundError(f"no {STREVAL_GLOB} under {data_dir}")
    n = 0
    mismatches: list[dict[str, str]] = []
    for f in files:
        rows = _read_csv(f)
        for r, lab in zip(rows, judge_labels(judge, rows), strict=True):
            n += 1
            ours = LABEL_TO_XSTEST[lab] if lab is not None else "error"
            if ours != r["strmatch_label"]:
                mismatches.append({
                    "model": _model_name(f, "_streval"), "id": r["id"], "ours": ours,
                    "archived": r["strmatch_label"], "completion": r["completion"][:80],
                })
    return n, mismatches


def _fmt(v: Any, digits: int | None = 4) -> str:
    """Blank for None; floats rounded for reading (``digits``) or in full (``None``) for CSV."""
    if v is None:
        return ""
    if isinstance(v, float) and digits is not None:
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A GitHub Markdown table; rates as fractions with 4 decimals, missing values blank."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write ``rows`` atomically as ``.csv`` (full precision) or ``.md`` (4 decimals) by suffix."""
    p = Path(path)
    if p.suffix not in (".csv", ".md"):
        raise ValueError(f"{p}: table suffix must be .csv or .md")
    with atomic_path(p) as tmp:
        if p.suffix == ".csv":
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(TABLE_COLUMNS), lineterminator="\n")
                w.writeheader()
                w.writerows({c: _fmt(r.get(c), None) for c in TABLE_COLUMNS} for r in rows)
        else:
            tmp.write_text(to_markdown(rows), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Agreement of refusal judges with XSTest human labels.")
    ap.add_argument("--judge", action="append", dest="judges",
                    help=f"judge name, repeatable (default: {', '.join(DEFAULT_JUDGES)})")
    ap.add_argument("--data-dir", default=None, help="default: $OVERREFUSAL_DATA_DIR, else <repo>/../shared/data")
    ap.add_argument("--out", action="append", default=[], help="table path ending .csv or .md (repeatable)")
    args = ap.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    if data_dir is None:
        ap.error("no data dir: pass --data-dir or set OVERREFUSAL_DATA_DIR")
    rows = validate_judges(args.judges or list(DEFAULT_JUDGES), data_dir)
    for out in args.out:
        write_table(rows, out)
    sys.stdout.write(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
