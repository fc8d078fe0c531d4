"""Parse each dataset's published format into the shared record schema, strictly.

Every parser takes the files of one source and returns the records plus a report. Bad input raises
``DataError`` naming the file, line and field: CSV is read with ``strict=True`` and every row must have
exactly the header's fields; text fields may hold no NUL or other control character (tab, newline and
carriage return aside) and must be UTF-8 (an error names line and column); a category must be one of
the source's documented values (``registry.Source.categories``); a source's own row id is kept as
``orig_id`` and must be present, unique and, where the source numbers its rows, a number. A file must
hold rows, and a source exactly its documented number of rows (``Source.rows``): a subset (a split's
``n``, ``data.real.eval_subset``, a loader option such as XSTest's label) is drawn from the whole file,
so the file still has to be whole. Rows are never silently dropped: exact duplicates (after
``text.normalise``) within a source are counted and listed in the report; the curated splits
de-duplicate explicitly and record how many they dropped.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..io import DataError
from ..records import Record, validate_record
from .fetch import StagedPaths
from .registry import HARMBENCH_FUNCTIONAL, Source
from .text import harm_category, normalise

LABEL_OF_XSTEST = {"safe": "seemingly_toxic", "unsafe": "toxic"}

# C0 and C1 controls and DEL, less tab, newline and carriage return: never part of a prompt, and a NUL or a
# stray control in a source file means it was damaged or is not the text file it claims to be.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# MMLU's upstream text has 247 C1 characters (cp1252 punctuation decoded as Latin-1, e.g. U+0085 for an
# ellipsis): part of the published benchmark, so its reader refuses only C0 controls and DEL.
C0_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Bytes that are not UTF-8, as the "surrogateescape" decoder keeps them (U+DC80..U+DCFF).
UNDECODABLE = re.compile(r"[\udc80-\udcff]")
SURROGATE = re.compile(r"[\ud800-\udfff]")  # half of a surrogate pair, alone (from a broken JSON escape)
NUMERIC_ID = re.compile(r"[0-9]+")


@dataclass
class LoadReport:
    source: str
    files: list[str]
    n_rows: int = 0
    n_unique: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {prompt, ids}
    n_file_rows: int = 0  # rows in the files, before a loader option (XSTest label, HarmBench category) selects
    expected_rows: int | None = None

    @property
    def n_duplicate_rows(self) -> int:
        return self.n_rows - self.n_unique

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "files": self.files, "n_rows": self.n_rows, "n_unique": self.n_unique,
                "n_duplicate_rows": self.n_duplicate_rows, "duplicates": self.duplicates[:50],
                "n_file_rows": self.n_file_rows, "expected_rows": self.expected_rows}


# ------------------------------------------------------------------------------------------ readers


@dataclass
class Decoded:
    """A file's text; bytes that are not UTF-8 are kept as U+DC80..U+DCFF so the error can name the field."""

    path: Path
    text: str
    bad: tuple[int, int, int] | None  # (line, column, byte) of the first byte that is not UTF-8
    _lines: list[str] | None = None

    def lines(self) -> list[str]:
        """Physical lines as the csv module counts them (str.splitlines would also break at U+0085, U+2028)."""
        if self._lines is None:
            self._lines = io.StringIO(self.text, newline="").readlines()
        return self._lines

    def locate(self, first_line: int, pattern: re.Pattern[str]) -> tuple[int, int] | None:
        """(line, column) of the first match of ``pattern`` at or after ``first_line``."""
        for i, text in enumerate(self.lines()[first_line - 1:], start=first_line):
            m = pattern.search(text)
            if m:
                return i, m.start() + 1
        return None

    def not_utf8(self, where: str | None = None, first_line: int = 1) -> DataError:
        """The error for the first byte that is not UTF-8 at or after ``first_line``; ``where`` names the field."""
        at = self.locate(first_line, UNDECODABLE)
        line, col = at if at is not None else (self.bad or (first_line, 0, 0))[:2]
        byte = ord(self.lines()[line - 1][col - 1]) - 0xDC00 if at is not None else (self.bad or (0, 0, 0))[2]
        head = f"{self.path}: line {line}, column {col}"
        return DataError(f"{head}: {where + ': ' if where else ''}not UTF-8 text (byte 0x{byte:02x}); "
                         "re-download the file or convert it to UTF-8")

    def end(self) -> None:
        """Raise for a byte that is not UTF-8 which no field check met (it sits outside every string)."""
        if self.bad is not None:
            raise self.not_utf8()


def _decode(path: Path) -> Decoded:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from exc
    elif path.name.endswith(".bz2"):
        try:
            data = bz2.decompress(data)
        except (OSError, EOFError, ValueError) as exc:
            raise DataError(f"{path}: not a valid bzip2 file ({exc})") from exc
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark (TruthfulQA has one)
        data = data[3:]
    try:
        return Decoded(path, data.decode("utf-8"), None)
    except UnicodeDecodeError as exc:
        # UnicodeDecodeError names a byte offset; a person looks for a line and a column
        line = data.count(b"\n", 0, exc.start) + 1
        bol = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[bol:exc.start].decode("utf-8", "replace")) + 1
        return Decoded(path, data.decode("utf-8", "surrogateescape"), (line, col, data[exc.start]))


def _text(path: Path) -> str:
    doc = _decode(path)
    doc.end()
    return doc.text


def check_text(value: str, where: str, name: str, doc: Decoded | None = None, line: int = 1,
               control: re.Pattern[str] = CONTROL) -> str:
    """``value`` unchanged, or a DataError naming the field: bytes that are not UTF-8, control characters."""
    if doc is not None and doc.bad is not None and UNDECODABLE.search(value):
        raise doc.not_utf8(f"field {name!r}", line)
    m = control.search(value)
    if m:
        ch = m.group()
        label = unicodedata.name(ch, "NUL" if ch == "\0" else "control character")
        raise DataError(f"{where}: field {name!r}: control character U+{ord(ch):04X} ({label}) at character "
                        f"{m.start() + 1} of the field; a damaged file, or not the source's text?")
    m = SURROGATE.search(value)
    if m:
        raise DataError(f"{where}: field {name!r}: lone surrogate U+{ord(m.group()):04X} at character "
                        f"{m.start() + 1} of the field (a broken \\u escape?)")
    return value


def _check_json(obj: Any, where: str, doc: Decoded, line: int, key: str = "") -> None:
    """Every string of a JSON value, keys included, passes ``check_text``; errors name the key path."""
    if isinstance(obj, str):
        check_text(obj, where, key or "(value)", doc, line)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            name = f"{key}.{k}" if key else str(k)
            check_text(str(k), where, f"{name} (key)", doc, line)
            _check_json(v, where, doc, line, name)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_json(v, where, doc, line, f"{key}[{i}]")


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array; errors name file and line."""
    doc = _decode(path)
    text = doc.text
    dec = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    i = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[i:i + 1] != "[":
        if doc.bad is not None:
            raise doc.not_utf8()
        if i >= len(text):
            raise DataError(f"{path}: line 1: empty file, expected a JSON array of rows")
        raise DataError(f"{path}: line {text.count(chr(10), 0, i) + 1}: expected a JSON array")
    i += 1
    line, last = 1 + text.count("\n", 0, i), i
    while True:
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        if i >= len(text):
            raise DataError(f"{path}: line {text.count(chr(10)) + 1}: unterminated JSON array")
        if text[i] == "]":
            doc.end()
            return
        line, last = line + text.count("\n", last, i), i
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            if doc.bad is not None:
                raise doc.not_utf8(first_line=line) from exc
            raise DataError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
        _check_json(obj, f"{path}: line {line}", doc, line)
        yield line, obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    doc = _decode(path)
    # split at newlines only: str.splitlines would also split a JSON string holding U+2028 or U+0085
    for lineno, line in enumerate(doc.text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if doc.bad is not None and UNDECODABLE.search(line):
                raise doc.not_utf8(first_line=lineno) from exc
            raise DataError(f"{path}: line {lineno}: invalid JSON: {exc.msg}") from exc
        _check_json(obj, f"{path}: line {lineno}", doc, lineno)
        yield lineno, obj
    doc.end()


def iter_json_any(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array, or JSON lines (the red-team file is an array despite its .jsonl name)."""
    head = _decode(path).text.lstrip()[:1]
    return iter_json_array(path) if head == "[" else iter_jsonl(path)


def _csv_fault(seg: str) -> tuple[int, tuple[int, int], tuple[int, int], bool] | None:
    """Where strict CSV parsing of one record's text ``seg`` fails: (field index, (line, column) where the
    quoted field opened, (line, column) of the fault, whether the data ended inside the quotes); 0-based.
    Mirrors the csv module's excel dialect, which reports only the line."""
    START, FIELD, QUOTED, QUOTE = range(4)
    state, k, line, col, opened = START, 0, 0, 0, (0, 0)
    for ch in seg:
        if state == START:
            if ch == '"':
                state, opened = QUOTED, (line, col)
            elif ch == ",":
                k += 1
            elif ch in "\r\n":
                return None  # the record ended without a fault: not the record that failed
            else:
                state = FIELD
        elif state == FIELD:
            if ch == ",":
                k, state = k + 1, START
            elif ch in "\r\n":
                return None
        elif state == QUOTED:
            if ch == '"':
                state = QUOTE
        else:  # just after a quote inside a quoted field: a doubled quote, the delimiter or the end of the record
            if ch == '"':
                state = QUOTED
            elif ch == ",":
                k, state = k + 1, START
            elif ch in "\r\n":
                return None
            else:
                return k, opened, (line, col), False
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
    return (k, opened, (line, col), True) if state == QUOTED else None


def _csv_error(doc: Decoded, start: int, end: int, cols: list[str] | None, exc: csv.Error) -> DataError:
    fault = _csv_fault("".join(doc.lines()[start - 1:end]))
    if fault is None:
        return DataError(f"{doc.path}: line {end}: malformed CSV ({exc})")
    k, (oline, ocol), (fline, fcol), at_eof = fault
    name = repr(cols[k]) if cols is not None and k < len(cols) else str(k + 1)
    opened = f"line {start + oline}, column {ocol + 1}"
    if at_eof:
        why = f"its opening quote (at {opened}) is never closed, so it runs to the end of the file"
    else:
        why = (f"the quoted field opened at {opened} is closed by the quote at line {start + fline}, column "
               f"{fcol}, which is followed by text, not ','; a stray or unescaped '\"'")
    return DataError(f"{doc.path}: line {start + oline}: field {name}: malformed CSV ({exc}): {why}")


def iter_csv(path: Path, required: tuple[str, ...], header: bool = True,
             control: re.Pattern[str] = CONTROL) -> Iterator[tuple[int, dict[str, Any]]]:
    """(first line of the record, row) for each CSV record. The csv module is strict (a stray quote is an
    error, not a merged row); a row needs exactly the header's fields; every field passes ``check_text``."""
    doc = _decode(path)
    if not doc.text.strip():
        want = f"; expected the header {','.join(required)} and rows" if header else ""
        raise DataError(f"{path}: line 1: empty file{want}")
    reader = csv.reader(io.StringIO(doc.text, newline=""), strict=True)
    cols: list[str] | None = None if header else list(required)
    start, n = 1, 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _csv_error(doc, start, reader.line_num, cols, exc) from exc
        line, start = start, reader.line_num + 1
        if not row:  # a blank line (the csv module yields [] for it); DictReader skips these too
            continue
        where = f"{path}: line {line}"
        if cols is None:
            for i, c in enumerate(row):
                check_text(c, where, f"header column {i + 1}", doc, line)
            names = [c.strip() for c in row]
            missing = [c for c in required if c not in names]
            if missing:
                raise DataError(f"{where}: missing column(s) {', '.join(missing)} (header: {', '.join(names)})")
            dup = sorted({c for c in names if names.count(c) > 1})
            if dup:
                raise DataError(f"{where}: column(s) {', '.join(repr(c) for c in dup)} appear twice in the header")
            cols = names
            continue
        if len(row) > len(cols):
            raise DataError(f"{where}: field {len(cols) + 1} (after {cols[-1]!r}): {len(row)} fields, expected "
                            f"{len(cols)} ({', '.join(cols)}); a field with a comma that is not quoted?")
        if len(row) < len(cols):
            raise DataError(f"{where}: field {cols[len(row)]!r}: missing; {len(row)} field(s), expected "
                            f"{len(cols)} ({', '.join(cols)})")
        for name, value in zip(cols, row):
            check_text(value, where, name, doc, line, control)
        n += 1
        yield line, dict(zip(cols, row))
    doc.end()
    if n == 0:
        if cols is None:
            raise DataError(f"{path}: line 1: empty file")
        raise DataError(f"{path}: line {start}: no rows after the header ({', '.join(cols)})")


def _field(row: Any, key: str, where: str, *, optional: bool = False) -> str:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object, got {type(row).__name__}")
    if key not in row or row[key] is None:
        if optional:
            return ""
        raise DataError(f"{where}: missing field '{key}'")
    if not isinstance(row[key], str):
        raise DataError(f"{where}: field '{key}' must be str, got {type(row[key]).__name__}")
    return check_text(row[key], where, key)


def _category(value: str, where: str, name: str, src: Source) -> str:
    """``value`` if it is one of the source's documented categories (a truncated or mistyped one is not)."""
    if src.categories is not None and value not in src.categories:
        raise DataError(f"{where}: field {name!r} is {value!r}, not a documented category of source "
                        f"'{src.name}' ({', '.join(sorted(src.categories))})")
    return value


class SourceIds:
    """A source's own row ids (``orig_id``): present, unique within the file, digits where the source
    numbers its rows. A duplicated or missing id means rows were copied, merged or damaged."""

    def __init__(self, src: Source, name: str, numeric: bool | None = None) -> None:
        self.src, self.name = src, name
        self.numeric = src.ids == "numeric" if numeric is None else numeric
        self.seen: dict[str | int, int] = {}

    def take(self, value: str, where: str, line: int) -> str:
        head = f"{where}: field {self.name!r}"
        if not value.strip():
            raise DataError(f"{head}: empty id; every {self.src.name} row has one")
        if value != value.strip():
            raise DataError(f"{head}: id {value!r} has surrounding whitespace")
        if self.numeric and not NUMERIC_ID.fullmatch(value):
            raise DataError(f"{head}: id {value!r} is not a number; {self.src.name} numbers its rows")
        key: str | int = int(value) if self.numeric else value
        if key in self.seen:
            raise DataError(f"{head}: duplicate id {value!r} (first at line {self.seen[key]})")
        self.seen[key] = line
        return value


FIRST_HUMAN = re.compile(r"^\s*Human:\s*(.*?)\s*(?:\n\nAssistant:|\Z)", re.DOTALL)


def first_human_turn(transcript: str, where: str) -> str:
    m = FIRST_HUMAN.match(transcript)
    if m is None:
        raise DataError(f"{where}: transcript does not start with a 'Human:' turn")
    return m.group(1)


# ------------------------------------------------------------------------------------------ parsers
# A parser yields (where, row-dict) for every row of the file; row-dicts are records without
# source/licence/id, or None for a valid row that a loader option leaves out (it still counts as a row).

Rows = Iterator[tuple[str, dict[str, Any] | None]]


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
    ids = SourceIds(src, "id")
    for line, row in iter_jsonl(path):
        where = f"{path}: line {line}"
        yield where, {"prompt": _field(row, "prompt", where), "response": _field(row, "chosen", where),
                      "label": "seemingly_toxic", "orig_id": ids.take(_field(row, "id", where), where, line),
                      "category": _category(_field(row, "subcategory", where), where, "subcategory", src)}


def p_coconot_jsonl(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    ids = SourceIds(src, "id")
    for line, row in iter_jsonl(path):
        where = f"{path}: line {line}"
        yield where, {"prompt": _field(row, "prompt", where), "label": "seemingly_toxic",
                      "category": _category(_field(row, "subcategory", where), where, "subcategory", src),
                      "orig_id": ids.take(_field(row, "id", where), where, line)}


def p_xstest_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    want = opts.get("label")
    ids: SourceIds | None = None
    for line, row in iter_csv(path, ("prompt", "type")):
        where = f"{path}: line {line}"
        typ = _category(row["type"], where, "type", src)
        implied = "unsafe" if typ.startswith("contrast_") else "safe"  # XSTest: unsafe <=> a contrast_ type
        xs_label = row.get("label", implied)  # the v2 file has no label column
        if xs_label not in LABEL_OF_XSTEST:
            raise DataError(f"{where}: field 'label' is {xs_label!r}; XSTest labels are safe, unsafe")
        if xs_label != implied:
            raise DataError(f"{where}: field 'label' is {xs_label!r} but type {typ!r} is {implied} in XSTest")
        if ids is None:  # the current file numbers rows in `id`; the v2 file names them in `id_v2` (v2-1, ...)
            col = "id" if "id" in row else "id_v2"
            if col not in row:
                raise DataError(f"{where}: no id column (id or id_v2); the header is {', '.join(row)}")
            ids = SourceIds(src, col, numeric=col == "id" and src.ids == "numeric")
        orig = ids.take(row[ids.name], where, line)
        if want and xs_label != want:
            yield where, None
            continue
        yield where, {"prompt": row["prompt"], "label": LABEL_OF_XSTEST[xs_label], "category": typ, "orig_id": orig}


def p_prompt_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("prompt",)):
        # OKTest ends every prompt with a newline (SOURCES.md); nothing else is stripped
        yield f"{path}: line {line}", {"prompt": row["prompt"].strip(), "label": "seemingly_toxic", "category": src.name}


def p_orbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    label = str(opts.get("label", "seemingly_toxic"))
    for line, row in iter_csv(path, ("prompt", "category")):
        where = f"{path}: line {line}"
        yield where, {"prompt": row["prompt"], "label": label, "category": _category(row["category"], where,
                                                                                    "category", src)}


def p_phtest_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    ids = SourceIds(src, "ID")
    for line, row in iter_csv(path, ("ID", "Request", "Harmfulness")):
        where = f"{path}: line {line}"
        harm = _category(row["Harmfulness"], where, "Harmfulness", src)
        yield where, {"prompt": row["Request"], "label": "seemingly_toxic", "category": harm,
                      "orig_id": ids.take(row["ID"], where, line)}


def p_advbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("goal", "target")):
        yield f"{path}: line {line}", {"prompt": row["goal"], "label": "toxic", "category": "advbench"}


def p_harmbench_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    keep = set(opts.get("functional_categories") or HARMBENCH_FUNCTIONAL)
    ids = SourceIds(src, "BehaviorID")
    for line, row in iter_csv(path, ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID")):
        where = f"{path}: line {line}"
        func = row["FunctionalCategory"]
        if func not in HARMBENCH_FUNCTIONAL:
            raise DataError(f"{where}: field 'FunctionalCategory' is {func!r}; HarmBench's are "
                            f"{', '.join(sorted(HARMBENCH_FUNCTIONAL))}")
        sem = _category(row["SemanticCategory"], where, "SemanticCategory", src)
        orig = ids.take(row["BehaviorID"], where, line)
        if func not in keep:
            yield where, None
            continue
        prompt = row["Behavior"]
        if row.get("ContextString", "").strip():
            prompt = f"{row['ContextString']}\n\n---\n\n{prompt}"  # HarmBench's contextual format
        yield where, {"prompt": prompt, "label": "toxic", "category": sem, "orig_id": orig}


def p_jbb_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("Goal", "Category")):
        where = f"{path}: line {line}"
        yield where, {"prompt": row["Goal"], "label": "toxic", "category": _category(row["Category"], where,
                                                                                   "Category", src)}


def p_lines_txt(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    doc = _decode(path)
    for lineno, line in enumerate(doc.text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            where = f"{path}: line {lineno}"
            check_text(line, where, "line", doc, lineno)
            yield where, {"prompt": line.strip(), "label": "toxic", "category": src.name}
    doc.end()


def p_strongreject_csv(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    for line, row in iter_csv(path, ("category", "forbidden_prompt")):
        where = f"{path}: line {line}"
        yield where, {"prompt": row["forbidden_prompt"], "label": "toxic",
                      "category": _category(row["category"], where, "category", src)}


def p_stl_eval_json(path: Path, src: Source, opts: dict[str, Any]) -> Rows:
    """STL's evaluation files: one object {instructions: [...], inputs: [] (, tags: [...])}; a tag, where the
    file has them, is the row's category."""
    doc = _decode(path)
    try:
        obj = json.loads(doc.text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("instructions"), list):
        raise DataError(f"{path}: line 1: expected an object with an 'instructions' list (STL's evaluation layout)")
    if obj.get("inputs"):
        raise DataError(f"{path}: 'inputs' is not empty; STL's evaluation prompts carry none")
    tags = obj.get("tags")
    if tags is not None and (not isinstance(tags, list) or len(tags) != len(obj["instructions"])):
        raise DataError(f"{path}: 'tags' must be a list as long as 'instructions'")
    for i, prompt in enumerate(obj["instructions"]):
        where = f"{path}: instructions[{i}]"
        if not isinstance(prompt, str):
            raise DataError(f"{where}: expected a string, got {type(prompt).__name__}")
        check_text(prompt, where, "instruction", doc)
        category = src.name if tags is None else _category(str(tags[i]), where, "tags", src)
        yield where, {"prompt": prompt.strip(), "label": "toxic", "category": category}
    doc.end()


PARSERS: dict[str, Callable[[Path, Source, dict[str, Any]], Rows]] = {
    "alpaca_json": p_alpaca_json, "hh_jsonl_gz": p_hh_jsonl_gz, "hh_red_team": p_hh_red_team,
    "coconot_pref": p_coconot_pref, "coconot_jsonl": p_coconot_jsonl, "xstest_csv": p_xstest_csv,
    "prompt_csv": p_prompt_csv, "orbench_csv": p_orbench_csv, "phtest_csv": p_phtest_csv,
    "advbench_csv": p_advbench_csv, "harmbench_csv": p_harmbench_csv, "jbb_csv": p_jbb_csv,
    "lines_txt": p_lines_txt, "strongreject_csv": p_strongreject_csv, "stl_eval_json": p_stl_eval_json,
}

Expected = int | None | Literal["documented"]


def load_records(src: Source, paths: list[Path], options: dict[str, Any] | None = None,
                 *, id_prefix: str | None = None, expected_rows: Expected = "documented") -> tuple[list[Record], LoadReport]:
    """Parse, validate and count duplicates; ids are ``<prefix>-<n>`` in file order.

    The files must hold exactly ``expected_rows`` rows: by default the count staging resolved (``paths``
    from ``fetch.staged_paths``: ``data.real.pins.<source>.rows``, else the registry's), or the registry's
    documented ``src.rows``; None checks no count (a source without a documented count, test fixtures)."""
    if src.fmt not in PARSERS:
        raise ValueError(f"source {src.name!r} has no record parser (format {src.fmt!r})")
    if expected_rows == "documented":
        expected_rows = paths.expected_rows if isinstance(paths, StagedPaths) else src.rows
    opts = {**src.options, **(options or {})}
    parser = PARSERS[src.fmt]
    prefix = id_prefix or src.name
    out: list[Record] = []
    seen: dict[str, list[str]] = defaultdict(list)
    n_file, last = 0, ""
    for path in paths:
        n_here = 0
        for where, row in parser(Path(path), src, opts):
            n_here, last = n_here + 1, where
            if row is None:
                continue
            rec: dict[str, Any] = {"id": f"{prefix}-{len(out):05d}", "source": src.name, "licence": src.licence}
            rec.update({k: v for k, v in row.items() if v not in (None, "")})
            rec.setdefault("prompt", "")
            validate_record(rec, where)
            seen[normalise(rec["prompt"])].append(rec["id"])
            out.append(rec)  # type: ignore[arg-type]
        if n_here == 0:  # a JSON file with no rows; CSV readers say so themselves
            raise DataError(f"{path}: line 1: no rows (an empty file or an empty array)")
        n_file += n_here
    if expected_rows is not None and n_file != expected_rows:
        files = ", ".join(str(p) for p in paths)
        raise DataError(f"{files}: {n_file} rows, expected {expected_rows} (the documented row count of source "
                        f"'{src.name}', {src.description}); the last row read is at {last.rsplit(': ', 1)[-1]}. "
                        "The file is truncated, or rows were merged, added or removed: replace it with the "
                        f"upstream file, or if upstream changed on purpose, set data.real.pins.{src.name}.rows")
    report = LoadReport(src.name, [str(p) for p in paths], len(out), len(seen), n_file_rows=n_file,
                        expected_rows=expected_rows)
    report.duplicates = [{"prompt": k, "ids": v} for k, v in seen.items() if len(v) > 1]
    return out, report


# ------------------------------------------------------------------------------------------ capability sets
# Multiple-choice rows for lm-eval's local tasks: {id, question, choices, answer}, where `question` is the field
# the source's lm-eval task prompts with (registry options doc_to_text) and `answer` indexes `choices`.


def _mc_row(id_: str, question: str, choices: list[str], answer: int) -> dict[str, Any]:
    return {"id": id_, "question": question, "choices": choices, "answer": answer}


def _text_field(obj: Any, key: str, where: str) -> str:
    """A non-empty string field: lm-eval would score an empty prompt or choice without complaint."""
    value = _field(obj, key, where)
    if not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")
    return value


def _text_list(value: Any, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2:
        raise DataError(f"{where}: field '{name}' must be a list of at least 2 strings, got {value!r}")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"{where}: field '{name}[{i}]' must be a non-empty string, got {v!r}")
    return value


def _gold(key: Any, labels: list[str], where: str, name: str) -> int:
    """The index of ``key`` among the choice labels (lm-eval: ``choices.label.index(answerKey)``)."""
    if not isinstance(key, str) or key not in labels:
        raise DataError(f"{where}: field '{name}' is {key!r}, not one of the choice labels {labels}")
    return labels.index(key)


def _count(rows: list[dict[str, Any]], paths: list[Path], src: Source) -> list[dict[str, Any]]:
    """``rows``, once they are the source's whole set with unique ids: the subset a run asks for is drawn
    later, from all of it, so a truncated file would silently change which questions are drawn."""
    expected = paths.expected_rows if isinstance(paths, StagedPaths) else src.rows
    if expected is not None and len(rows) != expected:
        raise DataError(f"{', '.join(map(str, paths))}: {len(rows)} rows, expected {expected} (the documented "
                        f"row count of source '{src.name}', {src.description}); replace the file with the upstream "
                        f"one, or if upstream changed on purpose, set data.real.pins.{src.name}.rows")
    dup = [i for i, n in Counter(r["id"] for r in rows).items() if n > 1]
    if dup:
        raise DataError(f"{paths[0]}: id {dup[0]!r} appears {sum(r['id'] == dup[0] for r in rows)} times; rows were "
                        "copied or merged")
    return rows


def load_arc(paths: list[Path], src: Source) -> list[dict[str, Any]]:
    """ARC in HF allenai/ai2_arc's layout: ``{id, question, choices: {text, label}, answerKey}``; labels are
    letters or digits and rows have 3 to 5 choices, so the gold index is looked up, never computed."""
    rows = []
    for line, obj in iter_jsonl(Path(paths[0])):
        where = f"{paths[0]}: line {line}"
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, dict):
            raise DataError(f"{where}: field 'choices' must be an object {{text, label}}, got {choices!r}")
        text = _text_list(choices.get("text"), where, "choices.text")
        labels = _text_list(choices.get("label"), where, "choices.label")
        if len(labels) != len(text):
            raise DataError(f"{where}: field 'choices.label' has {len(labels)} labels for {len(text)} choices")
        rows.append(_mc_row(_text_field(obj, "id", where), _text_field(obj, "question", where), text,
                            _gold(obj.get("answerKey"), labels, where, "answerKey")))
    return _count(rows, paths, src)


def load_piqa(paths: list[Path], src: Source) -> list[dict[str, Any]]:
    """PIQA: ``valid.jsonl`` {goal, sol1, sol2} zipped line by line with ``valid-labels.lst`` (0 = sol1)."""
    data, labels = (Path(p) for p in paths)
    docs = list(iter_jsonl(data))
    label_lines = [(i, ln.strip()) for i, ln in enumerate(_text(labels).split("\n"), start=1) if ln.strip()]
    if len(label_lines) != len(docs):
        raise DataError(f"{labels}: {len(label_lines)} labels for the {len(docs)} rows of {data}; the files are "
                        "paired line by line, so one of them is truncated or from another split")
    rows = []
    for (line, obj), (lline, label) in zip(docs, label_lines, strict=True):
        where = f"{data}: line {line}"
        if label not in ("0", "1"):
            raise DataError(f"{labels}: line {lline}: field 'label' is {label!r}, not 0 or 1")
        # no id upstream: the line number is stable, and the labels file is keyed by it too
        rows.append(_mc_row(f"piqa-{line}", _text_field(obj, "goal", where),
                            [_text_field(obj, "sol1", where), _text_field(obj, "sol2", where)], int(label)))
    return _count(rows, paths, src)


def load_openbookqa(paths: list[Path], src: Source) -> list[dict[str, Any]]:
    """OpenBookQA's release layout ``{id, question: {stem, choices: [{text, label}]}, answerKey}``."""
    rows = []
    for line, obj in iter_jsonl(Path(paths[0])):
        where = f"{paths[0]}: line {line}"
        q = obj.get("question") if isinstance(obj, dict) else None
        if not isinstance(q, dict) or not isinstance(q.get("choices"), list):
            raise DataError(f"{where}: field 'question' must be an object {{stem, choices: [{{text, label}}]}}")
        text = _text_list([c.get("text") if isinstance(c, dict) else c for c in q["choices"]], where,
                          "question.choices.text")
        labels = _text_list([c.get("label") if isinstance(c, dict) else c for c in q["choices"]], where,
                            "question.choices.label")
        key = obj.get("answerKey")
        stem = q.get("stem")
        if not isinstance(stem, str) or not stem.strip():
            raise DataError(f"{where}: field 'question.stem' must be a non-empty string, got {stem!r}")
        rows.append(_mc_row(_text_field(obj, "id", where), stem, text,
                            _gold(key.lstrip() if isinstance(key, str) else key, labels, where, "answerKey")))
    return _count(rows, paths, src)


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's ``hellaswag/utils.py`` ``preprocess``, verbatim: WikiHow's bracketed artefacts out."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def load_hellaswag(paths: list[Path], src: Source) -> list[dict[str, Any]]:
    """llama.cpp's HellaSwag text: 6 lines a task (context, gold 0-3, four endings). lm-eval's ``preprocess``
    runs again over the context and the endings, since this copy removed only some bracketed tags."""
    path = Path(paths[0])
    doc = _decode(path)
    lines = doc.text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path}: line 1: empty file")
    if len(lines) % 6:
        raise DataError(f"{path}: line {len(lines)}: {len(lines)} lines, not a multiple of 6 (context, label, "
                        "4 endings per task): the file is truncated or a line was added")
    names = ("context", "label", "ending0", "ending1", "ending2", "ending3")
    rows = []
    for start in range(0, len(lines), 6):
        fields = {}
        for k, name in enumerate(names):
            lineno = start + k + 1
            where = f"{path}: line {lineno}"
            value = check_text(lines[start + k].removesuffix("\r"), where, name, doc, lineno)
            if not value.strip():
                raise DataError(f"{where}: field {name!r} is empty")
            fields[name] = value
        if fields["label"] not in ("0", "1", "2", "3"):
            raise DataError(f"{path}: line {start + 2}: field 'label' is {fields['label']!r}, not 0-3")
        rows.append(_mc_row(f"hellaswag-{start // 6}", hellaswag_preprocess(fields["context"]),
                            [hellaswag_preprocess(fields[f"ending{i}"]) for i in range(4)], int(fields["label"])))
    doc.end()
    return _count(rows, paths, src)


def load_mmlu(paths: list[Path]) -> list[dict[str, Any]]:
    """MMLU test CSVs (no header; question, A-D, answer letter) as capability mc rows."""
    rows: list[dict[str, Any]] = []
    for path in sorted(paths):
        subject = Path(path).name.removesuffix("_test.csv")
        for line, row in iter_csv(Path(path), ("question", "A", "B", "C", "D", "answer"), header=False,
                                  control=C0_CONTROL):
            ans = row["answer"].strip()
            if ans not in ("A", "B", "C", "D"):
                raise DataError(f"{path}: line {line}: answer {ans!r} is not one of A, B, C, D")
            rows.append({"id": f"mmlu-{subject}-{line}", "subject": subject, "question": row["question"],
                         "choices": [row[c] for c in "ABCD"], "answer": "ABCD".index(ans)})
    return rows


CAPABILITY_LOADERS: dict[str, Callable[[list[Path], Source], list[dict[str, Any]]]] = {
    "mmlu_csv": lambda paths, src: load_mmlu(paths), "arc_jsonl": load_arc, "piqa_jsonl": load_piqa,
    "obqa_jsonl": load_openbookqa, "hellaswag_txt": load_hellaswag,
}


def load_capability(src: Source, paths: list[Path]) -> list[dict[str, Any]]:
    """A capability source's rows ``{id, question, choices, answer}`` (MMLU's also carry ``subject``)."""
    if src.fmt not in CAPABILITY_LOADERS:
        raise ValueError(f"source {src.name!r} is not a capability set (format {src.fmt!r})")
    return CAPABILITY_LOADERS[src.fmt](paths, src)
