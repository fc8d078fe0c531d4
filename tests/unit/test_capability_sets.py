"""The mirror's capability sets (ARC, PIQA, OpenBookQA, HellaSwag) as lm-eval local tasks.

Loaders on tiny fixtures in each set's published layout (tests/fixtures/raw, our own text), their errors on
bad rows, the task lm-eval builds from our rows against the one it builds from its own YAML for the same
documents, the preset checks, and one lm-eval run of a staged set on the tiny model.
"""

from __future__ import annotations

import bz2
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from overrefusal import capability
from overrefusal.data import SOURCES, ChecksumError, stage_source
from overrefusal.data.fetch import StagedPaths, staged_paths
from overrefusal.data.loaders import hellaswag_preprocess, load_capability
from overrefusal.io import DataError, write_jsonl
from overrefusal.judge_validation import default_data_dir
from tests.pipeline import preset_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "raw"
DATA = default_data_dir()
SETS = ("arc_easy", "arc_challenge", "piqa", "openbookqa", "hellaswag")


def _whole(name: str, root: Path = FIXTURES) -> list[dict[str, Any]]:
    """A fixture's rows, not held to the real set's documented count."""
    return load_capability(SOURCES[name], StagedPaths([root / f.path for f in SOURCES[name].files], None))


def _copy(tmp_path: Path, name: str) -> list[Path]:
    """The fixture files of ``name`` copied under tmp_path, to be damaged by a test."""
    out = []
    for f in SOURCES[name].files:
        dest = tmp_path / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / f.path, dest)
        out.append(dest)
    return out


# --------------------------------------------------------------------------- loaders


def test_fixture_rows_in_the_local_mc_layout() -> None:
    arc = _whole("arc_easy")
    assert [len(r["choices"]) for r in arc] == [3, 4, 5, 4, 4, 5, 3, 4]
    # answerKey looked up among the labels, letters or digits alike
    assert [r["answer"] for r in arc] == [2, 0, 4, 0, 3, 0, 2, 0]
    assert arc[0] == {"id": "toy_arc_0", "question": "Which tool measures the length of board 0?",
                      "choices": ["a ruler 0", "a spoon", "a kettle"], "answer": 2}
    piqa = _whole("piqa")
    assert [r["answer"] for r in piqa] == [0, 1, 0, 1, 0, 1] and piqa[0]["id"] == "piqa-1"
    assert piqa[0]["choices"][1] == "Leave it in the rain. "  # kept as published: lm-eval scores it so
    obqa = _whole("openbookqa")
    assert obqa[0]["question"] == "A plant grows toward the window 0 because" and obqa[0]["answer"] == 0
    hs = _whole("hellaswag")
    # lm-eval's preprocess: " [title]" -> ". ", other tags out, one double space collapsed
    assert hs[0]["question"] == "Baking bread: Knead the dough 0.. Let it rise. a baker"
    assert hs[0]["choices"] == ["shapes the loaf.", "sings to the oven.", "leaves the kitchen.", "paints a fence."]
    assert [r["answer"] for r in hs] == [0, 1, 2, 3, 0]


@pytest.mark.parametrize("name", SETS)
def test_staging_records_each_files_sha256_and_holds_the_pin(name: str, tmp_path: Path) -> None:
    key = r" \(a mapping; this file's key is piqa/valid.jsonl\)" if name == "piqa" else ""
    with pytest.raises(ChecksumError, match=rf"does not match the pinned .*set data.real.pins.{name}.sha256{key}\.$"):
        stage_source(SOURCES[name], raw_dir=str(FIXTURES), download_dir=None)  # the registry pins the real bytes
    from tests.unit.test_real_data import fixture_pins

    st = stage_source(SOURCES[name], raw_dir=str(FIXTURES), download_dir=None, pins=fixture_pins(FIXTURES))
    assert [f["layout"] for f in st["files"]] == [f.path for f in SOURCES[name].files]
    assert all(f["pinned"] and len(f["sha256"]) == 64 for f in st["files"])
    assert load_capability(SOURCES[name], staged_paths(st)) == _whole(name)
    with pytest.raises(DataError, match=rf"rows, expected {SOURCES[name].rows} \(the documented row count"):
        load_capability(SOURCES[name], [FIXTURES / f.path for f in SOURCES[name].files])


def _jsonl(path: Path, edit: Any) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


BAD_JSONL = [
    ("arc_easy", lambda rs: rs[2].update(answerKey="Z"), r"ARC-Easy-test.jsonl: line 3: field 'answerKey' is 'Z'"),
    ("arc_easy", lambda rs: rs[1]["choices"]["label"].pop(), r"line 2: field 'choices.label' has 3 labels for 4"),
    ("arc_easy", lambda rs: rs[0].update(question=" "), r"line 1: field 'question' is empty"),
    ("arc_easy", lambda rs: rs[3]["choices"]["text"].__setitem__(1, 7), r"line 4: field 'choices.text\[1\]'"),
    ("arc_easy", lambda rs: rs[4].update(id="toy_arc_0"), r"id 'toy_arc_0' appears 2 times"),
    ("piqa", lambda rs: rs[4].pop("sol2"), r"valid.jsonl: line 5: missing field 'sol2'"),
    ("openbookqa", lambda rs: rs[1]["question"].update(stem=""), r"test.jsonl: line 2: field 'question.stem'"),
    ("openbookqa", lambda rs: rs[0].update(answerKey="E"), r"test.jsonl: line 1: field 'answerKey' is 'E'"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BAD_JSONL)
def test_bad_rows_name_file_line_and_field(name: str, edit: Any, message: str, tmp_path: Path) -> None:
    paths = _copy(tmp_path, name)
    _jsonl(paths[0], edit)
    with pytest.raises(DataError, match=message):
        load_capability(SOURCES[name], StagedPaths(paths, None))


def test_bad_piqa_labels_and_hellaswag_lines_are_named(tmp_path: Path) -> None:
    data, labels = _copy(tmp_path, "piqa")
    labels.write_text("0\n1\n2\n0\n1\n0\n")
    with pytest.raises(DataError, match=r"valid-labels.lst: line 3: field 'label' is '2', not 0 or 1"):
        load_capability(SOURCES["piqa"], StagedPaths([data, labels], None))
    labels.write_text("0\n1\n0\n")
    with pytest.raises(DataError, match=r"valid-labels.lst: 3 labels for the 6 rows of .*valid.jsonl"):
        load_capability(SOURCES["piqa"], StagedPaths([data, labels], None))
    data.write_text(data.read_text().replace("day 1", "day \\u0001", 1))
    labels.write_text("0\n1\n0\n1\n0\n1\n")
    with pytest.raises(DataError, match=r"valid.jsonl: line 2: field 'goal': control character U\+0001"):
        load_capability(SOURCES["piqa"], StagedPaths([data, labels], None))

    (hs,) = _copy(tmp_path, "hellaswag")
    lines = bz2.decompress(hs.read_bytes()).decode().split("\n")
    hs.write_bytes(bz2.compress("\n".join(lines[:7] + ["x"] + lines[8:]).encode()))
    with pytest.raises(DataError, match=r"hellaswag_val_full.txt.bz2: line 8: field 'label' is 'x', not 0-3"):
        load_capability(SOURCES["hellaswag"], StagedPaths([hs], None))
    hs.write_bytes(bz2.compress("\n".join(lines[:9] + [""] + lines[10:]).encode()))
    with pytest.raises(DataError, match=r"line 10: field 'ending1' is empty"):
        load_capability(SOURCES["hellaswag"], StagedPaths([hs], None))
    hs.write_bytes(bz2.compress("\n".join(lines[:-3]).encode()))
    with pytest.raises(DataError, match=r"line 28: 28 lines, not a multiple of 6"):
        load_capability(SOURCES["hellaswag"], StagedPaths([hs], None))
    hs.write_bytes(b"not bzip2")
    with pytest.raises(DataError, match="not a valid bzip2 file"):
        load_capability(SOURCES["hellaswag"], StagedPaths([hs], None))


@pytest.mark.skipif(DATA is None or not Path(DATA).is_dir(), reason="no local data mirror")
def test_mirror_sets_match_sources_md() -> None:
    """Row and label counts SOURCES.md documents for the mirror's files, read through the pinned staging."""
    got = {}
    for name in SETS:
        st = stage_source(SOURCES[name], raw_dir=str(DATA), download_dir=None)
        assert all(f["pinned"] for f in st["files"])
        got[name] = load_capability(SOURCES[name], staged_paths(st))
        assert len(got[name]) == SOURCES[name].rows
    assert sum(len(r["choices"]) == 3 for r in got["arc_easy"]) == 7
    assert sum(len(r["choices"]) == 5 for r in got["arc_easy"]) == 4
    assert sum(r["answer"] for r in got["piqa"]) == 928
    assert [sum(r["answer"] == k for r in got["hellaswag"]) for k in range(4)] == [2515, 2485, 2584, 2458]


# --------------------------------------------------------------------------- lm-eval's own definitions


def _lm_eval_task(yaml_name: str, data: Path, split: str) -> Any:
    """lm-eval's task from its own YAML, with the hub dataset swapped for a local file in the hub's layout."""
    import lm_eval.tasks
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lm_eval.tasks.__file__).parent / yaml_name)
    splits: dict[str, str | None] = {"training_split": None, "validation_split": None, "test_split": None}
    splits[f"{split}_split"] = split  # the split lm-eval evaluates, as its YAML names it
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {split: str(data)}}, **splits)
    return ConfigurableTask(config=cfg)


def _ours(name: str, rows: list[dict[str, Any]], tmp_path: Path) -> Any:
    """Our local task over ``rows``, built by lm-eval from ``local_task_configs`` with the smol preset's spec."""
    from lm_eval.api.task import ConfigurableTask

    prompt = SOURCES[name].options["doc_to_text"]  # what config.capability_errors holds a preset to
    default = {"kind": "mc", "num_fewshot": 0, **({"doc_to_text": prompt} if prompt != capability.DOC_TO_TEXT else {})}
    spec = preset_config("smol")["capability"]["tasks"].get(name, default)
    write_jsonl(tmp_path / f"{name}.jsonl", rows)
    (cfg,) = capability.local_task_configs({name: {**spec, "path": str(tmp_path / f"{name}.jsonl")}})
    return ConfigurableTask(config=cfg)


def _hub_docs(name: str) -> list[dict[str, Any]]:
    """The fixture as the lm-eval task's hub dataset lays it out (SOURCES.md's field maps)."""
    if name.startswith("arc_"):
        return [json.loads(line) for line in (FIXTURES / SOURCES[name].files[0].path).read_text().splitlines()]
    if name == "piqa":  # baber/piqa: the rows with their label
        rows = [json.loads(line) for line in (FIXTURES / "piqa/valid.jsonl").read_text().splitlines()]
        labels = (FIXTURES / "piqa/valid-labels.lst").read_text().split()
        return [{**r, "label": int(lab)} for r, lab in zip(rows, labels, strict=True)]
    if name == "openbookqa":  # allenai/openbookqa main
        rows = [json.loads(line) for line in (FIXTURES / "openbookqa/test.jsonl").read_text().splitlines()]
        return [{"id": r["id"], "question_stem": r["question"]["stem"], "answerKey": r["answerKey"],
                 "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                             "label": [c["label"] for c in r["question"]["choices"]]}} for r in rows]
    # Rowan/hellaswag: this copy joined ctx_a and ctx_b; an empty ctx_b is what lm-eval then sees
    lines = bz2.decompress((FIXTURES / SOURCES[name].files[0].path).read_bytes()).decode().splitlines()
    out = []
    for i in range(0, len(lines), 6):
        label, ctx = lines[i].split(": ", 1)
        out.append({"activity_label": label, "ctx_a": ctx, "ctx_b": "", "endings": lines[i + 2:i + 6],
                    "label": lines[i + 1]})
    return out


LM_EVAL_YAML = {"arc_easy": ("arc/arc_easy.yaml", "test"), "arc_challenge": ("arc/arc_challenge.yaml", "test"),
                "piqa": ("piqa/piqa.yaml", "validation"), "openbookqa": ("openbookqa/openbookqa.yaml", "test"),
                "hellaswag": ("hellaswag/hellaswag.yaml", "validation")}


@pytest.mark.parametrize("name", SETS)
def test_our_task_asks_what_lm_evals_own_task_asks(name: str, tmp_path: Path) -> None:
    """Same prompt, choices, gold answer, delimiters and metrics, document by document."""
    yaml_name, split = LM_EVAL_YAML[name]
    assert SOURCES[name].options["lm_eval_task"] == Path(yaml_name).stem
    write_jsonl(tmp_path / "hub.jsonl", _hub_docs(name))
    theirs = _lm_eval_task(yaml_name, tmp_path / "hub.jsonl", split)
    ours = _ours(name, _whole(name), tmp_path)
    their_docs = list(theirs.validation_docs() if split == "validation" else theirs.test_docs())
    our_docs = list(ours.test_docs())
    assert len(their_docs) == len(our_docs) > 0
    for t, o in zip(their_docs, our_docs, strict=True):
        assert ours.doc_to_text(o) == theirs.doc_to_text(t)
        assert ours.doc_to_choice(o) == theirs.doc_to_choice(t)
        assert ours.doc_to_target(o) == theirs.doc_to_target(t)
    for key in ("output_type", "target_delimiter", "fewshot_delimiter"):
        assert getattr(ours.config, key) == getattr(theirs.config, key), key
    assert [m["metric"] for m in ours.config.metric_list] == [m["metric"] for m in theirs.config.metric_list] \
        == ["acc", "acc_norm"]


def test_preprocess_is_lm_evals() -> None:
    from lm_eval.tasks.hellaswag.utils import preprocess

    for text in ("  A [title] B [header] C  [step] D ", "x [sub [steps]] y", "no tags", "[a]  [b]   c"):
        assert hellaswag_preprocess(text) == preprocess(text)


# --------------------------------------------------------------------------- presets


def _errors(cfg: dict[str, Any]) -> str:
    from overrefusal.config import ConfigError, validate_config

    try:
        validate_config(cfg, "cfg", env={})
    except ConfigError as exc:
        return str(exc)
    return ""


def test_smol_preset_runs_arc_easy_and_piqa_beside_mmlu() -> None:
    cfg = preset_config("smol")
    assert _errors(cfg) == ""
    assert {t: s["kind"] for t, s in cfg["capability"]["tasks"].items() if s.get("enabled", True)} == {
        "mmlu": "mc", "arc_easy": "mc", "piqa": "mc"}
    assert cfg["data"]["real"]["capability"]["arc_easy"]["n"] <= SOURCES["arc_easy"].rows
    cfg["data"]["real"]["pins"] = {"piqa": {"sha256": {"piqa/valid.jsonl": "0" * 64}}}  # one file of two re-pinned
    assert _errors(cfg) == ""


def test_a_mirror_set_must_prompt_as_its_lm_eval_task() -> None:
    cfg = preset_config("smol")
    cfg["data"]["real"]["capability"]["hellaswag"] = {"n": 10}
    cfg["capability"]["tasks"]["hellaswag"] = {"kind": "mc", "num_fewshot": 0}  # the default prompt: not lm-eval's
    assert "capability.tasks.hellaswag.doc_to_text: 'Question: {{question}}\\nAnswer:' is not the prompt of " \
           "lm-eval's hellaswag ('{{question}}')" in _errors(cfg)
    cfg["capability"]["tasks"]["hellaswag"]["doc_to_text"] = "{{question}}"
    assert _errors(cfg) == ""
    cfg["capability"]["tasks"]["piqa"]["doc_to_text"] = "{{question}}"
    assert "capability.tasks.piqa.doc_to_text" in _errors(cfg)
    cfg["capability"]["tasks"]["piqa"].pop("doc_to_text")
    cfg["data"]["real"]["capability"]["piqa"] = {"n": 5000}
    assert "data.real.capability.piqa.n = 5000 but the set holds 1838 questions" in _errors(cfg)
    cfg["data"]["real"]["capability"]["piqa"] = {"n": 0}
    assert "data.real.capability.piqa.n" in _errors(cfg)


# --------------------------------------------------------------------------- lm-eval on the tiny model


def test_lm_eval_runs_a_staged_set_on_the_tiny_model(tiny_model_dir: str, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "arc_easy.jsonl", _whole("arc_easy"))
    tasks = {"arc_easy": {"kind": "mc", "num_fewshot": 0, "path": str(tmp_path / "arc_easy.jsonl")}}
    out = capability.run_capability(tiny_model_dir, tasks, template="chat", batch_size=8)
    res = out["tasks"]["arc_easy"]
    assert res["n"] == 8 and res["primary_metric"] == "acc"
    # a random model: any share of the 8, but a share of them
    assert {"acc", "acc_norm"} <= set(res["metrics"])
    assert all(round(v * 8) == pytest.approx(v * 8) for v in res["metrics"].values())
