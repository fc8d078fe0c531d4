"""Real-data loaders, staging (mirror and HTTP download), splits, leakage and the data card."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from overrefusal.data import (
    SOURCES,
    ChecksumError,
    MissingSourceError,
    load_records,
    stage_source,
)
from overrefusal.data.card import write_card
from overrefusal.data.fetch import StagedPaths, staged_paths
from overrefusal.data.leakage import check_leakage, near_duplicates
from overrefusal.data.loaders import load_capability, load_mmlu
from overrefusal.data.plan import plan
from overrefusal.data.splits import LeakageError, build_splits, write_eval_set
from overrefusal.data.text import harm_category, normalise
from overrefusal.io import DataError, read_json
from overrefusal.judge_validation import default_data_dir
from overrefusal.records import read_records
from tests.pipeline import preset_config as merged_preset
from tests.pipeline import preset_files

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "raw"

# Row counts from ../shared/data/SOURCES.md (raw rows of each file).
MIRROR_COUNTS = {
    "alpaca_5k": 5000, "stl_safety": 2483, "hh_harmless_test": 2312, "coconot_pref": 927, "xstest": 450,
    "coconot_contrast": 379, "oktest": 300, "advbench": 520, "jailbreakbench": 100, "maliciousinstruct": 100,
    "strongreject": 313, "orbench_hard": 1319, "phtest": 3260,
}
NOT_IN_MIRROR = ["alpaca", "alpaca_cleaned", "stl_alpaca_small", "hh_harmless_train", "hh_red_team", "orbench_toxic"]


def _fixture_rows(name: str, paths: list[Path]) -> int | None:
    """A fixture's own row count (None where it does not parse: the test then expects that error)."""
    try:
        if SOURCES[name].role == "capability":
            return len(load_capability(SOURCES[name], StagedPaths(paths, None)))
        return load_records(SOURCES[name], [paths[0]], expected_rows=None)[1].n_file_rows
    except DataError:
        return None


def fixture_pins(root: Path) -> dict:
    """The fixtures' own sha256 and row count as config pins (the registry pins the real files' bytes and
    documents their row counts; the fixtures are a few rows in the same layout). A source of several files
    pins each by its layout path."""
    pins = {}
    for n, s in SOURCES.items():
        paths = [root / f.path for f in s.files]
        if s.files[0].glob or not all(p.is_file() for p in paths):
            continue
        shas = {f.path: hashlib.sha256(p.read_bytes()).hexdigest() for f, p in zip(s.files, paths, strict=True)}
        pins[n] = {"sha256": shas if len(shas) > 1 else shas[s.files[0].path], "rows": _fixture_rows(n, paths)}
    return pins


def _load(name: str, root: Path, **opts):
    pins = None if DATA is not None and root == Path(DATA) else fixture_pins(root)
    st = stage_source(SOURCES[name], raw_dir=str(root), download_dir=None, pins=pins)
    return load_records(SOURCES[name], staged_paths(st), opts)


DATA = default_data_dir()

# ------------------------------------------------------------------------------------------ the mirror

needs_mirror = pytest.mark.skipif(DATA is None or not Path(DATA).is_dir(),
                                  reason="no local data mirror (set OVERREFUSAL_DATA_DIR or provide ../shared/data)")


@needs_mirror
@pytest.mark.parametrize("name", sorted(MIRROR_COUNTS))
def test_mirror_row_counts_match_sources_md(name):
    recs, rep = _load(name, Path(DATA))
    assert rep.n_rows == MIRROR_COUNTS[name] == SOURCES[name].rows
    assert len({r["id"] for r in recs}) == len(recs)


@needs_mirror
def test_mirror_splits_of_documented_sets():
    xs, _ = _load("xstest", Path(DATA))
    assert sum(r["label"] == "seemingly_toxic" for r in xs) == 250 and sum(r["label"] == "toxic" for r in xs) == 200
    hb, _ = _load("harmbench", Path(DATA), functional_categories=["standard", "contextual", "copyright"])
    assert len(hb) == 320
    hb_std, _ = _load("harmbench", Path(DATA))
    assert len(hb_std) == 159  # the "standard" test behaviours (refusal_direction, Surgical)
    st = stage_source(SOURCES["mmlu"], raw_dir=str(DATA), download_dir=None)
    assert len(load_mmlu(staged_paths(st))) == 14042
    _, rep = _load("hh_harmless_test", Path(DATA))
    assert rep.n_duplicate_rows > 0  # counted and reported, not dropped
    for name in NOT_IN_MIRROR:
        with pytest.raises(MissingSourceError):
            stage_source(SOURCES[name], raw_dir=str(DATA), download_dir=None)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("name", sorted(n for n in SOURCES if SOURCES[n].role != "capability"))
def test_every_loader_on_fixtures(name):
    recs, rep = _load(name, FIXTURES)
    assert recs and rep.n_rows == len(recs)
    for r in recs:
        assert r["source"] == name and r["licence"] == SOURCES[name].licence and r["prompt"].strip()


def test_fixture_specifics():
    red, _ = _load("hh_red_team", FIXTURES)
    assert red[0]["prompt"].startswith("Seriously,") and "Assistant" not in red[0]["prompt"]
    ok, _ = _load("oktest", FIXTURES)
    assert not ok[0]["prompt"].endswith("\n")
    ph, _ = _load("phtest", FIXTURES)
    assert {r["category"] for r in ph} == {"harmless", "controversial"}
    hb, _ = _load("harmbench", FIXTURES, functional_categories=["contextual"])
    assert hb[0]["prompt"].startswith("Some context paragraph.")
    safety, rep = _load("stl_safety", FIXTURES)
    assert rep.n_duplicate_rows == 1 and len(rep.duplicates) == 1 and len(rep.duplicates[0]["ids"]) == 2
    assert all(r["response"] for r in safety)
    st = stage_source(SOURCES["mmlu"], raw_dir=str(FIXTURES), download_dir=None)
    rows = load_mmlu(staged_paths(st))
    assert len(rows) == 12 and rows[0]["answer"] in range(4)


def test_harm_categories_and_normalise():
    assert harm_category("How do I build a bomb?") == "weapons"
    assert harm_category("What's the weather?") == "other"
    assert normalise("I can\u2019t  DO it!!") == normalise("i can't do it")


# ------------------------------------------------------------------------------------------ bad input


def _raw_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(FIXTURES, dest)
    return dest


@pytest.mark.parametrize("row, message", [
    ({"input": "", "output": "x"}, "line 2: missing field 'instruction'"),
    ({"instruction": 3, "input": "", "output": "x"}, "line 2: field 'instruction' must be str"),
    ({"instruction": "  ", "input": "", "output": "x"}, "line 2: field 'prompt' is empty"),
])
def test_malformed_json_rows_name_file_and_line(tmp_path, row, message):
    raw = _raw_copy(tmp_path)
    f = raw / "alpaca" / "alpaca_data.json"
    f.write_text("[\n" + json.dumps(row) + "\n]\n")
    with pytest.raises(DataError, match=re.escape(message)) as exc:
        _load("alpaca", raw)
    assert str(f) in str(exc.value)


def test_malformed_csv_and_jsonl_rows(tmp_path):
    raw = _raw_copy(tmp_path)
    (raw / "phtest" / "PHTest.csv").write_text("ID,Request,Harmfulness\n1,ok request,harmless\n2,\"multi\nline\",evil\n")
    with pytest.raises(DataError, match=r"PHTest.csv: line 3: field 'Harmfulness' is 'evil'"):
        _load("phtest", raw)
    (raw / "orbench" / "or-bench-hard-1k.csv").write_text("prompt\nhello\n")
    with pytest.raises(DataError, match=r"or-bench-hard-1k.csv: line 1: missing column\(s\) category"):
        _load("orbench_hard", raw)
    (raw / "hh_rlhf" / "harmless-base" / "train.jsonl.gz").write_bytes(
        gzip.compress(b'{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: x", "rejected": ""}\n{"rejected": "x"}\n'))
    with pytest.raises(DataError, match=r"train.jsonl.gz: line 2: missing field 'chosen'"):
        _load("hh_harmless_train", raw)


def test_missing_source_says_how_to_supply(tmp_path):
    with pytest.raises(MissingSourceError) as exc:
        stage_source(SOURCES["alpaca"], raw_dir=str(tmp_path), download_dir=None)
    msg = str(exc.value)
    assert "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/761dc5b" in msg
    assert f"{tmp_path}/alpaca/alpaca_data.json" in msg and "data.real.download: true" in msg
    with pytest.raises(MissingSourceError, match="huggingface-cli download bench-llm/or-bench or-bench-hard-1k.csv"):
        stage_source(SOURCES["orbench_hard"], raw_dir=str(tmp_path), download_dir=None)


def test_checksum_mismatch_names_origin(tmp_path):
    raw = _raw_copy(tmp_path)  # fixture bytes differ from the pinned real file
    with pytest.raises(ChecksumError) as exc:
        stage_source(SOURCES["xstest"], raw_dir=str(raw), download_dir=None,
                     pins={"xstest": {"sha256": "0" * 64}})
    assert "paul-rottger/exaggerated-safety/d7bb5bd" in str(exc.value) and "data.real.pins.xstest.sha256" in str(exc.value)


def test_a_staged_file_whose_bytes_changed_is_refused_when_read(tmp_path):
    """The workflow marks local sources ancient (a mirror copied afresh reruns nothing), so changed bytes must
    be caught when the staged source is read, with the file and the way to stage it again."""
    raw = _raw_copy(tmp_path)
    st = stage_source(SOURCES["xstest"], raw_dir=str(raw), download_dir=None, pins=fixture_pins(raw))
    assert staged_paths(st) == [Path(f["path"]) for f in st["files"]]
    changed = Path(st["files"][0]["path"])
    changed.write_bytes(changed.read_bytes() + b"\n")
    with pytest.raises(ChecksumError, match=rf"{re.escape(str(changed))}: sha256 .* source 'xstest' was staged.*"
                                            r"--forcerun stage_real_source"):
        staged_paths(st)


# ------------------------------------------------------------------------------------------ HTTP download


@pytest.fixture()
def http_root():
    """A real HTTP server on 127.0.0.1 serving files laid out like raw.githubusercontent.com."""
    import tempfile

    root = Path(tempfile.mkdtemp())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    shutil.rmtree(root)


def test_http_download_pinned_and_checked(tmp_path, http_root):
    root, base = http_root
    src = SOURCES["alpaca"]
    remote = root / src.files[0].url.split("githubusercontent.com/", 1)[1]
    remote.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "alpaca" / "alpaca_data.json", remote)
    sha = hashlib.sha256(remote.read_bytes()).hexdigest()
    dl = tmp_path / "dl"
    # unpinned: refused unless allowed
    with pytest.raises(ChecksumError, match="no pinned sha256"):
        stage_source(src, raw_dir=None, download_dir=str(dl), download=True, github_base=base)
    # wrong pin: refused, nothing left behind
    with pytest.raises(ChecksumError, match="does not match"):
        stage_source(src, raw_dir=None, download_dir=str(dl), download=True, github_base=base,
                     pins={"alpaca": {"sha256": "f" * 64}})
    assert not (dl / src.files[0].path).exists()
    st = stage_source(src, raw_dir=None, download_dir=str(dl), download=True, github_base=base,
                      pins={"alpaca": {"sha256": sha, "rows": 60}})
    assert st["files"][0]["downloaded"] and st["files"][0]["sha256"] == sha
    assert st["files"][0]["origin"] == f"{base}/{remote.relative_to(root)} (a mirror of {src.files[0].url})"
    recs, _ = load_records(src, staged_paths(st))  # held to the pinned 60 rows, not the documented 52,002
    assert len(recs) == 60
    with pytest.raises(DataError, match=r"alpaca_data.json: 60 rows, expected 52002 \(the documented row count"):
        load_records(src, [Path(st["files"][0]["path"])])
    # a second staging finds the download and does not fetch again
    remote.unlink()
    st2 = stage_source(src, raw_dir=None, download_dir=str(dl), download=True, github_base=base,
                       pins={"alpaca": {"sha256": sha}})
    assert not st2["files"][0]["downloaded"]
    with pytest.raises(MissingSourceError, match="HTTP 404"):
        stage_source(SOURCES["hh_red_team"], raw_dir=None, download_dir=str(dl), download=True, github_base=base,
                     allow_unpinned=True)


# ------------------------------------------------------------------------------------------ splits


def _real_cfg(**over):
    cfg = yaml.safe_load((REPO / "config" / "presets" / "tbr.yaml").read_text())["data"]["real"]
    cfg["splits"] = {
        "sft_general": {"source": "alpaca", "n": 20}, "sft_safety": {"source": "hh_red_team", "n": 14, "stratify": True,
                                                                       "response": "standard"},
        "sft_aug": {"source": "coconot_pref", "n": 5}, "contrastive_seemingly": {"source": "xstest_safe", "n": 10},
        "contrastive_toxic": {"source": "stl_safety", "n": 10}, "pretrain": {"source": "alpaca", "n": 20},
        "general_heldout": {"source": "alpaca", "n": 5},
    }
    cfg["capability"] = {"mmlu": {"n_per_subject": 2}}
    cfg.update(over)
    return cfg


BENCHES = ["xstest_safe", "xstest_unsafe", "coconot_contrast", "orbench_hard", "oktest", "phtest", "advbench",
           "harmbench", "jailbreakbench", "maliciousinstruct", "strongreject", "orbench_toxic"]


def _build(tmp_path: Path, raw: Path, real: dict, tag: str = "a"):
    out = tmp_path / tag
    p = plan(real, str(raw), BENCHES)
    assert not p["missing"]
    staged = {}
    for s in p["stage"]:
        staged[s] = str(out / "staged" / f"{s}.json")
        Path(staged[s]).parent.mkdir(parents=True, exist_ok=True)
        Path(staged[s]).write_text(json.dumps(stage_source(SOURCES[s], raw_dir=str(raw), download_dir=None,
                                                            pins=fixture_pins(raw))))
    evals, reports = {}, {}
    for b in BENCHES:
        evals[b] = str(out / "data" / "eval" / f"{b}.jsonl")
        reports[b] = str(out / "reports" / f"eval_{b}.json")
        write_eval_set(b, read_json(staged[p["benchmarks"][b]]), real, evals[b], reports[b])
    train_staged = {k: v for k, v in staged.items() if k in {"alpaca", "hh_red_team", "coconot_pref", "xstest",
                                                             "stl_safety", *real.get("capability", {})}}
    build_splits({"real": real, "plan": p}, train_staged, evals, str(out / "data"), str(out / "leak.csv"),
                 str(out / "leak.md"), str(out / "leak.json"), str(out / "data" / "manifest.json"))
    write_card(str(out / "data" / "manifest.json"), staged, reports, str(out / "card.md"), str(out / "card.json"))
    return out


def test_splits_deterministic_disjoint_and_flagged(tmp_path):
    real = _real_cfg()
    a = _build(tmp_path, FIXTURES, real, "a")
    b = _build(tmp_path, FIXTURES, real, "b")
    for f in sorted((a / "data").rglob("*.jsonl")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes(), f
    d = a / "data"
    safety = read_records(d / "sft_safety.jsonl")
    assert len(safety) == 14 and all(r["response"] == real["refusal"] for r in safety)
    assert {r["category"] for r in safety} == {"violence", "weapons", "drugs", "theft", "cybercrime",
                                               "hate_harassment", "privacy"}  # 2 per category
    contrast = read_records(d / "contrastive.jsonl")
    assert sum(r["label"] == "toxic" for r in contrast) == 10 and sum(r["label"] == "seemingly_toxic" for r in contrast) == 10
    general = {normalise(r["prompt"]) for r in read_records(d / "sft_general.jsonl")}
    held = {normalise(r["prompt"]) for r in read_records(d / "general_heldout.jsonl")}
    pre = {normalise(json.loads(line)["user"]) for line in (d / "pretrain.jsonl").read_text().splitlines()}
    assert not general & held and not general & pre and not held & pre
    manifest = read_json(d / "manifest.json")
    assert manifest["in_distribution"] == ["contrastive -> xstest_safe", "contrastive -> xstest_unsafe"]
    assert manifest["files"]["sft_safety"]["sha256"] and manifest["inputs"]["xstest"][0]["sha256"]
    card = (a / "card.md").read_text()
    assert "In-distribution" in card and "contrastive -> xstest_safe" in card and "CC-BY-4.0" in card


def test_mmlu_subjects_restrict_the_capability_task(tmp_path):
    out = _build(tmp_path, FIXTURES, _real_cfg(capability={"mmlu": {"n_per_subject": 2, "subjects": ["toy_subject"]}}))
    rows = [json.loads(line) for line in (out / "data" / "capability" / "mmlu.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["id"].startswith("mmlu-toy_subject-") for r in rows)
    with pytest.raises(ValueError, match=r"capability\.mmlu\.subjects: astronomy not in the staged files"):
        _build(tmp_path, FIXTURES, _real_cfg(capability={"mmlu": {"n_per_subject": 2, "subjects": ["astronomy"]}}), "b")


def test_mirror_capability_sets_are_seeded_subsets_with_their_provenance(tmp_path):
    caps = {"mmlu": {"n_per_subject": 1}, "arc_easy": {"n": 5}, "piqa": {}, "hellaswag": {"n": 2}}
    a = _build(tmp_path, FIXTURES, _real_cfg(capability=caps), "a")
    b = _build(tmp_path, FIXTURES, _real_cfg(capability={**caps, "arc_easy": {"n": 5}}, seed=1), "b")
    d = a / "data" / "capability"
    arc = [json.loads(line) for line in (d / "arc_easy.jsonl").read_text().splitlines()]
    whole = [json.loads(json.dumps(r)) for r in load_capability(
        SOURCES["arc_easy"], StagedPaths([FIXTURES / "arc/ARC-Easy-test.jsonl"], None))]
    assert len(arc) == 5 and arc == [r for r in whole if r in arc]  # a subset, in the file's order
    other = [json.loads(line) for line in (b / "data" / "capability" / "arc_easy.jsonl").read_text().splitlines()]
    assert [r["id"] for r in other] != [r["id"] for r in arc]  # drawn with data.real.seed
    assert len((d / "piqa.jsonl").read_text().splitlines()) == 6  # no n: the whole set
    manifest = read_json(a / "data" / "manifest.json")
    assert manifest["files"]["capability/arc_easy"]["n"] == 5 and manifest["files"]["capability/arc_easy"]["sha256"]
    inputs = {f["layout"]: f["sha256"] for f in manifest["inputs"]["piqa"]}
    assert inputs == {p: hashlib.sha256((FIXTURES / p).read_bytes()).hexdigest()
                      for p in ("piqa/valid.jsonl", "piqa/valid-labels.lst")}
    with pytest.raises(DataError, match=r"data\.real\.capability\.arc_easy\.n = 9 but the set holds 8 questions"):
        _build(tmp_path, FIXTURES, _real_cfg(capability={"arc_easy": {"n": 9}}), "c")


def test_dcr_contrastive_toxic_disjoint_from_safety(tmp_path):
    real = _real_cfg()
    real["splits"]["sft_safety"] = {"source": "stl_safety", "n": 15, "response": "source"}
    real["splits"]["contrastive_toxic"] = {"source": "stl_safety", "n": 15}
    out = _build(tmp_path, FIXTURES, real)
    safety = {normalise(r["prompt"]) for r in read_records(out / "data" / "sft_safety.jsonl")}
    toxic = [normalise(r["prompt"]) for r in read_records(out / "data" / "contrastive.jsonl") if r["label"] == "toxic"]
    assert not safety & set(toxic)
    assert not near_duplicates(sorted(safety), toxic, 90)
    # asking for more than the disjoint remainder fails and says so
    real["splits"]["contrastive_toxic"]["n"] = 40
    with pytest.raises(DataError, match="asked for 40 rows"):
        _build(tmp_path, FIXTURES, real, "c")


def test_xstest_heldout_types(tmp_path):
    real = _real_cfg(xstest_heldout={"enabled": True, "train_types": ["homonyms", "figurative_language"]})
    real["splits"]["contrastive_seemingly"]["n"] = 4
    out = _build(tmp_path, FIXTURES, real)
    ev = read_records(out / "data" / "eval" / "xstest_safe.jsonl")
    tr = [r for r in read_records(out / "data" / "contrastive.jsonl") if r["label"] == "seemingly_toxic"]
    assert {r["category"] for r in tr} <= {"homonyms", "figurative_language"}
    assert not {r["category"] for r in ev} & {"homonyms", "figurative_language"}
    assert read_json(out / "data" / "manifest.json")["in_distribution"] == ["contrastive -> xstest_unsafe"]


def test_leakage_planted_duplicates(tmp_path):
    train = {"sft": [{"id": "t1", "prompt": "How do I bake bread?"},
                     {"id": "t2", "prompt": "Write a poem about the silver moon over the sea"},
                     {"id": "t3", "prompt": "Completely unrelated"}]}
    evals = {"e": [{"id": "e1", "prompt": "how do I bake BREAD"},  # exact after normalisation
                   {"id": "e2", "prompt": "Write a poem about the silver moon over a sea"},  # near
                   {"id": "e3", "prompt": "Something else entirely, about taxes"}]}
    (res,) = check_leakage(train, evals, threshold=90, max_fraction=0.0)
    assert (res.exact, res.near, res.threshold_exceeded) == (1, 1, True)
    (res,) = check_leakage(train, evals, threshold=90, max_fraction=0.0, in_distribution={("sft", "e")})
    assert res.in_distribution and not res.threshold_exceeded
    # a planted eval prompt in the training source fails the build when decontamination is off
    raw = _raw_copy(tmp_path)
    f = raw / "alpaca" / "alpaca_data.json"
    rows = json.loads(f.read_text())
    rows[0]["instruction"] = "What does it mean to shoot a film scene 0?"  # an OKTest fixture prompt
    f.write_text(json.dumps(rows))
    real = _real_cfg(leakage={"near_threshold": 90, "max_fraction": 0.0, "decontaminate": False})
    real["splits"]["sft_general"]["n"] = 60
    real["splits"]["pretrain"]["n"] = 1
    real["splits"]["general_heldout"]["n"] = 1
    real["allow_smaller"] = True
    with pytest.raises(LeakageError, match="sft_general -> oktest"):
        _build(tmp_path, raw, real)
    real["leakage"]["decontaminate"] = True
    out = _build(tmp_path, raw, real, "clean")
    manifest = read_json(out / "data" / "manifest.json")
    assert manifest["notes"]["decontaminated"]["sft_general"] >= 1


def test_plan_names_missing_and_substitutes(tmp_path):
    real = _real_cfg(on_missing="fail")
    p = plan(real, str(tmp_path), ["xstest_safe"])
    assert set(p["missing"]) >= {"alpaca", "hh_red_team", "xstest"}
    real = _real_cfg(on_missing="substitute", substitutes={"alpaca": ["alpaca_5k"]})
    p = plan(real, str(FIXTURES), ["xstest_safe"])
    assert not p["missing"]
    raw = _raw_copy(tmp_path)
    (raw / "alpaca" / "alpaca_data.json").unlink()
    p = plan(real, str(raw), ["xstest_safe"])
    assert p["splits"]["sft_general"] == {"source": "alpaca_5k", "requested": "alpaca", "substituted": True}


PRESETS = ("tbr", "dcr_qwen2.5-1.5b", "dcr_qwen2.5-7b", "dcr_llama3-8b")


def preset_config(preset: str, *overlays: str) -> dict:
    """A preset (a DCR model overlay: over dcr.yaml) and further overlays, with downloads instead of the mirror."""
    cfg = merged_preset(*[Path(f).stem for f in preset_files(preset)], *overlays)
    cfg["data"]["raw_dir"] = None
    cfg["data"]["real"]["download"] = True
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_validate_on_hub_models_and_need_the_api_key_up_front(preset):
    from overrefusal.config import ConfigError, enabled_models, validate_config

    cfg = preset_config(preset)
    validate_config(cfg, preset, env={"OPENAI_API_KEY": "sk-test"})
    (model,) = enabled_models(cfg)
    assert cfg["models"][model]["source"] == "hub" and cfg["models"][model]["template"] == "alpaca"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        validate_config(cfg, preset, env={})
    # the same data on the toy model: local stand-ins, no key needed
    toy = preset_config(preset, "toy_model")
    validate_config(toy, preset, env={})
    assert enabled_models(toy) == ["toy-llama"]


# Each paper's capability suite (lm-eval registry tasks), besides the local mirror's MMLU subset.
PAPER_SUITES = {"tbr": {"mmlu", "gsm8k", "arc_easy"},
                "dcr": {"mmlu", "arc_easy", "arc_challenge", "openbookqa", "piqa"}}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_run_their_paper_capability_suite_and_the_overlay_switches_it_off(preset):
    from overrefusal.capability import PAPER_TASKS
    from overrefusal.config import enabled_capability_tasks

    tasks = enabled_capability_tasks(preset_config(preset))
    registry = {name: spec for name, spec in tasks.items() if spec["kind"] == "lm_eval"}
    by_lm_name = {spec.get("lm_eval_task", name): spec for name, spec in registry.items()}
    assert set(by_lm_name) == PAPER_SUITES[preset.split("_")[0]]
    for lm_name, spec in by_lm_name.items():  # PAPER_TASKS' few-shot counts and metrics
        assert {k: spec[k] for k in ("num_fewshot", "metric")} == {
            k: PAPER_TASKS[lm_name][k] for k in ("num_fewshot", "metric")}, lm_name
    assert tasks["mmlu"]["kind"] == "mc"  # the mirror's subset stays, as mmlu; the registry one is mmlu_lm_eval
    toy = enabled_capability_tasks(preset_config(preset, "toy_model"))
    assert not [t for t, spec in toy.items() if spec["kind"] == "lm_eval"] and "mmlu" in toy


def test_dcr_model_overlays_hold_only_model_specific_keys():
    """The recipe lives once, in dcr.yaml; an overlay names the run, its model and the model's layer, and
    switches the optimiser (with the lr measured for it) only where AdamW would not fit one 80 GB GPU
    (tests/unit/test_memory.py)."""
    base = yaml.safe_load((REPO / "config" / "presets" / "dcr.yaml").read_text())
    assert "layer" not in base["dcr"] and set(base["models"]) == {"toy-llama"}
    for name in PRESETS[1:]:
        cfg = yaml.safe_load((REPO / "config" / "presets" / f"{name}.yaml").read_text())
        assert set(cfg) == {"name", "models", "dcr"} and cfg["name"] == name, name
        (model,) = cfg["models"].values()
        assert model["source"] == "hub" and 0 < cfg["dcr"]["layer"] < model["num_layers"]
        assert set(cfg["dcr"]) in ({"layer"}, {"layer", "optim", "lr"}), name
        if "optim" in cfg["dcr"]:
            assert (cfg["dcr"]["optim"], cfg["dcr"]["lr"]) == ("adafactor", 1e-3)


def test_data_env_pins_match_requirements():
    req = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    env = yaml.safe_load((REPO / "envs" / "data.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "rapidfuzz" in req
    for spec in pip:
        name, ver = spec.split("==")
        assert req.get(name) == ver, f"envs/data.yaml pins {spec}, requirements.txt {req.get(name)}"
