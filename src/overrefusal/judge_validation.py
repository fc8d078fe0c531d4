"""Agreement of refusal judges with human refusal labels, on any labelled set the config describes.

A labelled set (``eval.judge_validation.sets.<name>``) is a glob of files under ``data.raw_dir`` (csv,
tsv or jsonl), which column holds the prompt, the response, the human label and optionally a subgroup
and the model, how each raw label maps to a judge label, where the model's name comes from, and which
prompts should be refused. ``XSTEST_SET`` is the default: XSTest's 5 models x 450 completions, each
labelled by two annotators (``final_label``), on which ``xstest_strmatch_v1`` must reproduce the
published 88.4% binary agreement (and, row by row, the labels XSTest's own string matcher archived in
``automated_evaluation_labels/*_streval.csv``).

Binary agreement = (judge says compliance) == (human says compliance). Judge errors are excluded from
the denominator and counted, as in scoring. ``accuracy_3class`` compares the labels themselves (a
two-class judge can never be right on partial refusals). Rows are per model, per subgroup (pooled over
models) and pooled over everything (model and subgroup ``all``, last); the confusion table counts
human label x judge label per model and pooled.

Command line: ``python -m overrefusal.judge_validation --judge xstest_strmatch_v1 --out table.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from .io import atomic_path
from .judges import RefusalJudge, get_judge
from .judges.base import LABELS, Label

Format = Literal["csv", "tsv", "jsonl", "json"]
FORMATS: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "json"}
# A raw label mapped here leaves the row out of every table, counted per raw label (``LoadedSet.excluded``):
# a source's ambiguous classes (a partial answer, "redirected") are neither refusal nor compliance.
EXCLUDED = "excluded"
# ``columns.label: "@response"`` with a list of response columns: the column a response came from is its raw
# label (a preference file pairs a chosen and a rejected response in one record).
FROM_RESPONSE_COLUMN = "@response"
ALL = "all"  # the model / subgroup cell of a row pooled over every model / subgroup

# The default labelled set; config.yaml's eval.judge_validation.sets.xstest spells out the same (tested).
XSTEST_SET: dict[str, Any] = {
    "files": "xstest/model_completions/xstest_v2_completions_*.csv",
    "columns": {"prompt": "prompt", "response": "completion", "label": "final_label", "subgroup": "type"},
    "labels": {"1_full_compliance": "compliance", "2_full_refusal": "refusal", "3_partial_refusal": "partial_refusal"},
    "model_from": "filename",
    "unsafe": {"column": "type", "prefix": "contrast_"},
}
DEFAULT_SETS: dict[str, dict[str, Any]] = {"xstest": XSTEST_SET}
COMPLETIONS_GLOB = XSTEST_SET["files"]
STREVAL_GLOB = "xstest/automated_evaluation_labels/xstest_v2_completions_*_streval.csv"
XSTEST_TO_LABEL: dict[str, Label] = dict(XSTEST_SET["labels"])
LABEL_TO_XSTEST: dict[str, str] = {v: k for k, v in XSTEST_TO_LABEL.items()}
DEFAULT_JUDGES: tuple[str, ...] = ("xstest_strmatch_v1", "xstest_strmatch_curly_v1", "jbb_substring_v1")
TABLE_COLUMNS: tuple[str, ...] = (
    "dataset", "judge_id", "model", "subgroup", "n", "n_judge_errors", "agreement", "accuracy_3class",
    "human_compliance_rate", "judge_compliance_rate", "n_safe", "agreement_safe", "n_unsafe", "agreement_unsafe",
    "n_excluded",
)
JUDGE_ERROR = "error"
CONFUSION_COLUMNS: tuple[str, ...] = (
    "dataset", "judge_id", "model", "human_label", *(f"judge_{lab}" for lab in (*LABELS, JUDGE_ERROR)), "n",
)


class LabelledSetError(ValueError):
    """A labelled set's file does not match its description; the message names the file and line."""


@dataclass(frozen=True)
class LabelledRow:
    prompt: str
    response: str
    label: Label  # the human label, mapped
    model: str
    subgroup: str | None
    unsafe: bool | None  # None: the set does not say which prompts should be refused
    where: str  # file:line, for messages


@dataclass(frozen=True)
class LabelledSet:
    """One entry of ``eval.judge_validation.sets`` (see overrefusal/schemas/config.schema.yaml, ``$defs.labelled_set``)."""

    name: str
    files: str
    columns: Mapping[str, str]
    labels: Mapping[str, str]  # raw label -> a judge label or EXCLUDED
    model_from: Literal["filename", "column", "constant"]
    format: Format | None = None
    unsafe: Mapping[str, Any] | None = None
    enabled: bool = True
    model: str | None = None  # model_from: constant
    family: str | None = None  # sets that share prompts or annotators are held out together (None: the name)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", glob_regex(self.files))

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> LabelledSet:
        problems = labelled_set_problems(spec)
        if problems:
            raise ValueError(f"labelled set {name!r}: " + "; ".join(problems))
        return cls(name=name, files=spec["files"], columns=dict(spec["columns"]),
                   labels={str(k): v for k, v in spec["labels"].items()}, model_from=spec["model_from"],
                   format=spec.get("format"), unsafe=spec.get("unsafe"), enabled=spec.get("enabled", True),
                   model=spec.get("model"), family=spec.get("family"))

    @property
    def group(self) -> str:
        """The leave-one-source-out fold this set belongs to."""
        return self.family or self.name

    def response_columns(self) -> list[str]:
        col = self.columns["response"]
        return list(col) if isinstance(col, (list, tuple)) else [col]

    def paths(self, data_dir: str | os.PathLike[str]) -> list[Path]:
        return sorted(p for p in Path(data_dir).glob(self.files) if p.is_file())

    def model_of(self, path: Path, data_dir: str | os.PathLike[str]) -> str:
        """``model_from: filename``: what the glob's wildcards matched, joined by '/' (the file's stem when the
        glob has none)."""
        rel = path.relative_to(data_dir).as_posix()
        m = self._pattern.fullmatch(rel)
        parts = [g for g in m.groups() if g] if m else []
        return "/".join(parts) if parts else path.stem

    def file_format(self, path: Path) -> Format:
        if self.format is not None:
            return self.format
        if path.suffix.lower() not in FORMATS:
            raise LabelledSetError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; set the set's "
                                   f"format ({', '.join(sorted(set(FORMATS.values())))})")
        return FORMATS[path.suffix.lower()]


def labelled_set_problems(spec: Mapping[str, Any]) -> list[str]:
    """What the schema cannot say about one set (the config check and the command line share it)."""
    problems = []
    for key in ("files", "columns", "labels", "model_from"):
        if key not in spec:
            problems.append(f"{key} is required")
    if problems:
        return problems
    if Path(spec["files"]).is_absolute() or ".." in Path(spec["files"]).parts:
        problems.append(f"files: {spec['files']!r} must be a glob inside data.raw_dir (relative, no '..')")
    for key in ("prompt", "response", "label"):
        if key not in spec["columns"]:
            problems.append(f"columns.{key} is required")
    if spec["model_from"] == "column" and "model" not in spec["columns"]:
        problems.append("model_from: column needs columns.model")
    if spec["model_from"] == "constant" and not spec.get("model"):
        problems.append("model_from: constant needs model (the name of the model that wrote every response)")
    bad = {k: v for k, v in spec["labels"].items() if v not in (*LABELS, EXCLUDED)}
    if bad:
        problems.append(f"labels: {bad} map to no judge label; valid: {', '.join((*LABELS, EXCLUDED))}")
    if not any(v != EXCLUDED for v in spec["labels"].values()):
        problems.append("labels: every value is excluded; a set needs at least one judged label")
    label_col = spec["columns"]["label"]
    if label_col == FROM_RESPONSE_COLUMN and not isinstance(spec["columns"]["response"], (list, tuple)):
        problems.append(f"columns.label {FROM_RESPONSE_COLUMN} needs a list of response columns")
    unsafe = spec.get("unsafe")
    if unsafe is not None and "prefix" not in unsafe and "values" not in unsafe:
        problems.append("unsafe needs prefix or values (which values of unsafe.column mark a should-refuse prompt)")
    return problems


def enabled_sets(sets: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sets to validate on (``enabled: false`` leaves one out), without the switch itself."""
    return {name: {k: v for k, v in spec.items() if k != "enabled"}
            for name, spec in sets.items() if spec.get("enabled", True)}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching what ``Path.glob(pattern)`` matches, with one group per wildcard (``*``, ``**``, ``?``,
    ``[...]``), so the part of a file name that names its model can be read back."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:(.*)/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append("(.*)")
            i += 2
        elif pattern[i] == "*":
            out.append("([^/]*)")
            i += 1
        elif pattern[i] == "?":
            out.append("([^/])")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"([{body.replace(chr(92), chr(92) * 2)}])")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def default_data_dir() -> Path | None:
    """``$OVERREFUSAL_DATA_DIR`` if set, else ``<repo>/../shared/data`` if it exists, else None."""
    env = os.environ.get("OVERREFUSAL_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def _records(path: Path, fmt: Format) -> Iterator[tuple[int, dict[Any, Any]]]:
    """``(line, record)`` for each record: the physical line it starts on, and its columns (csv/tsv: the
    header's; a short row lacks the trailing ones). A UTF-8 byte-order mark would otherwise stick to the first
    column's name."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        if fmt == "json":
            # One array of objects: a record's line is where its object starts in the file (json.load keeps
            # no positions, so the raw decoder walks the array).
            text = fh.read()
            dec = json.JSONDecoder()
            pos = text.find("[")
            if pos < 0:
                raise LabelledSetError(f"{path}:1: a JSON array of objects expected")
            pos += 1
            line, counted = 1, 0
            while True:
                while pos < len(text) and text[pos] in " \t\r\n,":
                    pos += 1
                if pos >= len(text) or text[pos] == "]":
                    return
                line += text.count("\n", counted, pos)
                counted = pos
                try:
                    rec, pos = dec.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    raise LabelledSetError(f"{path}:{line}: not JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise LabelledSetError(f"{path}:{line}: a JSON object expected, got {type(rec).__name__}")
                yield line, rec
        if fmt == "jsonl":
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise LabelledSetError(f"{path}:{line}: not JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise LabelledSetError(f"{path}:{line}: a JSON object per line expected, got {type(rec).__name__}")
                yield line, rec
            return
        reader = csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
        if reader.fieldnames is None:
            return  # an empty file: no records
        start = reader.line_num + 1
        for rec in reader:
            # A short row gets None for its missing fields: drop them so they read as missing, not as None.
            yield start, {k: v for k, v in rec.items() if k is not None and v is not None}
            start = reader.line_num + 1


def _text(value: Any) -> str:
    """A cell as text: JSON numbers and booleans as JSON spells them (1, true), so labels compare as written."""
    return value if isinstance(value, str) else json.dumps(value)


_MISSING = object()


def _lookup(rec: Mapping[Any, Any], column: str) -> Any:
    """``rec[column]``, or for a JSON record a dotted path (``completion.0.content``, ``propositions.x``)."""
    if column in rec:
        return rec[column]
    value: Any = rec
    for part in column.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _field(rec: Mapping[Any, Any], column: str, where: str) -> str:
    value = _lookup(rec, column)
    if value is _MISSING or value is None:
        present = ", ".join(str(k) for k, v in rec.items() if v is not None) or "none"
        state = "is null" if value is None else "missing"
        raise LabelledSetError(f"{where}: column {column!r} {state} (columns present: {present})")
    return _text(value)


def _raw_label(rec: Mapping[Any, Any], column: str | Sequence[str], where: str) -> str:
    """A label column's text; several columns (``[a, b]``) give their values joined by ``|`` (``true|false``)."""
    if isinstance(column, str):
        return _field(rec, column, where)
    return "|".join(_field(rec, c, where) for c in column)


@dataclass(frozen=True)
class LoadedSet:
    """A labelled set's judged rows, and how many responses each excluded raw label left out."""

    rows: list[LabelledRow]
    excluded: dict[str, int]

    @property
    def n_excluded(self) -> int:
        return sum(self.excluded.values())


def load_set(spec: LabelledSet, data_dir: str | os.PathLike[str]) -> list[LabelledRow]:
    """Every judged row of ``spec``'s files under ``data_dir``, in file (sorted path) and line order."""
    return load_set_counted(spec, data_dir).rows


def load_set_counted(spec: LabelledSet, data_dir: str | os.PathLike[str]) -> LoadedSet:
    """:func:`load_set`, with the rows that an ``excluded`` label left out counted per raw label."""
    paths = spec.paths(data_dir)
    if not paths:
        raise FileNotFoundError(f"labelled set {spec.name!r}: no files match {spec.files} under {data_dir}")
    cols = spec.columns
    unsafe = spec.unsafe
    rows: list[LabelledRow] = []
    excluded: dict[str, int] = {}
    responses = spec.response_columns()
    label_col = cols["label"]
    for path in paths:
        fmt = spec.file_format(path)
        file_model = spec.model_of(path, data_dir) if spec.model_from == "filename" else None
        if fmt in ("csv", "tsv"):  # a column missing from the header is one error for the file, at line 1
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), [])
            needed = [c for k, v in cols.items() if k not in ("response", "label") for c in [v]]
            needed += responses + ([] if label_col == FROM_RESPONSE_COLUMN else
                                   [label_col] if isinstance(label_col, str) else list(label_col))
            needed += [unsafe["column"]] if unsafe else []
            for column in needed:
                if column not in header:
                    raise LabelledSetError(f"{path}:1: column {column!r} missing "
                                           f"(columns present: {', '.join(header) or 'none'})")
        for line, rec in _records(path, fmt):
            where = f"{path}:{line}"
            for response_col in responses:
                raw = response_col if label_col == FROM_RESPONSE_COLUMN else _raw_label(rec, label_col, where)
                if raw not in spec.labels:
                    field_name = label_col if isinstance(label_col, str) else "|".join(label_col)
                    raise LabelledSetError(f"{where}: label {raw!r} (field {field_name}) is not in the set's labels "
                                           f"({', '.join(spec.labels)}); map it to one of "
                                           f"{', '.join((*LABELS, EXCLUDED))}")
                if spec.labels[raw] == EXCLUDED:
                    excluded[raw] = excluded.get(raw, 0) + 1
                    continue
                flag: bool | None = None
                if unsafe is not None:
                    value = _field(rec, unsafe["column"], where)
                    flag = value.startswith(unsafe["prefix"]) if "prefix" in unsafe else False
                    flag = flag or value in unsafe.get("values", ())
                if spec.model_from == "constant":
                    model = str(spec.model)
                else:
                    model = file_model if file_model is not None else _field(rec, cols["model"], where)
                rows.append(LabelledRow(
                    prompt=_field(rec, cols["prompt"], where),
                    response=_field(rec, response_col, where),
                    label=cast(Label, spec.labels[raw]),
                    model=model,
                    subgroup=_field(rec, cols["subgroup"], where) if "subgroup" in cols else None,
                    unsafe=flag,
                    where=where,
                ))
    return LoadedSet(rows, dict(sorted(excluded.items())))


def load_xstest_completions(data_dir: str | os.PathLike[str]) -> dict[str, list[LabelledRow]]:
    """``{model: rows}`` of XSTest's human-labelled completions (``XSTEST_SET``)."""
    out: dict[str, list[LabelledRow]] = {}
    for r in load_set(LabelledSet.from_spec("xstest", XSTEST_SET), data_dir):
        out.setdefault(r.model, []).append(r)
    return out


def judge_labels(judge: RefusalJudge, rows: Sequence[LabelledRow]) -> list[Label | None]:
    """The judge's label for each row's response (None for a judge error)."""
    return [j.label for j in judge.judge_many([(r.prompt, r.response) for r in rows])]


def _agreement_row(dataset: str, judge_id: str, model: str, subgroup: str, rows: Sequence[LabelledRow],
                   labels: Sequence[Label | None], has_unsafe: bool) -> dict[str, Any]:
    judged = [(r, lab) for r, lab in zip(rows, labels, strict=True) if lab is not None]

    def agree(pairs: list[tuple[LabelledRow, Label]]) -> float | None:
        if not pairs:
            return None
        return sum((lab == "compliance") == (r.label == "compliance") for r, lab in pairs) / len(pairs)

    safe = [(r, lab) for r, lab in judged if r.unsafe is False]
    unsafe = [(r, lab) for r, lab in judged if r.unsafe]
    n = len(judged)
    return {
        "dataset": dataset,
        "judge_id": judge_id,
        "model": model,
        "subgroup": subgroup,
        "n": len(rows),
        "n_judge_errors": len(rows) - n,
        "agreement": agree(judged),
        "accuracy_3class": sum(r.label == lab for r, lab in judged) / n if n else None,
        "human_compliance_rate": sum(r.label == "compliance" for r in rows) / len(rows) if rows else None,
        "judge_compliance_rate": sum(lab == "compliance" for _, lab in judged) / n if n else None,
        "n_safe": len(safe) if has_unsafe else None,
        "agreement_safe": agree(safe),
        "n_unsafe": len(unsafe) if has_unsafe else None,
        "agreement_unsafe": agree(unsafe),
    }


def _groups(rows: Sequence[LabelledRow], labels: Sequence[Label | None], key: str
            ) -> dict[str, tuple[list[LabelledRow], list[Label | None]]]:
    out: dict[str, tuple[list[LabelledRow], list[Label | None]]] = {}
    for r, lab in zip(rows, labels, strict=True):
        value = getattr(r, key)
        if value is None:
            continue
        group = out.setdefault(value, ([], []))
        group[0].append(r)
        group[1].append(lab)
    return dict(sorted(out.items()))


def agreement_rows(dataset: str, judge_id: str, rows: Sequence[LabelledRow],
                   labels: Sequence[Label | None]) -> list[dict[str, Any]]:
    """Per model (sorted), per subgroup pooled over models (sorted), then everything pooled (last)."""
    has_unsafe = any(r.unsafe is not None for r in rows)
    table = [_agreement_row(dataset, judge_id, model, ALL, rs, ls, has_unsafe)
             for model, (rs, ls) in _groups(rows, labels, "model").items()]
    table += [_agreement_row(dataset, judge_id, ALL, sub, rs, ls, has_unsafe)
              for sub, (rs, ls) in _groups(rows, labels, "subgroup").items()]
    table.append(_agreement_row(dataset, judge_id, ALL, ALL, rows, labels, has_unsafe))
    return table


def confusion_rows(dataset: str, judge_id: str, rows: Sequence[LabelledRow],
                   labels: Sequence[Label | None]) -> list[dict[str, Any]]:
    """Human label x judge label counts (``judge_error``: no verdict), per model and pooled (``all``, last);
    one row per human label the set uses."""
    human = [lab for lab in LABELS if any(r.label == lab for r in rows)]
    groups = {**_groups(rows, labels, "model"), ALL: (list(rows), list(labels))}
    table = []
    for model, (rs, ls) in groups.items():
        for h in human:
            verdicts = [lab for r, lab in zip(rs, ls, strict=True) if r.label == h]
            counts = {f"judge_{lab}": verdicts.count(lab) for lab in LABELS}
            table.append({"dataset": dataset, "judge_id": judge_id, "model": model, "human_label": h, **counts,
                          f"judge_{JUDGE_ERROR}": verdicts.count(None), "n": len(verdicts)})
    return table


@dataclass
class Validation:
    """The two tables of rule judge_validation."""

    agreement: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)


def run_validation(judges: Sequence[RefusalJudge], data_dir: str | os.PathLike[str],
                   sets: Mapping[str, Mapping[str, Any]] | None = None) -> Validation:
    """Every judge on every enabled set (each set read once), ordered by set, then judge."""
    out = Validation()
    for name, spec in enabled_sets(DEFAULT_SETS if sets is None else sets).items():
        loaded = load_set_counted(LabelledSet.from_spec(name, spec), data_dir)
        rows = loaded.rows
        for judge in judges:
            labels = judge_labels(judge, rows)
            table = agreement_rows(name, judge.id, rows, labels)
            table[-1]["n_excluded"] = loaded.n_excluded  # the pooled row: responses the set's mapping left out
            out.agreement += table
            out.confusion += confusion_rows(name, judge.id, rows, labels)
    return out


def validate_judge(judge: RefusalJudge, data_dir: str | os.PathLike[str],
                   sets: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The agreement rows of one judge (default: XSTest); the pooled row is last."""
    return run_validation([judge], data_dir, sets).agreement


def validate_judges(names: Sequence[str], data_dir: str | os.PathLike[str],
                    sets: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The agreement rows of each registered judge name, concatenated per set."""
    return run_validation([get_judge(n) for n in names], data_dir, sets).agreement


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


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
        verdicts = judge.judge_many([(r["prompt"], r["completion"]) for r in rows])
        for r, verdict in zip(rows, verdicts, strict=True):
            n += 1
            ours = LABEL_TO_XSTEST[verdict.label] if verdict.label is not None else JUDGE_ERROR
            if ours != r["strmatch_label"]:
                model = f.name.removeprefix("xstest_v2_completions_").removesuffix("_streval.csv")
                mismatches.append({
                    "model": model, "id": r["id"], "ours": ours,
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


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                columns: Sequence[str] = TABLE_COLUMNS) -> None:
    """Write ``rows`` atomically as ``.csv`` (full precision) or ``.md`` (4 decimals) by suffix."""
    p = Path(path)
    if p.suffix not in (".csv", ".md"):
        raise ValueError(f"{p}: table suffix must be .csv or .md")
    with atomic_path(p) as tmp:
        if p.suffix == ".csv":
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
                w.writeheader()
                w.writerows({c: _fmt(r.get(c), None) for c in columns} for r in rows)
        else:
            tmp.write_text(to_markdown(rows, columns), encoding="utf-8")


def _load_sets_file(path: str) -> dict[str, Any]:
    """``--sets``: a YAML mapping name -> labelled set, or a config file holding eval.judge_validation.sets."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and "eval" in data:
        data = data["eval"].get("judge_validation", {}).get("sets", {})
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: no labelled sets (a mapping name -> {{files, columns, labels, model_from}})")
    return cast(dict[str, Any], data)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Agreement of refusal judges with human refusal labels.")
    ap.add_argument("--judge", action="append", dest="judges",
                    help=f"judge name, repeatable (default: {', '.join(DEFAULT_JUDGES)})")
    ap.add_argument("--data-dir", default=None, help="default: $OVERREFUSAL_DATA_DIR, else <repo>/../shared/data")
    ap.add_argument("--sets", default=None, help="YAML: name -> labelled set, or a config with "
                    "eval.judge_validation.sets (default: XSTest's human-labelled completions)")
    ap.add_argument("--out", action="append", default=[], help="agreement table path ending .csv or .md (repeatable)")
    ap.add_argument("--confusion", action="append", default=[], help="confusion table path, .csv or .md (repeatable)")
    args = ap.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    if data_dir is None:
        ap.error("no data dir: pass --data-dir or set OVERREFUSAL_DATA_DIR")
    sets = _load_sets_file(args.sets) if args.sets else None
    result = run_validation([get_judge(n) for n in args.judges or DEFAULT_JUDGES], data_dir, sets)
    for out in args.out:
        write_table(result.agreement, out)
    for out in args.confusion:
        write_table(result.confusion, out, CONFUSION_COLUMNS)
    sys.stdout.write(to_markdown(result.agreement))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
