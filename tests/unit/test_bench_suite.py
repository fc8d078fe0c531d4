"""`python -m bench`: the suite runner's outputs, its failure handling, and one extractor per benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench import suite
from bench.suite import Bench, Headline

REPO = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu_model", "logical_cores", "os_cpu_count", "usable_cores", "torch", "torch_config",
                "cpu_capability", "python", "platform", "date", "loadavg_1m"}
HEADLINE_KEYS = {"measure", "value", "text", "target", "met"}


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    return run_suite("--quick", "--only", "entk", "dcr_truncation", "--out-dir", str(out)), out


# ---- the real runner on two cheap benchmarks ----


@pytest.mark.slow
def test_quick_run_writes_suite_json(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "suite.json").read_text())
    assert data["quick"] is True and data["failed"] == []
    assert data["only"] == ["dcr_truncation", "entk"]  # suite order, whatever order --only gave
    assert data["command"].startswith("PYTHONPATH=src python -m bench --quick --only entk dcr_truncation")

    m = data["machine"]
    assert MACHINE_KEYS <= set(m)
    assert m["os_cpu_count"] == os.cpu_count() and isinstance(m["logical_cores"], int) and m["cpu_model"]
    import torch

    assert m["torch"] == torch.__version__ and m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert any(c.startswith("BLAS_INFO=") for c in m["torch_config"])
    assert m["python"] == ".".join(map(str, sys.version_info[:3]))
    datetime.fromisoformat(m["date"])

    by_name = {b["name"]: b for b in data["benchmarks"]}
    assert list(by_name) == ["dcr_truncation", "entk"]
    for name, n_headlines in (("dcr_truncation", 1), ("entk", 4)):
        b = by_name[name]
        assert b["status"] == "ok" and b["exit_status"] == 0 and b["error"] is None and b["seconds"] > 0
        assert b["command"].startswith(f"PYTHONPATH=src python bench/bench_{name}.py ")
        assert b["command"].endswith(f"--out {out / name}.json")
        assert b["args"] == [*next(s for s in suite.SUITE if s.name == name).quick_args]
        assert b["why"].startswith("quick")
        assert Path(b["json"]) == out / f"{name}.json" and Path(b["json"]).is_file() and Path(b["log"]).is_file()
        assert len(b["headlines"]) == n_headlines
        assert all(set(h) == HEADLINE_KEYS and isinstance(h["met"], bool) for h in b["headlines"])
        assert b["met"] == all(h["met"] for h in b["headlines"])
    assert {s["name"]: s["status"] for s in data["separate"]} == {"pipeline": "separate",
                                                                   "roofline_compile": "separate",
                                                                   "dcr_stage_settings": "separate"}
    assert all(s["command"] and s["why"] for s in data["separate"])


@pytest.mark.slow
def test_quick_run_writes_suite_md(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = quick_run
    data = json.loads((out / "suite.json").read_text())
    md = (out / "suite.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("Quick run")
    header = lines.index("| benchmark | measured | target | met | seconds |")
    assert lines[header + 1] == "|---|---|---|---|---|"
    rows = [ln for ln in lines[header + 2:] if ln.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| dcr_truncation", *["| entk"] * 4]
    assert all(r.count(" | ") == 4 and r.split(" | ")[3] in {"yes", "no"} for r in rows)
    assert "bench/bench_pipeline.py" in md and "bench/bench_dcr_stage_settings.py" in md
    assert suite.machine_line(data["machine"]) in lines
    # Deterministic apart from the numbers: the date, load and paths in suite.json do not reach the table.
    moved = {**data, "machine": {**data["machine"], "date": "1999-01-01T00:00:00+00:00", "loadavg_1m": 99.0},
             "benchmarks": [{**b, "json": "/elsewhere.json", "log": "/x.log", "loadavg_1m_before": 7.0}
                            for b in data["benchmarks"]]}
    assert suite.render_markdown(moved) == md


@pytest.mark.slow
def test_injected_bad_argument_fails_the_benchmark_and_the_run(tmp_path: Path) -> None:
    # leakage: the cheapest script to start (no torch), and argparse rejects the flag before any work.
    proc = run_suite("--quick", "--only", "leakage", "--bench-args", "leakage=--no-such-flag",
                     "--out-dir", str(tmp_path))
    assert proc.returncode == 1
    data = json.loads((tmp_path / "suite.json").read_text())
    (b,) = data["benchmarks"]
    assert data["failed"] == ["leakage"]
    assert b["status"] == "failed" and b["exit_status"] == 2 and b["met"] is None and b["headlines"] == []
    assert "--no-such-flag" in b["args"] and "unrecognized arguments" in b["stderr_tail"]
    assert "no JSON written" in b["error"]
    assert "| leakage | failed: exit status 2" in (tmp_path / "suite.md").read_text()


# ---- the runner's decisions, on fake benchmarks (no torch in the children) ----

FAKE = """\
import json, sys, time
out = sys.argv[sys.argv.index("--out") + 1]
mode = sys.argv[1]
if mode == "crash":
    raise RuntimeError("boom")
if mode == "slow":
    time.sleep(60)
if mode in ("ok", "miss", "bad_exit"):
    json.dump({"met": mode != "miss"}, open(out, "w"))
if mode == "garbage":
    open(out, "w").write("not json")
sys.exit(1 if mode in ("miss", "bad_exit") else 0)
"""


def extract_fake(d: dict[str, Any]) -> list[Headline]:
    return [Headline("fake", d["met"], str(d["met"]), "True", d["met"])]


def fake_bench(script: Path, mode: str, **kw: Any) -> Bench:
    defaults: dict[str, Any] = {"timeout_s": 30, "miss_exit": 1}
    return Bench(mode, str(script), (mode,), "test", (mode,), "True", extract_fake, **{**defaults, **kw})


def test_runner_records_failures_and_carries_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "fake_bench.py"
    script.write_text(FAKE)
    fakes = (fake_bench(script, "crash"), fake_bench(script, "ok"), fake_bench(script, "miss"),
             fake_bench(script, "bad_exit"), fake_bench(script, "nojson"), fake_bench(script, "garbage"),
             fake_bench(script, "slow", timeout_s=1))
    monkeypatch.setattr(suite, "SUITE", fakes)
    out = tmp_path / "out"
    out.mkdir()
    (out / "nojson.json").write_text('{"met": true}')  # a stale result must not count for this run
    assert suite.main(["--out-dir", str(out)]) == 1
    data = json.loads((out / "suite.json").read_text())
    status = {b["name"]: (b["status"], b["exit_status"], b["met"]) for b in data["benchmarks"]}
    assert status == {
        "crash": ("failed", 1, None), "ok": ("ok", 0, True),
        "miss": ("ok", 1, False),  # exit 1 with a JSON that shows the miss: a result, not a failure
        "bad_exit": ("failed", 1, None),  # exit 1 although the target was met: something else broke
        "nojson": ("failed", 0, None), "garbage": ("failed", 0, None), "slow": ("failed", -9, None),
    }
    errors = {b["name"]: b["error"] for b in data["benchmarks"]}
    assert "RuntimeError: boom" in errors["crash"] and "boom" in data["benchmarks"][0]["stderr_tail"]
    assert "no JSON written" in errors["nojson"] and errors["garbage"].startswith("unreadable result")
    assert errors["slow"] == "timed out after 1 s"
    assert data["failed"] == ["crash", "bad_exit", "nojson", "garbage", "slow"]
    md = (out / "suite.md").read_text()
    assert "| crash | failed: exit status 1, no JSON written: RuntimeError: boom | True | no |" in md
    assert "| miss | fake: False | True | no |" in md and not md.startswith("Quick")


def test_missed_target_alone_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "fake_bench.py"
    script.write_text(FAKE)
    monkeypatch.setattr(suite, "SUITE", (fake_bench(script, "ok"), fake_bench(script, "miss")))
    assert suite.main(["--out-dir", str(tmp_path / "out"), "--only", "miss"]) == 0
    data = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["miss"] and data["only"] == ["miss"]


def test_cli_rejects_separate_and_malformed_bench_args(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        suite.main(["--only", "pipeline", "--out-dir", str(tmp_path)])
    assert exc.value.code == 2 and "bench/bench_pipeline.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.main(["--only", "no_such_bench"])
    with pytest.raises(ValueError, match="NAME=ARGS"):
        suite.parse_bench_args(["entk"], ["entk"])
    with pytest.raises(ValueError, match="NAME=ARGS"):
        suite.parse_bench_args(["nope=--x 1"], ["entk"])
    assert suite.parse_bench_args(["entk=--probes 4", "entk=--seeds 2"], ["entk"]) == {
        "entk": ["--probes", "4", "--seeds", "2"]}


def test_suite_lists_the_eight_benchmarks_with_recorded_arguments() -> None:
    assert [b.name for b in suite.SUITE] == ["generation", "llm_concurrency", "dcr_truncation", "entk", "leakage",
                                             "sft_memory", "roofline", "scaling"]
    for b in suite.SUITE:
        assert (REPO / b.script).is_file() and b.why and b.args and b.quick_args
        assert "--out" not in b.args + b.quick_args  # the runner owns --out
    assert sum(b.timeout_s for b in suite.SUITE) > suite.BUDGET_S  # timeouts are a safety net, not the budget


# ---- extractors on hand-written JSON, shaped as each benchmark writes it ----


def test_extract_generation() -> None:
    d = {"n_prompts": 64, "max_new_tokens": 32, "batched": {"batch_size": 64}, "speedup": 24.93, "target": 5.0,
         "meets_target": True, "outputs_identical": False}
    speed, same = suite.extract_generation(d)
    assert (speed.value, speed.text, speed.target, speed.met) == (24.93, "24.9×", "≥ 5×", True)
    assert "batch 64" in speed.measure and "64 prompts × 32 new tokens" in speed.measure
    assert (same.text, same.met) == ("no", False)


def test_extract_llm_concurrency() -> None:
    d = {"n_requests": 64, "latency_ms": 50.0, "concurrency": 8, "speedup": 5.4, "target_speedup": 6.0,
         "serial_overhead_ms_per_request": 14.25, "warm_rerun_requests_sent": 0, "warm_rerun_server_requests": 0,
         "target_warm_requests": 0, "meets_speedup_target": False, "meets_warm_target": True}
    speed, warm = suite.extract_llm_concurrency(d)
    assert (speed.text, speed.target, speed.met) == ("5.4×", "≥ 6×", False)
    assert "concurrency 1 / 8" in speed.measure and "50 ms" in speed.measure
    assert "14.2 ms per request" in speed.measure
    assert (warm.value, warm.target, warm.met) == (0, "0", True)
    # the verdicts are the bench's own, read, not recomputed
    assert not suite.extract_llm_concurrency({**d, "meets_warm_target": False})[1].met
    assert suite.extract_llm_concurrency({**d, "meets_speedup_target": True})[0].met
    with pytest.raises(KeyError):  # a JSON from before the verdicts were written is unreadable, not a guess
        suite.extract_llm_concurrency({k: v for k, v in d.items() if k != "meets_warm_target"})


def test_extract_dcr_truncation() -> None:
    rows = [{"layer": 0, "ratio": 0.131, "target": 0.15, "meets_target": True},
            {"layer": 7, "ratio": 0.964, "target": 1.2, "meets_target": True}]
    (h,) = suite.extract_dcr_truncation({"config": {"layers": 8}, "rows": rows, "meets_target": True})
    assert (h.text, h.met) == ("0.13 / 0.96", True) and "ℓ = 0/7 of L = 8" in h.measure
    assert h.value == [{"layer": 0, "ratio": 0.131, "target": 0.15}, {"layer": 7, "ratio": 0.964, "target": 1.2}]
    with pytest.raises(KeyError):  # a JSON from before the headline was added is unreadable, not a guess
        suite.extract_dcr_truncation({"config": {"layers": 8}, "rows": rows})


def test_extract_entk() -> None:
    d = {
        "config": {"probes": 32, "seeds": 5},
        "hutchinson_accuracy": {"rel_fro_max": 0.039, "target": 0.05, "meets_target": True},
        "timing": {"selected_params": 1246464, "vocab": 256, "speedup_vs_exact": 22.1, "target": 10.0,
                   "meets_target": True},
        "fd_vs_jvp": {"eps": 1e-4, "scheme": "central", "dcr_eps": 1e-3, "target": 1e-3, "meets_target": True,
                      "rows": [
            {"model": "tiny", "scheme": "forward", "eps": 1e-3, "rel_max": 6.2e-3},
            {"model": "tiny", "scheme": "central", "eps": 1e-4, "rel_max": 2.0e-5},
            {"model": "big", "scheme": "forward", "eps": 1e-3, "rel_max": 2.0e-2},
            {"model": "big", "scheme": "central", "eps": 1e-4, "rel_max": 1.1e-4}]},
    }
    acc, speed, fd = suite.extract_entk(d)
    assert (acc.text, acc.target, acc.met) == ("0.039", "≤ 0.05", True) and "5 seeds" in acc.measure
    assert (speed.text, speed.met) == ("22.1×", True) and "1,246,464" in speed.measure
    # The target's value is the central scheme's at its step, the larger model's; DCR's forward step is context.
    assert (fd.value, fd.text, fd.target, fd.met) == (1.1e-4, "1.1e-04", "≤ 0.001", True)
    assert "central finite differences (ε = 0.0001)" in fd.measure and "ε = 0.001: 2.0e-02" in fd.measure
    # The exact contraction at the toy size: the smaller speed-up is the value; a JSON without it (older) is fine.
    d["exact_vs_jvp_toy"] = {"selected_params": 400384, "top_k": 5, "target_speedup": 2.0, "target_rel": 1e-5,
                             "meets_target": True, "rows": [
                                 {"n": 12, "speedup": 4.0, "rel_max": 6.6e-7, "auto": "exact"},
                                 {"n": 24, "speedup": 6.8, "rel_max": 9.3e-7, "auto": "exact"}]}
    *_, toy = suite.extract_entk(d)
    assert (toy.value, toy.text, toy.target, toy.met) == (4.0, "4.0×", "≥ 2×, same kernel to 1e-05", True)
    assert "400,384 selected parameters, 12 and 24 prompts" in toy.measure and "`auto` runs exact" in toy.measure


def test_extract_leakage() -> None:
    d = {"n_train": 21000, "n_eval": 8000, "workers": 2, "seconds": 11.37, "target_seconds": 60,
         "meets_target": True}
    (h,) = suite.extract_leakage(d)
    assert (h.text, h.target, h.met) == ("11.4 s", "≤ 60 s", True)
    assert "21,000 train × 8,000 eval prompts, 2 workers" in h.measure


def test_extract_sft_memory() -> None:
    d = {"summary": {"full": {"peak_rss_delta_mb": 155.4, "params": 5034752},
                     "lora": {"peak_rss_delta_mb": 120.6, "params": 5083904}},
         "lora_over_full": {"peak_rss_delta_mb": 0.776}, "target_lora_over_full_peak_rss_delta": 0.9,
         "meets_target": True}
    (h,) = suite.extract_sft_memory(d)
    assert (h.value, h.text, h.target, h.met) == (0.776, "0.78", "≤ 0.9", True)
    assert "121 / 155 MB" in h.measure and "5.0M parameters" in h.measure


def test_extract_roofline() -> None:
    levers = {"baseline": {"fraction_of_peak": 0.12}, "static KV cache": {"fraction_of_peak": 0.15}}
    runs = {"full step, fp32": {"fraction_of_peak": 0.31, "batch": 8, "seq": 128},
            "DCR step": {"fraction_of_peak": 0.2, "batch": 8, "seq": 128}}
    d = {"peak": {"float32": {"peak_gflops": 101.4}, "bfloat16": {"peak_gflops": 180.2}},
         "generation": {"levers": levers, "best_run": "static KV cache", "best_batch": 64, "best_fraction": 0.15,
                        "goal": 0.4, "meets_goal": False},
         "training": {"runs": runs, "best_fraction": 0.31, "goal": 0.3, "meets_goal": True}}
    peak, gen, train = suite.extract_roofline(d)
    assert (peak.text, peak.met) == ("101 / 180", True)
    assert (gen.text, gen.target, gen.met) == ("15.0%", "≥ 40%", False) and "static KV cache, batch 64" in gen.measure
    assert (train.text, train.met) == ("31.0%", True) and "8 × 128 tokens" in train.measure
    # A plain run names its batch once.
    d["generation"] = {**d["generation"], "best_run": "fp32, batch 128", "best_batch": 128}
    assert "levers (fp32, batch 128): useful" in suite.extract_roofline(d)[1].measure


def test_scaling_fit_recovers_a_power_law() -> None:
    import bench.bench_scaling as scaling

    ns = [8, 16, 32, 64]
    fit = scaling.fit_order(ns, [0.01 * n**1.5 for n in ns])
    assert fit["order"] == pytest.approx(1.5) and fit["r2"] == pytest.approx(1.0)
    assert scaling.fit_order(ns, [3.0, 3.0, 3.0, 3.0])["order"] == pytest.approx(0.0, abs=1e-12)


def test_extract_scaling() -> None:
    w = {"what": "greedy decoding", "n": [16, 32], "seconds": [1.0, 2.1], "expected_order": 1.0,
         "fit": {"order": 1.07, "r2": 1.0}, "meets_target": True}
    d = {"slack": 0.3, "workloads": {"generation": w, "dcr_step": {**w, "fit": {"order": 1.6, "r2": 0.98},
                                                                     "meets_target": False}}}
    gen, dcr = suite.extract_scaling(d)
    assert (gen.text, gen.target, gen.met) == ("1.07 (R² 1.00)", "≤ 1.3", True) and "n = 16, 32" in gen.measure
    assert (dcr.value, dcr.met) == (1.6, False)


def test_roofline_flop_count() -> None:
    """The analytic count on SmolLM2-135M: 30 blocks of 3,538,944 weights and the tied 576 × 49,152 head."""
    import bench.bench_roofline as roof

    arch = roof.SMOLLM2_135M
    assert roof.block_weights(arch) == 3_538_944
    one = roof.forward_flops(arch, positions=1, context_sum=1, head_positions=1)
    assert one == 30 * (2 * 3_538_944 + 4 * 576) + 2 * 576 * 49152
    # prefill of 2 prompts × 3 tokens (contexts 1+2+3 each), then 1 decoding step at context 4
    assert roof.generation_flops(arch, batch=2, prompt=3, new=2) == (
        roof.forward_flops(arch, 6, 12, 2) + roof.forward_flops(arch, 2, 8, 2))


def test_machine_info_fields() -> None:
    m = suite.machine_info()
    assert MACHINE_KEYS <= set(m) and m["os_cpu_count"] == os.cpu_count()
    line = suite.machine_line(m)
    assert line.startswith("Machine: ") and m["cpu_capability"] in line and m["torch"] in line


TINY_ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 97, "tie_word_embeddings": True, "max_position_embeddings": 128,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0}


def test_shared_prefix_generation_equals_plain_generation_and_counts_fewer_flops() -> None:
    """The prefix lever runs the shared tokens once at batch 1; its tokens must equal a plain generate's, and the
    FLOPs it counts must be the plain count less the (batch - 1) repeated prefix passes."""
    import bench.bench_roofline as roof

    model = roof.build_model(TINY_ARCH)
    r = roof.shared_prefix_run(model, TINY_ARCH, batch=3, prompt=6, new=3, shared=4, repeats=1)
    assert r["same_tokens_as_plain_generation"] is True
    executed = r["gflops"] * 1e9 * r["seconds"]
    prefix_repeat = roof.forward_flops(TINY_ARCH, 4, 4 * 5 // 2, 0)
    plain = roof.generation_flops(TINY_ARCH, 3, 6, 3)
    assert executed == pytest.approx(plain - 2 * prefix_repeat)


def test_length_bucketing_pads_less_when_sorted() -> None:
    import bench.bench_roofline as roof

    model = roof.build_model(TINY_ARCH)
    r = roof.bucketing_run(model, TINY_ARCH, n=12, batch=4, max_prompt=20, new=2, repeats=1)
    arrival, ordered = r["arrival order"], r["sorted by length"]
    assert 0 < ordered["padding_share_of_prompt_tokens"] < arrival["padding_share_of_prompt_tokens"] < 1
    assert r["speedup_sorted"] == pytest.approx(arrival["seconds"] / ordered["seconds"])
