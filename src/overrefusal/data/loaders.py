"""Parse each dataset's published format into the shared record schema.

Every parser takes the files of one source and returns the records plus a report. A malformed row
(missing field, wrong type, empty prompt) raises ``DataError`` naming the file and line. Rows are
never silently dropped: exact duplicates (after ``text.normalise``) within a source are counted and
listed in the report; the curated splits de-duplicate explicitly and record how many they dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import DataError
from ..records import Record, validate_record
from .registry import Source
from .text import harm_category, normalise

LABEL_OF_XSTEST = {"safe": "seemingly_toxic", "unsafe": "toxic"}


@dataclass
class LoadReport:
    source: str
    files: list[str]
    n_rows: int = 0
    n_unique: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {prompt, ids}

    @property
    def n_duplicate_rows(self) -> int:
        return self.n_rows - self.n_unique

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "files": self.files, "n_rows": self.n_rows, "n_unique": self.n_unique,
                "n_duplicate_rows": self.n_duplicate_rows, "duplicates": self.duplicates[:50]}


# ------------------------------------------------------------------------------------------ readers


def _text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except OSError as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array; errors name file and line."""
    text = _text(path)
    dec = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    i = ws.match(text, 0).end()  # type: ignore[union-attr]
    if not text[i:i + 1] == "[":
        raise DataError(f"{path}: line {text.count(chr(10), 0, i) + 1}: expected a JSON array")
    i += 1
    line, last = 1 + text.count("\n", 0, i), i
    while True:
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        if i >= len(text):
            raise DataError(f"{path}: line {text.count(chr(10)) + 1}: unterminated JSON array")
        if text[i] == "]":
            return
        line, last = line + text.count("\n", last, i), i
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
        yield line, obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: invalid JSON: {exc.msg}") from exc


def iter_json_any(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array, or JSON lines (the red-team file is an array despite its .jsonl name)."""
    head = _text(path).lstrip()[:1]
    return iter_json_array(path) if head == "[" else iter_jsonl(path)


def iter_csv(path: Path, required: tuple[str, ...], header: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(first line of the record, row) for each CSV record; missing columns/values are errors."""
    fh = io.StringIO(_text(path), newline="")
    reader = csv.reader(fh)
    names: list[str] | None = None
    start = 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if names is None and header:
            names = [c.strip() for c in row]
            missing = [c for c in required if c not in names]
            if missing:
                raise DataError(f"{path}: line {line}: missing column(s) {', '.join(missing)} (header: {', '.join(names)})")
            continue
        if not row or all(not c.strip() for c in row):
            continue
        cols = names if names is not None else list(required)
        if len(row) < len(cols):
            raise DataError(f"{path}: line {line}: {len(row)} field(s), expected {len(cols)} ({', '.join(cols)})")
        yield line, dict(zip(cols, row))


def _field(row: Any, key: str, where: str, *, optional: bool = False) -> str:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object, got {type(row).__name__}")
    if key not in row or row[key] is None:
        if optional:
            return ""
        raise DataError(f"{where}: missing field '{key}'")
    if not isinstance(row[key], str):
        raise DataError(f"{where}: field '{key}' must be str, got {type(row[key]).__name__}")
    return row[key]


FIRST_HUMAN = re.compile(r"^\s*Human:\s*(.*?)\s*(?:\n\nAssistant:|\Z)", re.S)


def first_human_turn(transcript: str, where: str) -> str:
    m = FIRST_HUMAN.match(transcript)
    if m is None:
        raise DataError(f"{where}: transcript does not start with a 'Human:' turn")
    return m.group(1)


# ------------------------------------------------------------------------------------------ parsers
# A parser yields (where, row-dict) pairs; row-dicts are records without source/licence/id.

Rows = Iterator[tuple[str, dict[str, Any]]]


def p_alpaca_json(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    label = str(opts.get("label", "general"))
    for line, row in iter_json_array(path):
        where = f"{path}: line {line}"
        prompt = _field(row, "instruction", where)
        rec = {"prompt": prompt, "input": _field(row, "input", where, optional=True),
               "response": _field(row, "output", where), "label": label,
               "category": harm_category(prompt) if label == "toxic" else "general"}
        yield where, rec


def p_hh_jsonl_gz(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_jsonl(path):
        where = f"{path}: line {line}"
        prompt = first_human_turn(_field(row, "chosen", where), where)
        _field(row, "rejected", where)
        yield where, {"prompt": prompt, "label": "toxic", "category": harm_category(prompt)}


def p_hh_red_team(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_json_any(path):
        where = f"{path}: line {line}"
        prompt = first_human_turn(_field(row, "transcript", where), where)
        yield where, {"prompt": prompt, "label": "toxic", "category": harm_category(prompt)}


def p_coconot_pref(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_jsonl(path):
        where = f"{path}: line {line}"
        yield where, {"prompt": _field(row, "prompt", where), "response": _field(row, "chosen", where),
                      "label": "seemingly_toxic", "category": _field(row, "subcategory", where)}


def p_coconot_jsonl(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_jsonl(path):
        where = f"{path}: line {line}"
        yield where, {"prompt": _field(row, "prompt", where), "label": "seemingly_toxic",
                      "category": _field(row, "subcategory", where), "orig_id": _field(row, "id", where)}


def p_xstest_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    want = opts.get("label")
    for line, row in iter_csv(path, ("prompt", "type")):
        where = f"{path}: line {line}"
        typ = row["type"].strip()
        xs_label = (row.get("label") or "").strip() or ("unsafe" if typ.startswith("contrast_") else "safe")
        if xs_label not in LABEL_OF_XSTEST:
            raise DataError(f"{where}: field 'label' is {xs_label!r}; XSTest labels are safe, unsafe")
        if want and xs_label != want:
            continue
        yield where, {"prompt": row["prompt"], "label": LABEL_OF_XSTEST[xs_label], "category": typ,
                      "orig_id": (row.get("id") or row.get("id_v2") or "").strip()}


def p_prompt_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("prompt",)):
        yield f"{path}: line {line}", {"prompt": row["prompt"].strip(), "label": "seemingly_toxic", "category": src.name}


def p_orbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    label = str(opts.get("label", "seemingly_toxic"))
    for line, row in iter_csv(path, ("prompt", "category")):
        yield f"{path}: line {line}", {"prompt": row["prompt"], "label": label, "category": row["category"]}


def p_phtest_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("ID", "Request", "Harmfulness")):
        where = f"{path}: line {line}"
        harm = row["Harmfulness"].strip()
        if harm not in ("harmless", "controversial"):
            raise DataError(f"{where}: field 'Harmfulness' is {harm!r}; allowed: harmless, controversial")
        yield where, {"prompt": row["Request"], "label": "seemingly_toxic", "category": harm, "orig_id": row["ID"]}


def p_advbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("goal", "target")):
        yield f"{path}: line {line}", {"prompt": row["goal"], "label": "toxic", "category": "advbench"}


def p_harmbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    keep = set(opts.get("functional_categories") or ["standard", "contextual", "copyright"])
    for line, row in iter_csv(path, ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID")):
        if row["FunctionalCategory"] not in keep:
            continue
        prompt = row["Behavior"]
        if row.get("ContextString", "").strip():
            prompt = f"{row['ContextString']}\n\n---\n\n{prompt}"  # HarmBench's contextual format
        yield f"{path}: line {line}", {"prompt": prompt, "label": "toxic", "category": row["SemanticCategory"],
                                       "orig_id": row["BehaviorID"]}


def p_jbb_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("Goal", "Category")):
        yield f"{path}: line {line}", {"prompt": row["Goal"], "label": "toxic", "category": row["Category"]}


def p_lines_txt(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for lineno, line in enumerate(_text(path).splitlines(), start=1):
        if line.strip():
            yield f"{path}: line {lineno}", {"prompt": line.strip(), "label": "toxic", "category": src.name}


def p_strongreject_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("category", "forbidden_prompt")):
        yield f"{path}: line {line}", {"prompt": row["forbidden_prompt"], "label": "toxic", "category": row["category"]}


PARSERS: dict[str, Callable[[Path, Source, dict[str, Any]], Rows]] = {
    "alpaca_json": p_alpaca_json, "hh_jsonl_gz": p_hh_jsonl_gz, "hh_red_team": p_hh_red_team,
    "coconot_pref": p_coconot_pref, "coconot_jsonl": p_coconot_jsonl, "xstest_csv": p_xstest_csv,
    "prompt_csv": p_prompt_csv, "orbench_csv": p_orbench_csv, "phtest_csv": p_phtest_csv,
    "advbench_csv": p_advbench_csv, "harmbench_csv": p_harmbench_csv, "jbb_csv": p_jbb_csv,
    "lines_txt": p_lines_txt, "strongreject_csv": p_strongreject_csv,
}


def load_records(src: Source, paths: list[Path], options: dict[str, Any] | None = None,
                 *, id_prefix: str | None = None) -> tuple[list[Record], LoadReport]:
    """Parse, validate and count duplicates; ids are ``<prefix>-<n>`` in file order."""
    if src.fmt not in PARSERS:
        raise ValueError(f"source {src.name!r} has no record parser (format {src.fmt!r})")
    opts = {**src.options, **(options or {})}
    parser = PARSERS[src.fmt]
    prefix = id_prefix or src.name
    out: list[Record] = []
    seen: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for where, row in parser(Path(path), src, opts):
            rec: dict[str, Any] = {"id": f"{prefix}-{len(out):05d}", "source": src.name, "licence": src.licence}
            rec.update({k: v for k, v in row.items() if k != "orig_id" and v not in (None, "")})
            rec.setdefault("prompt", "")
            validate_record(rec, where)
            seen[normalise(rec["prompt"])].append(rec["id"])
            out.append(rec)  # type: ignore[arg-type]
    report = LoadReport(src.name, [str(p) for p in paths], len(out), len(seen))
    report.duplicates = [{"prompt": k, "ids": v} for k, v in seen.items() if len(v) > 1]
    return out, report


def load_mmlu(paths: list[Path]) -> list[dict[str, Any]]:
    """MMLU test CSVs (no header; question, A-D, answer letter) as capability mc rows."""
    rows: list[dict[str, Any]] = []
    for path in sorted(paths):
        subject = Path(path).name.removesuffix("_test.csv")
        for line, row in iter_csv(Path(path), ("question", "A", "B", "C", "D", "answer"), header=False):
            ans = row["answer"].strip()
            if ans not in ("A", "B", "C", "D"):
                raise DataError(f"{path}: line {line}: answer {ans!r} is not one of A, B, C, D")
            rows.append({"id": f"mmlu-{subject}-{line}", "subject": subject, "question": row["question"],
                         "choices": [row[c] for c in "ABCD"], "answer": "ABCD".index(ans)})
    return rows
