"""The judge rule with LLM judges, the win rate and judge validation, run by Snakemake on the tiny world.

Every LLM call goes over real HTTP: to the scripted judge the rule serves itself (``base_url:
local``), or to a judge server this test runs and breaks on purpose (a remote ``base_url``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from overrefusal import judge_validation as jv
from overrefusal.toyworld.scripted import toy_judge_script
from overrefusal.llm.backends import ScriptedBackend
from overrefusal.llm.server import serve_in_thread
from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = "tests/fixtures/tiny_config.yaml"
R = "results/tiny"
STL_EVAL = f"{R}/toy-llama/stl/seed3/eval"
WINRATE = f"{R}/toy-llama/base/seed3/helpfulness/winrate.json"
LLM_JUDGES = {"eval": {"judges": {"over_refusal": "xstest_llm_3class_v1", "control": "orbench_llm_v1",
                                  "harmful": "jbb_substring_v1"}}}
OVER_REFUSAL = ["xstest_safe", "coconot_contrast", "orbench_hard", "oktest", "phtest"]
CONTROL = ["xstest_unsafe", "orbench_toxic"]


def _write(work: Path, name: str, obj: dict) -> str:
    (work / name).write_text(yaml.safe_dump(obj))
    return name


def _run(work: Path, targets: list[str], *configfiles: str, extra: tuple[str, ...] = (), env=None):
    # Targets first: --configfile takes several values.
    return snakemake(work, *targets, "--cores", "2", "--configfile", TINY, *configfiles, *extra, env=env)


def _client_stats(log: Path) -> dict:
    m = re.search(r"LLM judge client: (\{.*\})", log.read_text())
    assert m, log.read_text()[-2000:]
    return yaml.safe_load(m.group(1).replace("'", '"'))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("llmjudge") / "wf")
    llm = _write(work, "llm.yaml", LLM_JUDGES)
    proc = _run(work, [f"{STL_EVAL}/xstest_safe.json", WINRATE], llm)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_judge_rule_uses_the_llm_judges_over_http(work: Path) -> None:
    n_requests = 0
    for bench in OVER_REFUSAL + CONTROL + ["advbench"]:
        res = json.loads((work / STL_EVAL / f"{bench}.json").read_text())
        expected = ("xstest_llm_3class_v1" if bench in OVER_REFUSAL else
                    "orbench_llm_v1" if bench in CONTROL else "jbb_substring_v1")
        assert res["judge_id"] == expected and {r["judge_id"] for r in res["rows"]} == {expected}
        assert res["n_judge_errors"] == 0 and res["value"] is not None
        if bench != "advbench":
            assert all(r["judgement"]["raw"] for r in res["rows"])  # the judge's reply, kept for audit
            assert "local scripted toy judge" in res["provenance"]["llm_judge"]["endpoint"]
            n_requests += res["n"]
    stats = _client_stats(work / "logs/tiny/toy-llama/stl/seed3/judge.log")
    # Identical (question, answer) pairs are asked once, so at most one request per row.
    assert 0 < stats["requests_sent"] <= n_requests and stats["retries"] == 0
    cached = list((work / R / "cache/llm").rglob("*.json"))
    assert len(cached) >= stats["requests_sent"]


def test_the_local_judge_agrees_with_string_match_it_scripts(work: Path) -> None:
    """The scripted judge decides with XSTest's prefix list, so XSTest-safe compliance must equal
    what xstest_strmatch_v1 gives on the same rows (a plumbing check of prompt, reply and parse)."""
    from overrefusal.judges import get_judge

    res = json.loads((work / STL_EVAL / "xstest_safe.json").read_text())
    strmatch = get_judge("xstest_strmatch_v1")
    for row in res["rows"]:
        assert row["judgement"]["label"] == strmatch.judge(row["prompt"], row["answer"]).label


def test_warm_rerun_of_the_judge_sends_no_request(work: Path) -> None:
    before = {b: json.loads((work / STL_EVAL / f"{b}.json").read_text()) for b in OVER_REFUSAL}
    proc = _run(work, [f"{STL_EVAL}/xstest_safe.json"], "llm.yaml", extra=("--forcerun", "judge"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = _client_stats(work / "logs/tiny/toy-llama/stl/seed3/judge.log")
    assert stats["requests_sent"] == 0 and stats["cache_hits"] > 0
    for b in OVER_REFUSAL:
        after = json.loads((work / STL_EVAL / f"{b}.json").read_text())
        assert after["rows"] == before[b]["rows"] and after["value"] == before[b]["value"]


def test_a_judge_server_that_goes_down_fails_the_rule_and_keeps_the_cache(work: Path) -> None:
    key_env = {"TEST_JUDGE_KEY": "sk-test-judge"}
    cache = work / R / "cache/llm"
    fresh = sorted(cache.rglob("*.json"))
    with serve_in_thread(ScriptedBackend(toy_judge_script), fail_after=5, fail_status=503) as srv:
        remote = _write(work, "remote.yaml", {"eval": {"llm_judge": {
            "base_url": srv.base_url, "model": "gpt-4", "api_key_env": "TEST_JUDGE_KEY", "concurrency": 1,
            "max_retries": 1, "timeout": 10}}})
        proc = _run(work, [f"{STL_EVAL}/xstest_safe.json"], "llm.yaml", remote, env=key_env)
        served = srv.stats()
    assert proc.returncode != 0
    log = (work / "logs/tiny/toy-llama/stl/seed3/judge.log").read_text()
    assert "failed after 2 attempt(s) (last status: 503)" in log
    assert not (work / STL_EVAL / "xstest_safe.json").exists()  # no output, and no fallback judge
    assert served["completions"] == 5
    new = sorted(set(cache.rglob("*.json")) - set(fresh))
    assert len(new) == 5  # what finished before the failure stays cached
    # The same judge back up: the rerun pays only for what had not finished.
    with serve_in_thread(ScriptedBackend(toy_judge_script)) as srv:
        _write(work, "remote.yaml", {"eval": {"llm_judge": {
            "base_url": srv.base_url, "model": "gpt-4", "api_key_env": "TEST_JUDGE_KEY", "concurrency": 4}}})
        proc = _run(work, [f"{STL_EVAL}/xstest_safe.json"], "llm.yaml", remote, env=key_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stats = _client_stats(work / "logs/tiny/toy-llama/stl/seed3/judge.log")
        assert srv.stats()["requests"] == stats["requests_sent"]
    assert stats["cache_hits"] >= 5
    res = json.loads((work / STL_EVAL / "xstest_safe.json").read_text())
    assert res["provenance"]["llm_judge"]["endpoint"].startswith("http://127.0.0.1:")


def test_missing_key_for_a_remote_judge_is_refused_before_any_job(work: Path) -> None:
    remote = _write(work, "nokey.yaml", {"eval": {"llm_judge": {
        "base_url": "https://api.openai.com/v1", "model": "gpt-4", "api_key_env": "NO_SUCH_JUDGE_KEY"}}})
    proc = snakemake(work, "-n", "--configfile", TINY, "llm.yaml", remote)
    assert proc.returncode != 0
    assert "eval.llm_judge.api_key_env" in proc.stdout + proc.stderr
    assert "NO_SUCH_JUDGE_KEY is not set" in proc.stdout + proc.stderr


def test_winrate_against_the_reference_with_the_local_oracle(work: Path) -> None:
    res = json.loads((work / WINRATE).read_text())
    assert (res["method"], res["reference"]) == ("base", "stl")
    assert res["n"] == 12 and res["n_judge_errors"] == 0  # 6 arithmetic + 6 word questions
    assert 0.0 <= res["ci_low"] <= res["win_rate"] <= res["ci_high"] <= 1.0
    assert res["judge"]["endpoint"].startswith("local oracle judge")
    assert res["n_requests"] == 2 * (res["n"] - res["n_identical"])  # both orders for every non-identical pair
    proc = _run(work, [WINRATE], extra=("--forcerun", "winrate"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (work / "logs/tiny/toy-llama/base/seed3/winrate.log").read_text()
    assert "'requests_sent': 0" in log
    assert json.loads((work / WINRATE).read_text())["rows"] == res["rows"]


def test_winrate_is_in_all_only_when_enabled(work: Path) -> None:
    jobs = jobs_in_dry_run(snakemake(work, "-n", "--configfile", TINY).stdout)
    assert jobs["winrate"] == 7 and jobs["winrate_table"] == 1  # every method but the reference (base: done)
    off = _write(work, "off.yaml", {"winrate": {"enabled": False}})
    jobs = jobs_in_dry_run(snakemake(work, "-n", "--configfile", TINY, off).stdout)
    assert "winrate" not in jobs and "winrate_table" not in jobs


@pytest.mark.skipif(jv.default_data_dir() is None, reason="no ../shared/data (XSTest human labels)")
def test_judge_validation_rule_reproduces_88_4(work: Path) -> None:
    raw = str(jv.default_data_dir())
    jobs = jobs_in_dry_run(snakemake(work, "-n", "--configfile", TINY).stdout)
    assert "judge_validation" not in jobs  # data.raw_dir is null by default
    jobs = jobs_in_dry_run(snakemake(work, "-n", "--configfile", TINY, "--config", f"data={{raw_dir: {raw}}}").stdout)
    assert jobs.get("judge_validation") == 1
    proc = snakemake(work, f"{R}/tables/judge_agreement.csv", "--cores", "1", "--configfile", TINY,
                     "--config", f"data={{raw_dir: {raw}}}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (work / R / "tables/judge_agreement.md").read_text()
    assert "| xstest | xstest_strmatch_v1 | all | all | 2250 | 0 | 0.8844 |" in md
    judges = set(re.findall(r"^\| xstest \| (\w+) \|", md, re.MULTILINE))
    assert {"xstest_strmatch_curly_v1", "jbb_substring_v1"} <= judges
    assert "| xstest | xstest_strmatch_v1 | all | compliance |" in (work / R / "tables/judge_confusion.md").read_text()


def test_a_learned_judge_is_trained_by_a_rule_and_judges_beside_the_others(work: Path) -> None:
    """refusal_clf_v1 as the over-refusal suite's secondary judge, trained on a labelled set given by config
    alone (tests/fixtures/labelled: 2 models, 16 rows): the training job runs before judging, its artefact and
    leave-one-model-out table carry provenance, and nothing upstream of judging reruns."""
    votes = {"files": "labelled/*.jsonl", "model_from": "column",
             "columns": {"prompt": "query", "response": "reply", "label": "verdict", "model": "system"},
             "labels": {"answered": "compliance", "refused": "refusal", "mixed": "partial_refusal"}}
    cfg = _write(work, "learned.yaml", {
        "data": {"raw_dir": str(work / "tests/fixtures")},
        "eval": {"secondary_judges": {"over_refusal": "refusal_clf_v1"},
                 "learned_judges": {"refusal_clf_v1": {"train_sets": ["votes"]}},
                 "judge_validation": {"judges": ["xstest_strmatch_v1"],
                                      "sets": {"votes": votes, "xstest": {"enabled": False}}}}})
    target = f"{STL_EVAL}/xstest_safe.json"
    jobs = jobs_in_dry_run(snakemake(work, target, "-n", "--configfile", TINY, cfg).stdout)
    assert jobs == {"train_learned_judge": 1, "judge": 1}, jobs
    proc = snakemake(work, target, "--cores", "2", "--configfile", TINY, cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((work / R / "judges/refusal_clf_v1/manifest.json").read_text())
    assert manifest["training"]["n"] == 16 and manifest["training"]["source"] == "votes"
    assert set(manifest["provenance"]["training_data"]) == {"refusal_votes.jsonl"}
    assert manifest["provenance"]["sets"]["votes"]["files"] == "labelled/*.jsonl"
    cv = json.loads((work / R / "judges/refusal_clf_v1_cv.json").read_text())
    assert cv["models"] == ["alpha", "beta"] and 0 <= cv["candidates"][cv["chosen"]]["mean"] <= 1
    res = json.loads((work / STL_EVAL / "xstest_safe.json").read_text())
    assert res["secondary"][0]["judge_id"] == "refusal_clf_v1"
    info = res["provenance"]["learned_judges"]["refusal_clf_v1"]
    assert info["training_sha256"] == manifest["training"]["sha256"]
    assert info["classifier_sha256"] == manifest["classifier_sha256"]
    advbench = json.loads((work / STL_EVAL / "advbench.json").read_text())  # harmful suite: no learned judge
    assert all(s["judge_id"] != "refusal_clf_v1" for s in advbench.get("secondary", []))
    # nothing left to do; a retrained artefact (another training set) would rerun judging only
    assert jobs_in_dry_run(snakemake(work, target, "-n", "--configfile", TINY, cfg).stdout) == {}
