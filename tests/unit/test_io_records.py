"""Atomic writers, readers that name file and line, and the shared record schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overrefusal.io import (
    DataError, atomic_dir, atomic_path, dumps, read_json, read_jsonl, sha256_file, write_json, write_jsonl,
)
from overrefusal.records import LABELS, read_records, user_text, validate_record


class Boom(RuntimeError):
    pass


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name)


def good(**over):
    row = {"id": "r1", "prompt": "how do i kill a mosquito ?", "label": "seemingly_toxic", "category": "safe_targets",
           "source": "toyworld", "licence": "MIT"}
    row.update(over)
    return row


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_success(tmp_path):
    final = tmp_path / "sub" / "out.txt"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_text("done")
        assert not final.exists()  # nothing under the final name until success
    assert final.read_text() == "done"
    assert leftovers(final.parent) == []


def test_atomic_path_exception_leaves_nothing(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise Boom
    assert not final.exists()
    assert leftovers(tmp_path) == []


def test_atomic_path_exception_keeps_previous_file(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old complete")
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_text("new partial")
            raise Boom
    assert final.read_text() == "old complete"
    assert leftovers(tmp_path) == []


def test_write_jsonl_failing_generator_never_leaves_partial_file(tmp_path):
    final = tmp_path / "rows.jsonl"

    def rows():
        yield {"a": 1}
        yield {"a": 2}
        raise Boom

    with pytest.raises(Boom):
        write_jsonl(final, rows())
    assert not final.exists()
    assert leftovers(tmp_path) == []


def test_write_jsonl_unserialisable_row(tmp_path):
    final = tmp_path / "rows.jsonl"
    with pytest.raises(TypeError):
        write_jsonl(final, [{"a": 1}, {"b": object()}])
    assert not final.exists() and leftovers(tmp_path) == []


def test_write_json_failure_keeps_previous(tmp_path):
    final = tmp_path / "x.json"
    write_json(final, {"v": 1})
    with pytest.raises(TypeError):
        write_json(final, {"v": object()})
    assert read_json(final) == {"v": 1}
    assert leftovers(tmp_path) == []


def test_atomic_dir_success_replaces_existing(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "stale.bin").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_text("new")
        assert (final / "stale.bin").exists()
    assert sorted(p.name for p in final.iterdir()) == ["weights.bin"]
    assert leftovers(tmp_path) == []


def test_atomic_dir_exception_leaves_nothing(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(Boom):
        with atomic_dir(final) as tmp:
            (tmp / "half.bin").write_text("x")
            raise Boom
    assert not final.exists()
    assert leftovers(tmp_path) == []


def test_atomic_dir_exception_keeps_previous(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights.bin").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(final) as tmp:
            (tmp / "weights.bin").write_text("partial")
            raise Boom
    assert (final / "weights.bin").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_outputs_get_normal_permissions(tmp_path):
    """Atomic outputs get the same permissions as any file the user creates (umask), not mkstemp's 0600."""
    plain_file = tmp_path / "plain.txt"
    plain_file.write_text("x")
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    write_json(tmp_path / "atomic.json", {"a": 1})
    with atomic_dir(tmp_path / "atomic_dir") as tmp:
        (tmp / "f").write_text("x")
    assert oct((tmp_path / "atomic.json").stat().st_mode & 0o777) == oct(plain_file.stat().st_mode & 0o777)
    assert oct((tmp_path / "atomic_dir").stat().st_mode & 0o777) == oct(plain_dir.stat().st_mode & 0o777)


# --------------------------------------------------------------------------- writers and readers


def test_jsonl_round_trip_and_determinism(tmp_path):
    rows = [{"b": 1, "a": "é"}, {"z": [1, 2], "y": None}]
    assert write_jsonl(tmp_path / "a.jsonl", rows) == 2
    assert read_jsonl(tmp_path / "a.jsonl") == rows
    write_jsonl(tmp_path / "b.jsonl", [dict(reversed(list(r.items()))) for r in rows])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert "é" in (tmp_path / "a.jsonl").read_text(encoding="utf-8")


def test_write_json_deterministic(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": {"d": 2, "c": 3}})
    assert (tmp_path / "a.json").read_text() == dumps({"a": {"c": 3, "d": 2}, "b": 1})
    assert read_json(tmp_path / "a.json") == {"a": {"c": 3, "d": 2}, "b": 1}


def test_read_jsonl_skips_blank_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_bad_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(DataError) as info:
        read_jsonl(p)
    msg = str(info.value)
    assert str(p) in msg and "line 3" in msg


def test_read_jsonl_non_object_names_file_and_line(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"line 2.*object"):
        read_jsonl(p)


def test_read_json_bad_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(DataError) as info:
        read_json(p)
    assert str(p) in str(info.value) and "line 4" in str(info.value)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --------------------------------------------------------------------------- records


def test_valid_record_passes():
    row = good(input="ctx", response="sure .", split="train")
    assert validate_record(row, "f: line 1") is row
    assert validate_record(good(input=None), "f: line 1")
    for label in LABELS:
        validate_record(good(label=label), "w")


@pytest.mark.parametrize("field", ["id", "prompt", "label", "category", "source", "licence"])
def test_missing_field_named(field):
    row = good()
    del row[field]
    with pytest.raises(DataError) as info:
        validate_record(row, "data.jsonl: line 7")
    assert str(info.value).startswith("data.jsonl: line 7: ")
    assert f"'{field}'" in str(info.value) and "missing" in str(info.value)


@pytest.mark.parametrize(("field", "value"), [("id", 3), ("prompt", ["x"]), ("label", None), ("response", 1),
                                              ("input", {"a": 1}), ("licence", 1.0)])
def test_wrong_type_named(field, value):
    with pytest.raises(DataError) as info:
        validate_record(good(**{field: value}), "w: line 2")
    msg = str(info.value)
    assert msg.startswith("w: line 2: ") and f"'{field}'" in msg and "str" in msg and type(value).__name__ in msg


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt(prompt):
    with pytest.raises(DataError, match=r"w: field 'prompt' is empty"):
        validate_record(good(prompt=prompt), "w")


def test_bad_label_lists_allowed():
    with pytest.raises(DataError) as info:
        validate_record(good(label="harmful"), "w")
    msg = str(info.value)
    assert "'label'" in msg and "'harmful'" in msg
    for label in LABELS:
        assert label in msg


def test_read_records_names_file_and_line(tmp_path):
    p = tmp_path / "recs.jsonl"
    write_jsonl(p, [good(id="a"), good(id="b", label="nope")])
    with pytest.raises(DataError) as info:
        read_records(p)
    assert f"{p}: line 2" in str(info.value) and "'label'" in str(info.value)


def test_read_records_duplicate_id(tmp_path):
    p = tmp_path / "recs.jsonl"
    write_jsonl(p, [good(id="a"), good(id="b"), good(id="a")])
    with pytest.raises(DataError, match=r"line 3: duplicate id 'a'"):
        read_records(p)


def test_read_records_ok(tmp_path):
    p = tmp_path / "recs.jsonl"
    rows = [good(id="a"), good(id="b", response="x")]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_records(p) == rows


def test_user_text():
    assert user_text(good()) == "how do i kill a mosquito ?"
    assert user_text(good(input="")) == "how do i kill a mosquito ?"
    assert user_text(good(input=None)) == "how do i kill a mosquito ?"
    assert user_text(good(input="in my tent")) == "how do i kill a mosquito ?\n\nin my tent"
