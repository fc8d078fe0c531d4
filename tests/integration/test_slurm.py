"""SLURM: the sbatch arguments of both cluster profiles (dry run), and a real single-node cluster run.

The real run starts a local SLURM with fake GPUs (tools/slurm/start.sh installs `slurm-wlm munge`
with apt-get when missing), runs a toy-world target through `snakemake --profile
tests/fixtures/slurm-profile`, checks the outputs and the sbatch/`scontrol` view of the GPU jobs,
and in teardown stops exactly the daemons it started and checks that /etc/slurm/slurm.conf is gone
(while it exists without a controller every snakemake call is ~10 s slower). It is skipped only
when not root or when the packages cannot be installed.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.pipeline import REPO, copy_workflow, preset_config, preset_files, snakemake

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = "tests/fixtures/tiny_config.yaml"
TEST_PROFILE = "tests/fixtures/slurm-profile"
TARGET = "results/tiny/models/toy-llama/base"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
# profile -> (the GPU request its GPU jobs must carry, the one they must not)
PROFILES = {"slurm": ("--gpus=1", "--gres"), "slurm-gres": ("--gres=gpu:1", "--gpus")}
LOCAL_RULES = {"all", "tables", "figure_compliance", "figure_safety_tradeoff"}


# ---- dry runs: what each profile would submit ---------------------------------------------------


def parse_dry_run(stdout: str) -> list[dict[str, Any]]:
    """Jobs of ``snakemake -n`` output: rule name, threads and resources."""
    jobs: list[dict[str, Any]] = []
    job: dict[str, Any] | None = None
    for line in stdout.splitlines():
        m = re.fullmatch(r"(localrule|rule) (\w+):", line)
        if m:
            job = {"rule": m[2], "threads": 1, "resources": {}}
            jobs.append(job)
            continue
        text = line.strip()
        if job is None:
            continue
        if text.startswith("threads: "):
            job["threads"] = int(text.split()[1])
        elif text.startswith("resources: "):
            for item in text[len("resources: "):].split(", "):
                key, _, value = item.partition("=")
                if value != "<TBD>":
                    job["resources"][key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return jobs


class _Resources(dict):  # what the plugin reads: job.resources.get(k) and job.resources.k
    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def sbatch_args(job: dict[str, Any]) -> str:
    """The sbatch call the SLURM executor plugin builds for this job (its own functions, no cluster)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    stub = SimpleNamespace(resources=_Resources(job["resources"]), threads=job["threads"], name=job["rule"],
                           is_group=lambda: False)
    params = {"run_uuid": "RUN", "slurm_logfile": "LOG", "comment_str": f"rule_{job['rule']}", "account": "",
              "partition": f"-p {job['resources'].get('slurm_partition', '')}", "workdir": "WD"}
    return get_submit_command(stub, params) + set_gres_string(stub)


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """``snakemake --profile <p> -n`` of the default (toy) config in a fresh copy, for both profiles."""
    work = copy_workflow(tmp_path_factory.mktemp("slurm_dry") / "wf")
    out = {}
    for profile in PROFILES:
        proc = snakemake(work, "--profile", profile, "-n", timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert re.search(rf"Using profiles? {profile}\b", proc.stdout + proc.stderr), proc.stderr[-500:]
        out[profile] = parse_dry_run(proc.stdout)
        assert out[profile], proc.stdout[-2000:]
    return out


def declared_localrules() -> set[str]:
    """Rule names in every ``localrules:`` block of the Snakefile and rules/*.smk (dry runs do not show them)."""
    names: set[str] = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(r"([ \t]*)localrules:(.*)", line)
            if not m:
                continue
            block = [m[2]]
            for nxt in lines[i + 1:]:  # one rule name per more-indented line: "    tables,"
                if not re.fullmatch(rf"{m[1]}[ \t]+\w+,?[ \t]*(#.*)?", nxt):
                    break
                block.append(nxt.split("#")[0])
            names |= set(re.findall(r"\w+", " ".join(block)))
    return names


def test_tables_and_figures_are_localrules() -> None:
    assert LOCAL_RULES <= declared_localrules()


def gpu_rules(jobs: list[dict[str, Any]]) -> set[str]:
    return {j["rule"] for j in jobs if j["resources"].get("gpu") or "gpu" in str(j["resources"].get("gres", ""))}


def test_gpu_rules_are_the_training_and_generation_rules(dry_runs: dict) -> None:
    gpu = gpu_rules(dry_runs["slurm"])
    assert {"pretrain_base", "toy_teacher", "reflections_internal", "dcr_contrastive", "sft", "generate",
            "capability", "intervention"} <= gpu
    assert not gpu & {"toy_world", "train_tokenizer", "judge", "reflections_external"}
    assert gpu_rules(dry_runs["slurm-gres"]) == gpu


@pytest.mark.parametrize("profile", list(PROFILES))
def test_sbatch_arguments_per_rule(dry_runs: dict, profile: str) -> None:
    wanted, unwanted = PROFILES[profile]
    gpu = gpu_rules(dry_runs["slurm"])
    jobs = dry_runs[profile]
    local = declared_localrules()
    for job in jobs:
        if job["rule"] in local:
            continue
        args = sbatch_args(job)
        rule = job["rule"]
        assert re.search(r" -t \d+", args) and re.search(r" --mem \d+", args), (rule, args)
        if rule in gpu:
            assert f" {wanted}" in args and unwanted not in args, (
                f"{profile}: GPU rule {rule} must request {wanted} (add it to {profile}/config.yaml set-resources): "
                f"{args}")
            assert job["resources"]["slurm_partition"] == "gpu", (rule, args)
            assert "--ntasks=" not in args  # the plugin leaves task geometry to SLURM for GPU jobs
        else:
            assert "--gpus" not in args and "--gres" not in args, (rule, args)
            assert "--ntasks=1" in args, (rule, args)


PRESETS = {"tbr": "llama-2-7b", "dcr_qwen2.5-1.5b": "qwen2.5-1.5b", "dcr_qwen2.5-7b": "qwen2.5-7b",
           "dcr_llama3-8b": "llama-3-8b"}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_paper_preset_dry_run_lists_the_full_dag_with_gpu_resources(preset: str,
                                                                   tmp_path: Path) -> None:
    """`snakemake --configfile <preset> --profile slurm -n`: fetch and staging local, training,
    generation and capability on GPUs, for the preset's hub model, down to the tables."""
    from overrefusal.config import enabled_methods
    from overrefusal.judge_validation import default_data_dir
    from overrefusal.methods import KINDS

    work = copy_workflow(tmp_path / "wf")
    raw = default_data_dir()  # the mirror when there is one; else every source is named as missing
    raw_dir = str(Path(raw).resolve()) if raw and Path(raw).is_dir() else "null"
    proc = snakemake(work, "--profile", "slurm", "-n", "--configfile", *preset_files(preset),
                     "--config", f"data={{raw_dir: {raw_dir}}}", timeout=300,
                     env={"OPENAI_API_KEY": "sk-test-not-used"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = parse_dry_run(proc.stdout)
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    cfg = preset_config(*[Path(f).stem for f in preset_files(preset)])
    methods = enabled_methods(cfg)
    trained = [m for m in methods if KINDS[cfg["methods"][m]["kind"]].trains]
    assert len(by_rule["fetch_model"]) == 1 and "pretrain_base" not in by_rule and "toy_world" not in by_rule
    assert len(by_rule["sft"]) == len(trained) and len(by_rule["generate"]) == len(methods)
    assert len(by_rule.get("dcr_contrastive", [])) == sum(cfg["methods"][m]["kind"] == "dcr" for m in methods)
    assert {"real_splits", "judge", "tables", "capability"} <= set(by_rule)
    local = declared_localrules()
    assert {"fetch_model", "stage_real_source", "stage_capability_data", "tables"} <= local
    # the registry benchmarks' hub datasets: staged once, read by every capability job
    assert len(by_rule["stage_capability_data"]) == 1
    staged = re.search(r"resources/hf_datasets/[\w+.-]+\.json", proc.stdout)
    capability_inputs = re.findall(r"^rule capability:\n\s+input: (.*)$", proc.stdout, re.M)
    assert staged and len(capability_inputs) == len(by_rule["capability"])
    assert all(staged[0] in line for line in capability_inputs)
    model = PRESETS[preset]
    for job in jobs:
        if job["rule"] in local:
            continue
        args = sbatch_args(job)
        if job["rule"] in {"sft", "dcr_contrastive", "generate", "capability", "reflections_internal"}:
            assert " --gpus=1" in args and job["resources"]["slurm_partition"] == "gpu", (preset, job["rule"], args)
    assert f"resources/models/{model}" in proc.stdout


def test_the_two_profiles_differ_only_in_the_gpu_request() -> None:
    gpus = yaml.safe_load((REPO / "slurm/config.yaml").read_text())
    gres = yaml.safe_load((REPO / "slurm-gres/config.yaml").read_text())
    assert {k: v for k, v in gpus.items() if k != "set-resources"} == {
        k: v for k, v in gres.items() if k != "set-resources"}
    assert set(gpus["set-resources"]) == set(gres["set-resources"])
    for rule, res in gres["set-resources"].items():
        stripped = {k: v for k, v in res.items() if k not in ("gpu", "gres")}
        assert stripped == gpus["set-resources"][rule], rule
        if "gres" in res:
            assert res == {**stripped, "gpu": 0, "gres": "gpu:1"}, rule
    for profile in (gpus, gres):
        assert profile["executor"] == "slurm"
        assert profile["slurm-status-command"] == "squeue"  # clusters without accounting (sacct) hang otherwise


def test_profiles_name_only_existing_rules() -> None:
    proc = snakemake(REPO, "--list-rules", "--nolock", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = set(proc.stdout.split())
    for profile in (*PROFILES, TEST_PROFILE):
        names = set(yaml.safe_load((REPO / profile / "config.yaml").read_text()).get("set-resources", {}))
        assert names <= rules, f"{profile}: set-resources for unknown rules {sorted(names - rules)}"


# ---- a real single-node cluster ---------------------------------------------------------------


def _alive(name: str, pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if os.geteuid() != 0:
        pytest.skip("the SLURM test needs root: tools/slurm/start.sh installs slurm-wlm/munge and writes /etc/slurm")
    work = copy_workflow(tmp_path_factory.mktemp("slurm") / "wf")
    state = work / ".slurm-local"
    env = {**os.environ, "SLURM_LOCAL": str(state), "FAKE_GPUS": "2"}
    start = subprocess.run(["bash", "tools/slurm/start.sh"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=900)
    if start.returncode == 3:
        pytest.skip(f"SLURM packages are missing and cannot be installed here: {start.stderr.strip()[-600:]}")
    if start.returncode == 2 and "in use by another cluster" in start.stderr:
        pytest.skip(f"another local SLURM cluster is running on this machine: {start.stderr.strip()[-400:]}")
    daemons: list[tuple[str, int]] = []
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        daemons = [(n, int(p)) for n, p in (line.split() for line in (state / "daemons").read_text().splitlines())]
        assert {"slurmctld", "slurmd"} <= {n for n, _ in daemons}
        yield SimpleNamespace(work=work, env=env, daemons=daemons)
    finally:
        stop = subprocess.run(["bash", "tools/slurm/stop.sh"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not SLURM_CONF.exists(), "stop.sh left /etc/slurm/slurm.conf behind"
    assert not Path("/etc/slurm/gres.conf").exists()
    assert not [(n, p) for n, p in daemons if _alive(n, p)], "stop.sh left daemons running"


def _submitted(log: str) -> dict[str, tuple[str, str]]:
    """{rule: (slurm job id, sbatch call)} from the plugin's --verbose log."""
    calls = re.findall(r"sbatch call: (sbatch .*?--comment rule_(\w+?)(?:_wildcards_\S+)? .*)", log)
    ids = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", log)
    by_rule = {rule: jobid for jobid, rule in ids}
    return {rule: (by_rule[rule], call) for call, rule in calls if rule in by_rule}


def test_toy_target_runs_on_the_cluster(cluster: SimpleNamespace) -> None:
    work = cluster.work
    proc = snakemake(work, TARGET, "--profile", TEST_PROFILE, "--configfile", TINY, "--verbose", timeout=600,
                     env=cluster.env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    base = work / TARGET
    assert (base / "config.json").is_file() and list(base.glob("*.safetensors"))
    assert (work / "results/tiny/models/toy-llama/pretrain_metrics.json").is_file()
    assert (work / "logs/tiny/toy-llama/pretrain_base.log").is_file()

    submitted = _submitted(log)
    assert set(submitted) == {"toy_world", "train_tokenizer", "pretrain_base"}, log[-4000:]
    # The two GPU request styles: --gpus from the rule's gpu=1, --gres from the test profile.
    assert " --gpus=1" in submitted["pretrain_base"][1] and "--gres" not in submitted["pretrain_base"][1]
    assert " --gres=gpu:1" in submitted["train_tokenizer"][1] and "--gpus" not in submitted["train_tokenizer"][1]
    assert "--gpus" not in submitted["toy_world"][1] and "--gres" not in submitted["toy_world"][1]
    assert " -p debug" in submitted["pretrain_base"][1]

    def scontrol(jobid: str) -> str:
        return subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True).stdout

    jobs = {rule: scontrol(jobid) for rule, (jobid, _) in submitted.items()}
    for rule, text in jobs.items():
        assert "JobState=COMPLETED" in text, (rule, text)
        assert "Partition=debug" in text, (rule, text)
    assert re.search(r"TresPerJob=gres[:/]gpu[:=]1", jobs["pretrain_base"]), jobs["pretrain_base"]
    assert re.search(r"TresPer(Node|Job)=gres[:/]gpu[:=]1", jobs["train_tokenizer"]), jobs["train_tokenizer"]
    assert "gpu" not in jobs["toy_world"].split("TRES=")[1].split()[0]
    slurm_log = work / ".snakemake/slurm_logs/rule_pretrain_base/toy-llama" / f"{submitted['pretrain_base'][0]}.log"
    assert slurm_log.is_file() and "Finished jobid" in slurm_log.read_text()

    # Jobs recorded their metadata like local ones: nothing is left to do.
    again = snakemake(work, TARGET, "-n", "--profile", TEST_PROFILE, "--configfile", TINY, env=cluster.env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
