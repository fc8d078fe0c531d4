"""Strict loaders (issue 16): each way a real file can be broken is refused with file, line and field.

Every broken file is built in tmp_path from the real file of the local mirror (``default_data_dir()``).
Where the mirror lacks it (OR-Bench and PHTest are not in ../shared/data, see its SOURCES.md), the
a file written in the same layout stands in (``_stand_in``), held to its own row count as a
``data.real.pins.<source>.rows`` would hold it, so every case runs everywhere. Each test first shows the
broken copy refused, naming file:line:field, then that the intact copy loads exactly its rows with every
field equal to what ``csv.DictReader`` reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from overrefusal.data import SOURCES, load_records, stage_source
from overrefusal.data.fetch import StagedPaths, origin_of, staged_paths
from overrefusal.data.loaders import LoadReport, iter_csv
from overrefusal.io import DataError
from overrefusal.judge_validation import default_data_dir
from overrefusal.records import Record

DATA = default_data_dir()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "raw"

# CSV sources with a category column: (prompt column, category column, id column or None).
CSV_SOURCES = {
    "orbench_hard": ("prompt", "category", None),
    "phtest": ("Request", "Harmfulness", "ID"),
    "xstest": ("prompt", "type", "id"),
    "strongreject": ("forbidden_prompt", "category", None),
}
WITH_IDS = [n for n, (_, _, i) in CSV_SOURCES.items() if i]


@dataclass
class Rec:
    first: int  # 1-based line of the record's first line
    last: int
    fields: list[str]
    simple: bool  # written as the bare fields joined by commas (no quoting at all)


@dataclass
class RealCSV:
    """A copy of one real CSV in tmp_path, and its records with their line spans."""

    name: str
    path: Path
    text: str
    records: list[Rec]
    prompt: str
    category: str
    id: str | None
    expected: int = 0  # the rows the intact copy must have: the registry's, or the fixture's own count
    fixture: bool = False  # the project's fixture stands in for a file the mirror lacks

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    @property
    def header(self) -> list[str]:
        return self.records[0].fields

    def col(self, name: str) -> int:
        return self.header.index(name)

    def pick(self, pred: Callable[[Rec], bool]) -> Rec:
        for r in self.records[1:]:
            if pred(r):
                return r
        pytest.skip(f"{self.name}: the real file has no row of the kind this case needs")

    def replace(self, rec: Rec, raw: str) -> str:
        """The file with ``rec``'s lines replaced by ``raw`` (its own line ending kept)."""
        lines = self.lines
        eol = lines[rec.last - 1][len(lines[rec.last - 1].rstrip("\r\n")):]
        return "".join(lines[:rec.first - 1]) + raw + eol + "".join(lines[rec.last:])

    def offset(self, rec: Rec, col: int) -> int:
        """Character offset of field ``col`` in a simple record's line."""
        assert rec.simple
        return sum(len(f) + 1 for f in rec.fields[:col])

    def write(self, data: str | bytes) -> Path:
        self.path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return self.path

    def load(self) -> tuple[list[Record], LoadReport]:
        if self.fixture:
            return load_records(SOURCES[self.name], [self.path], expected_rows=self.expected)
        return load_records(SOURCES[self.name], [self.path])


def _records(text: str) -> list[Rec]:
    lines = text.splitlines(keepends=True)
    reader = csv.reader(io.StringIO(text, newline=""))
    out, prev = [], 0
    for row in reader:
        raw = "".join(lines[prev:reader.line_num]).rstrip("\r\n")
        out.append(Rec(prev + 1, reader.line_num, row, raw == ",".join(row)))
        prev = reader.line_num
    return out


def _stand_in(name: str, n: int = 24) -> str:
    """A file in the real layout of ``name`` for a mirror that lacks it: the header, then rows of each
    documented category, some bare (one line, no quotes) and some quoted with commas, as the real ones are."""
    prompt, category, id_col = CSV_SOURCES[name]
    cats = sorted(SOURCES[name].categories or {"x"})
    header = [c for c in (id_col, prompt, category) if c]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for i in range(n):
        text = f"How do I get rid of the stubborn weeds in garden bed {i}" if i % 3 else \
            f"Describe, in a few steps, how a bank vault is protected, case {i}"
        row = {id_col: str(i), prompt: text, category: cats[i % len(cats)]}
        w.writerow([row[c] for c in header])
    return out.getvalue()


def real_csv(name: str, tmp_path: Path) -> RealCSV:
    layout = SOURCES[name].files[0].path
    fixture = DATA is None or not (Path(DATA) / layout).is_file()
    dest = tmp_path / layout
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fixture:
        dest.write_text(_stand_in(name), encoding="utf-8")
    else:
        shutil.copyfile(Path(DATA) / layout, dest)
    text = dest.read_bytes().decode("utf-8")
    records = _records(text)
    expected = len(records) - 1 if fixture else int(SOURCES[name].rows or 0)
    return RealCSV(name, dest, text, records, *CSV_SOURCES[name], expected=expected, fixture=fixture)


def refused(real: RealCSV, data: str | bytes, pattern: str) -> str:
    """Write ``data`` over the copy, check it is refused with ``pattern``, and restore the real bytes."""
    intact = real.path.read_bytes()
    real.write(data)
    with pytest.raises(DataError) as exc:
        real.load()
    msg = str(exc.value)
    assert msg.startswith(f"{real.path}: "), msg
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    real.path.write_bytes(intact)
    return msg


def assert_intact(real: RealCSV) -> None:
    """The real copy loads exactly its documented rows, each field as csv.DictReader reads it."""
    recs, rep = real.load()
    with real.path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(recs) == len(rows) == real.expected == rep.n_file_rows == rep.expected_rows
    if not real.fixture:
        assert real.expected == SOURCES[real.name].rows
    for rec, row in zip(recs, rows):
        assert rec["prompt"] == row[real.prompt] and rec["category"] == row[real.category]
        assert rec.get("orig_id") == (row[real.id] if real.id else None)


@pytest.fixture(params=sorted(CSV_SOURCES))
def real(request: pytest.FixtureRequest, tmp_path: Path) -> RealCSV:
    return real_csv(request.param, tmp_path)


# ------------------------------------------------------------------------------------------ the table of issue 16


def test_unquoted_prompt_with_commas(real: RealCSV) -> None:
    k = real.col(real.prompt)
    rec = real.pick(lambda r: "," in r.fields[k] and '"' not in r.fields[k] and "\n" not in r.fields[k]
                    and real.lines[r.first - 1].rstrip("\r\n")
                    == ",".join(f'"{v}"' if i == k else v for i, v in enumerate(r.fields)))
    broken = real.replace(rec, ",".join(rec.fields))  # the prompt's quotes dropped: its commas split it
    n = len(rec.fields) + rec.fields[k].count(",")
    refused(real, broken, rf"^\S+: line {rec.first}: field {len(real.header) + 1} \(after '{real.header[-1]}'\): "
            rf"{n} fields, expected {len(real.header)} .*comma that is not quoted")
    assert_intact(real)


def test_stray_opening_quote(real: RealCSV) -> None:
    k = real.col(real.prompt)
    rec = real.pick(lambda r: r.simple and r.first == r.last)
    at = real.offset(rec, k)
    line = real.lines[rec.first - 1].rstrip("\r\n")
    broken = real.replace(rec, line[:at] + '"' + line[at:])
    msg = refused(real, broken, rf"^\S+: line {rec.first}: field '{real.prompt}': malformed CSV \(.*\): the quoted "
                  rf"field opened at line {rec.first}, column {at + 1} ")
    assert "stray or unescaped" in msg or "never closed" in msg
    assert_intact(real)


def test_truncated_at_a_row_boundary(real: RealCSV) -> None:
    keep = real.records[(2 * len(real.records)) // 3]  # the last record kept
    broken = "".join(real.lines[:keep.last])
    n = len(real.records[1:real.records.index(keep) + 1])
    refused(real, broken, rf"^{re.escape(str(real.path))}: {n} rows, expected {real.expected} "
            rf"\(the documented row count of source '{real.name}'.*last row read is at line {keep.first}\.")
    assert_intact(real)


def test_empty_file_and_header_alone(real: RealCSV) -> None:
    refused(real, b"", r"^\S+: line 1: empty file; expected the header")
    refused(real, real.lines[0], rf"^\S+: line 2: no rows after the header \({', '.join(real.header)}\)")
    assert_intact(real)


def test_last_field_truncated(real: RealCSV) -> None:
    last = real.records[-1]
    k = real.col(real.category)
    value = last.fields[k]
    cut = value[:max(1, len(value) // 2)]
    raw = "".join(real.lines[last.first - 1:last.last]).rstrip("\r\n")
    if k == len(real.header) - 1 and raw.endswith("," + value):  # the category ends the row, bare
        head = raw[:len(raw) - len(value)]
    elif last.simple:
        head = raw[:real.offset(last, k)]
    else:
        pytest.skip(f"{real.name}: the last record's category is quoted")
    broken = "".join(real.lines[:last.first - 1]) + head + cut
    if k == len(real.header) - 1:
        want = (rf"^\S+: line {last.first}: field '{real.category}' is '{re.escape(cut)}', not a documented "
                rf"category of source '{real.name}' \(")
    else:
        want = rf"^\S+: line {last.first}: field '{real.header[k + 1]}': missing; {k + 1} field\(s\), expected"
    refused(real, broken, want)
    assert_intact(real)


@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\x7f", "\x85"])
def test_nul_and_control_characters(real: RealCSV, ch: str) -> None:
    k = real.col(real.prompt)
    rec = real.pick(lambda r: r.simple and r.first == r.last and len(r.fields[k]) > 5)
    at = real.offset(rec, k) + 3
    line = real.lines[rec.first - 1].rstrip("\r\n")
    refused(real, real.replace(rec, line[:at] + ch + line[at:]),
            rf"^\S+: line {rec.first}: field '{real.prompt}': control character U\+{ord(ch):04X} .* at character 4 ")
    assert_intact(real)


def test_non_utf8_byte_named_by_line_and_column(real: RealCSV) -> None:
    k = real.col(real.prompt)
    rec = real.pick(lambda r: r.simple and r.first == r.last and r.fields[k].isascii() and len(r.fields[k]) > 5)
    at = real.offset(rec, k) + 2
    data = real.text.encode("utf-8")
    pos = len("".join(real.lines[:rec.first - 1]).encode("utf-8")) + at
    msg = refused(real, data[:pos] + b"\xff" + data[pos:],
                  rf"^\S+: line {rec.first}, column {at + 1}: field '{real.prompt}': not UTF-8 text \(byte 0xff\)")
    assert "position" not in msg and str(pos) not in msg.split(":", 1)[1].split("column")[0]  # no byte offset
    assert_intact(real)


@pytest.fixture(params=WITH_IDS)
def with_ids(request: pytest.FixtureRequest, tmp_path: Path) -> RealCSV:
    return real_csv(request.param, tmp_path)


@pytest.mark.parametrize("case", ["empty", "duplicate", "not a number"])
def test_source_ids(with_ids: RealCSV, case: str) -> None:
    real = with_ids
    k = real.col(str(real.id))
    first = real.records[1]
    rec = real.pick(lambda r: r.simple and r.first == r.last and r.first > first.last)
    value = {"empty": "", "duplicate": first.fields[k], "not a number": f"x{rec.fields[k]}"}[case]
    fields = [value if i == k else v for i, v in enumerate(rec.fields)]
    want = {"empty": "empty id", "duplicate": rf"duplicate id '{first.fields[k]}' \(first at line {first.first}\)",
            "not a number": rf"id 'x{rec.fields[k]}' is not a number"}[case]
    refused(real, real.replace(rec, ",".join(fields)), rf"^\S+: line {rec.first}: field '{real.id}': {want}")
    assert_intact(real)  # and the ids are kept, as orig_id, equal to the source's


# ------------------------------------------------------------------------------------------ JSON sources


def _mirror(layout: str, tmp_path: Path) -> Path:
    if DATA is None or not (Path(DATA) / layout).is_file():
        pytest.skip(f"{layout} is not in the local data mirror")
    dest = tmp_path / layout
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(DATA) / layout, dest)
    return dest


def test_json_sources_refuse_controls_bad_bytes_short_files_and_duplicate_ids(tmp_path: Path) -> None:
    alpaca = _mirror("alpaca/alpaca_5000.json", tmp_path)
    rows = json.loads(alpaca.read_text())
    src = SOURCES["alpaca_5k"]
    alpaca.write_text(json.dumps(rows[:-1], indent=1))
    with pytest.raises(DataError, match=rf"^{re.escape(str(alpaca))}: 4999 rows, expected 5000 "):
        load_records(src, [alpaca])
    alpaca.write_text("[]")
    with pytest.raises(DataError, match=r"alpaca_5000.json: line 1: no rows"):
        load_records(src, [alpaca])
    bad = [dict(rows[0], instruction="Give\u0000three tips")] + rows[1:]
    alpaca.write_text(json.dumps(bad, indent=1))
    with pytest.raises(DataError, match=r"alpaca_5000.json: line 2: field 'instruction': control character U\+0000"):
        load_records(src, [alpaca])
    alpaca.write_text(json.dumps(rows, indent=1))
    assert len(load_records(src, [alpaca])[0]) == 5000

    cc = _mirror("coconot/coconot_contrast_eval.jsonl", tmp_path)
    lines = cc.read_bytes().splitlines(keepends=True)
    src = SOURCES["coconot_contrast"]
    i = lines[4].index(b'"prompt": "') + len(b'"prompt": "') + 1
    cc.write_bytes(b"".join(lines[:4] + [lines[4][:i] + b"\xff" + lines[4][i:]] + lines[5:]))
    with pytest.raises(DataError, match=rf"coconot_contrast_eval.jsonl: line 5, column {i + 1}: field 'prompt': "
                                        r"not UTF-8 text \(byte 0xff\)"):
        load_records(src, [cc])
    dup = json.loads(lines[4]) | {"id": json.loads(lines[1])["id"]}
    cc.write_bytes(b"".join(lines[:4] + [json.dumps(dup).encode() + b"\n"] + lines[5:]))
    with pytest.raises(DataError, match=r"coconot_contrast_eval.jsonl: line 5: field 'id': duplicate id .* \(first "
                                        r"at line 2\)"):
        load_records(src, [cc])
    other = json.loads(lines[4]) | {"subcategory": "underspecifie"}
    cc.write_bytes(b"".join(lines[:4] + [json.dumps(other).encode() + b"\n"] + lines[5:]))
    with pytest.raises(DataError, match=r"line 5: field 'subcategory' is 'underspecifie', not a documented "
                                        r"category of source 'coconot_contrast'"):
        load_records(src, [cc])
    cc.write_bytes(b"".join(lines))
    recs, _ = load_records(src, [cc])
    assert len(recs) == 379 and [r["orig_id"] for r in recs] == [json.loads(x)["id"] for x in lines]


# ------------------------------------------------------------------------------------------ counts, pins, subsets


def test_a_selection_or_subset_still_needs_the_whole_file(tmp_path: Path) -> None:
    real = real_csv("xstest", tmp_path)
    safe, rep = load_records(SOURCES["xstest"], [real.path], {"label": "safe"})
    assert len(safe) == 250 and rep.n_file_rows == 450  # the option selects; the file is counted whole
    real.write("".join(real.lines[:300]))
    with pytest.raises(DataError, match=r"xstest_prompts.csv: 299 rows, expected 450 "):
        load_records(SOURCES["xstest"], [real.path], {"label": "safe"})


def test_pinned_row_count_travels_with_the_staged_paths(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "orbench", raw / "orbench")
    src = SOURCES["orbench_hard"]
    data = (raw / src.files[0].path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    st = stage_source(src, raw_dir=str(raw), download_dir=None, pins={"orbench_hard": {"sha256": sha, "rows": 7}})
    paths = staged_paths(st)
    assert isinstance(paths, StagedPaths) and paths.expected_rows == st["expected_rows"] == 7
    assert len(load_records(src, paths)[0]) == 7
    with pytest.raises(DataError, match=r"or-bench-hard-1k.csv: 7 rows, expected 1319 "):
        load_records(src, [Path(p) for p in paths])  # plain paths: the registry's documented count
    st = stage_source(src, raw_dir=str(raw), download_dir=None, pins={"orbench_hard": {"sha256": sha}})
    with pytest.raises(DataError, match=r"7 rows, expected 1319 .*set data.real.pins.orbench_hard.rows"):
        load_records(src, staged_paths(st))
    with pytest.raises(ValueError, match=r"data.real.pins.orbench_hard.rows must be a positive integer"):
        stage_source(src, raw_dir=str(raw), download_dir=None, pins={"orbench_hard": {"rows": "7"}})


# ------------------------------------------------------------------------------------------ recorded origins


def test_unpinned_mirror_copy_records_its_path_and_hash_not_a_hub_revision(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "phtest", raw / "phtest")
    src = SOURCES["phtest"]
    local = raw / src.files[0].path
    sha = hashlib.sha256(local.read_bytes()).hexdigest()
    (rec,) = stage_source(src, raw_dir=str(raw), download_dir=None)["files"]
    assert rec["origin"] == f"local copy {local} (sha256 {sha}); no pinned sha256 ties it to an upstream revision"
    assert rec["revision"] is None and not rec["pinned"] and not rec["downloaded"]
    assert "huggingface" not in rec["origin"] and str(src.files[0].revision) not in json.dumps(rec)
    # pinned: the hash ties the copy to the pinned upstream revision, which is then recorded
    (rec,) = stage_source(src, raw_dir=str(raw), download_dir=None, pins={"phtest": {"sha256": sha}})["files"]
    assert rec["revision"] == src.files[0].revision and rec["origin"].startswith(f"local copy {local} (sha256 {sha}), "
                                                                                  "identical to the pinned bytes of https://huggingface.co/")


def test_no_placeholder_revision_in_a_recorded_origin(tmp_path: Path) -> None:
    f = SOURCES["orbench_hard"].files[0]
    assert origin_of(f, None) == "HF dataset bench-llm/or-bench, file or-bench-hard-1k.csv, no revision pinned"
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES / "orbench", raw / "orbench")
    (rec,) = stage_source(SOURCES["orbench_hard"], raw_dir=str(raw), download_dir=None)["files"]
    assert "<" not in rec["origin"] and rec["origin"].startswith(f"local copy {raw / f.path} (sha256 ")


def test_unpinned_hub_download_records_the_commit_it_was_read_at(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.fake_hf_hub import add_repo, serve_hub, use_hub

    src = SOURCES["orbench_hard"]
    f = src.files[0]
    root = tmp_path / "hub"
    root.mkdir()
    data = (FIXTURES / f.path).read_bytes()
    commit = add_repo(root, "dataset", str(f.hf_repo), "main", {str(f.hf_file): data})
    with serve_hub(root) as url:
        use_hub(monkeypatch, url, tmp_path / "hf_home")
        st = stage_source(src, raw_dir=None, download_dir=str(tmp_path / "dl"), download=True, allow_unpinned=True)
    (rec,) = st["files"]
    assert rec["downloaded"] and rec["revision"] == commit and re.fullmatch(r"[0-9a-f]{40}", commit)
    assert rec["origin"] == f"https://huggingface.co/datasets/{f.hf_repo}/resolve/{commit}/{f.hf_file}"


# ------------------------------------------------------------------------------------------ the CSV reader itself


@pytest.mark.parametrize("text, pattern", [
    ('a,b\n"x,1\n2,3\n', r"line 2: field 'a': malformed CSV .*opening quote \(at line 2, column 1\) is never closed"),
    ('a,b\n1,"x"y\n', (r"line 2: field 'b': malformed CSV .*quoted field opened at line 2, column 3 is closed by "
                       r"the quote at line 2, column 5, which is followed by text")),
    ('a,b\n1,2\n\n3,4\n', None),  # a blank line is no row (as for csv.DictReader)
    ('a,b,a\n1,2,3\n', r"line 1: column\(s\) 'a' appear twice in the header"),
    ('a,b\n1\n', r"line 2: field 'b': missing; 1 field\(s\), expected 2"),
])
def test_csv_reader_cases(tmp_path: Path, text: str, pattern: str | None) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    if pattern is None:
        assert [r for _, r in iter_csv(p, ("a", "b"))] == list(csv.DictReader(io.StringIO(text)))
        return
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: {pattern}"):
        list(iter_csv(p, ("a", "b")))
