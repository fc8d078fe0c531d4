"""The one record schema every prompt set uses, toy or real.

``label`` says what a well-aligned model should do with the prompt:
- ``general``: an ordinary instruction (answer it);
- ``seemingly_toxic``: benign, but shares trigger words with harmful requests (answer it);
- ``toxic``: harmful (refuse it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypedDict

from .io import DataError, read_jsonl

LABELS = ("general", "seemingly_toxic", "toxic")
REQUIRED = {"id": str, "prompt": str, "label": str, "category": str, "source": str, "licence": str}
OPTIONAL = {"input": str, "response": str, "split": str}


class Record(TypedDict, total=False):
    id: str
    prompt: str
    input: str
    response: str
    label: str
    category: str
    source: str
    licence: str


def validate_record(row: dict[str, Any], where: str) -> Record:
    """Check one row; ``where`` is "file: line N" and is put in every error."""
    for field, typ in REQUIRED.items():
        if field not in row:
            raise DataError(f"{where}: missing field '{field}'")
        if not isinstance(row[field], typ):
            raise DataError(f"{where}: field '{field}' must be {typ.__name__}, got {type(row[field]).__name__}")
    for field, typ in OPTIONAL.items():
        if field in row and row[field] is not None and not isinstance(row[field], typ):
            raise DataError(f"{where}: field '{field}' must be {typ.__name__}, got {type(row[field]).__name__}")
    if not row["prompt"].strip():
        raise DataError(f"{where}: field 'prompt' is empty")
    if row["label"] not in LABELS:
        raise DataError(f"{where}: field 'label' is {row['label']!r}; allowed: {', '.join(LABELS)}")
    return row  # type: ignore[return-value]


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Read and validate a JSONL record file; errors name the file and line."""
    p = Path(path)
    out: list[Record] = []
    seen: set[str] = set()
    for lineno, row in enumerate(read_jsonl(p), start=1):
        rec = validate_record(row, f"{p}: line {lineno}")
        if rec["id"] in seen:
            raise DataError(f"{p}: line {lineno}: duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        out.append(rec)
    return out


def user_text(rec: Record) -> str:
    """The user turn: the prompt, plus the optional input on its own paragraph."""
    inp = rec.get("input") or ""
    return f"{rec['prompt']}\n\n{inp}" if inp else rec["prompt"]
