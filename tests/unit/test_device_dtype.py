"""Every model-loading rule script runs on the device and dtype it is given (config ``compute``).

Each script runs as Snakemake runs it (``runpy`` with a ``snakemake`` object), on a tiny checkpoint, with
CUDA faked present: ``torch.cuda.is_available`` is True and the one model load is intercepted where
it would move the weights, recording the dtype and device before the script stops there.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from snakemake.iocontainers import Namedlist

from overrefusal.models import loading

REPO = Path(__file__).resolve().parents[2]
AUTO = {"device": "auto", "dtype": "auto"}


class Loaded(Exception):
    """Raised where a script's model would be moved to its device: the test has what it needs."""


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """CUDA present (with bf16), and every model load recorded: [{dtype, device}]."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    class Model:
        def __init__(self, dtype: torch.dtype) -> None:
            self.dtype = dtype

        def to(self, device: str) -> Any:
            seen.append({"dtype": self.dtype, "device": str(device)})
            raise Loaded

    def from_pretrained(model_dir: str, **kw: Any) -> Model:
        assert Path(model_dir, "config.json").is_file()
        return Model(kw["dtype"])

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return seen


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _records(tmp: Path, name: str, label: str, n: int = 4) -> str:
    return _jsonl(tmp / f"{name}.jsonl", [{"id": f"{name}-{i}", "prompt": f"how do i kill process {i}",
                                           "label": label, "category": "x", "response": "sure .", "source": "test",
                                           "licence": "none"}
                                          for i in range(n)])


def _run(script: str, tmp: Path, *, input: dict, output: dict, params: dict, wildcards: dict | None = None) -> None:
    smk = SimpleNamespace(
        input=Namedlist(fromdict=input), output=Namedlist(fromdict=output), params=Namedlist(fromdict=params),
        wildcards=Namedlist(fromdict=wildcards or {}), log=[str(tmp / "rule.log")], threads=1, rule=script,
        config={}, scriptdir=str(REPO / "scripts"),
    )
    with pytest.raises(Loaded):
        runpy.run_path(str(REPO / "scripts" / f"{script}.py"), init_globals={"snakemake": smk})


SFT = {"lr": 1e-4, "epochs": 1, "max_steps": 1, "batch_size": 2, "grad_accum": 1, "warmup_steps": 0,
       "lr_scheduler": "linear", "weight_decay": 0.0, "max_length": 64, "completion_only_loss": True,
       "bf16": False, "seed": 0, "logging_steps": 1, "save_steps": 10, "optim": "adamw_torch_fused",
       "gradient_checkpointing": False,
       "lora": {"enabled": False, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


def test_auto_is_cuda_and_bfloat16_when_a_gpu_is_seen(fake_cuda) -> None:
    assert loading.resolve_compute(AUTO) == ("cuda", torch.bfloat16)
    assert loading.resolve_compute({"device": "cpu", "dtype": "auto"}) == ("cpu", torch.float32)
    assert loading.resolve_compute({"device": "auto", "dtype": "float16"}) == ("cuda", torch.float16)


def test_cuda_without_a_gpu_is_an_error_not_a_cpu_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.resolve_compute(AUTO) == ("cpu", torch.float32)
    with pytest.raises(RuntimeError, match="compute.device: cuda"):
        loading.resolve_compute({"device": "cuda", "dtype": "auto"})


def test_generate_script(fake_cuda, tiny_model_dir: str, tmp_path: Path) -> None:
    _run("generate", tmp_path, input={"model": tiny_model_dir, "records": [_records(tmp_path, "xstest_safe", "safe")]},
         output={"out": str(tmp_path / "g.jsonl"), "meta": str(tmp_path / "meta.json")},
         params={"compute": AUTO, "eval": {"max_new_tokens": 4, "batch_size": 2}, "template": "chat"})
    assert fake_cuda == [{"dtype": torch.bfloat16, "device": "cuda"}]


def test_reflections_internal_script(fake_cuda, tiny_model_dir: str, tmp_path: Path) -> None:
    tbr = {"open_tag": "<think>", "close_tag": "</think>", "min_kept": 0.0,
           "internal": {"system_prompt": "think .", "num_shots": 0, "max_new_tokens": 4, "batch_size": 2}}
    _run("reflections_internal", tmp_path,
         input={"model": tiny_model_dir, "safety": _records(tmp_path, "safety", "toxic"),
                "shots": _records(tmp_path, "shots", "toxic")},
         output={"reflections": str(tmp_path / "r.json")},
         params={"compute": {"device": "auto", "dtype": "float32"}, "tbr": tbr, "template": "chat"})
    assert fake_cuda == [{"dtype": torch.float32, "device": "cuda"}]


def test_capability_script(fake_cuda, tiny_model_dir: str, tmp_path: Path) -> None:
    task = _jsonl(tmp_path / "toy_facts_mc.jsonl", [{"id": f"q{i}", "question": "a ?", "choices": ["x", "y"], "answer": 0}
                                                           for i in range(2)])
    _run("capability", tmp_path, input={"model": tiny_model_dir, "data": [task]}, output={"out": str(tmp_path / "c.json")},
         params={"compute": AUTO, "template": "chat",
                 "capability": {"batch_size": 2, "tasks": {"toy_facts_mc": {"kind": "mc", "num_fewshot": 0,
                                                                            "doc_to_text": "{{question}}"}}}})
    assert fake_cuda == [{"dtype": torch.bfloat16, "device": "cuda"}]


@pytest.mark.parametrize(("lora", "dtype"), [(False, torch.float32), (True, torch.bfloat16)])
def test_sft_script(fake_cuda, tiny_model_dir: str, tmp_path: Path, lora: bool, dtype: torch.dtype) -> None:
    """Full fine-tuning keeps float32 master weights; a frozen LoRA base is held in the compute dtype."""
    method = {"kind": "stl", "sft_data": ["sft_general", "sft_safety"],
              "sft": {**SFT, "lora": {**SFT["lora"], "enabled": lora}}}
    data = [_records(tmp_path, "sft_general", "general"), _records(tmp_path, "sft_safety", "toxic")]
    _run("sft", tmp_path, input={"start": tiny_model_dir, "data": data},
         output={"model": str(tmp_path / "m"), "metrics": str(tmp_path / "m.json"), "tracking": str(tmp_path / "t.json")},
         params={"compute": AUTO, "method": method, "tracking": {"enabled": False}, "template": "chat"},
         wildcards={"model": "toy", "trained": "stl", "seed": "0"})
    assert fake_cuda == [{"dtype": dtype, "device": "cuda"}]


def test_dcr_script(fake_cuda, tiny_model_dir: str, tmp_path: Path) -> None:
    """DCR trains in float32 on the GPU (its small updates vanish in bf16), wherever it runs."""
    rows = [{"id": f"c{i}", "prompt": f"p {i}", "label": lab, "category": "x", "source": "test", "licence": "none"}
            for i, lab in enumerate(["seemingly_toxic", "toxic"] * 2)]
    dcr = {"layer": 0, "steps": 1, "lr": 1e-4, "batch_size": 2, "margin": 0.25, "scale": 64, "pooling": "last",
           "seed": 0, "max_length": 32, "weight_decay": 0.0, "train_embeddings": True, "lm_weight": 0.0,
           "optim": "adamw", "save_steps": 0}
    _run("dcr_contrastive", tmp_path,
         input={"model": tiny_model_dir, "contrastive": _jsonl(tmp_path / "c.jsonl", rows),
                "general": _records(tmp_path, "g", "general")},
         output={"model": str(tmp_path / "m"), "metrics": str(tmp_path / "m.json"), "tracking": str(tmp_path / "t.json")},
         params={"compute": AUTO, "dcr": dcr, "tracking": {"enabled": False}, "template": "chat"},
         wildcards={"model": "toy", "dcr_method": "dcr_stl", "seed": "0"})
    assert fake_cuda == [{"dtype": torch.float32, "device": "cuda"}]


def test_intervention_script(fake_cuda, tiny_model_dir: str, tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "prompt": f"p {i}", "label": lab, "category": "x", "source": "test", "licence": "none"}
            for i, lab in enumerate(["seemingly_toxic", "toxic"] * 2)]
    _run("intervention", tmp_path,
         input={"model": tiny_model_dir, "contrastive": _jsonl(tmp_path / "c.jsonl", rows),
                "general": _records(tmp_path, "g", "general"), "refusals": _records(tmp_path, "s", "toxic")},
         output={"vectors": str(tmp_path / "v.safetensors"), "report": str(tmp_path / "r.json")},
         params={"compute": AUTO, "intervention": {"kind": "scans", "settings": {"n_anchors": 2}}, "template": "chat"},
         wildcards={"model": "toy", "intervention": "scans", "seed": "0"})
    assert fake_cuda == [{"dtype": torch.bfloat16, "device": "cuda"}]


@pytest.mark.parametrize(("kind", "dtype"), [("entk", torch.float32), ("separability", torch.bfloat16)])
def test_analysis_script(fake_cuda, tiny_model_dir: str, tmp_path: Path, kind: str, dtype: torch.dtype) -> None:
    """On the GPU the analyses run in the compute dtype, except the eNTK's derivatives, which need float32."""
    probes = {f"probe_{name}": _records(tmp_path, name, name) for name in ("seemingly_toxic", "toxic", "general")}
    settings = {"kind": kind, "seeds": [0], "labels": ["base"], "runs": [["base", 0]], "n_per_class": 2,
                "max_length": 32, "batch_size": 2, "params": "last_n+head", "last_n": 1, "top_k": 2, "estimator": "jvp",
                "eps": 1e-3, "probes": 2, "folds": 2, "triggers": "derived", "n_triggers": 5}
    _run("analysis", tmp_path,
         input={**probes, "refusals": _records(tmp_path, "s", "toxic"), "manifest": _records(tmp_path, "m", "x"),
                "checkpoints": [tiny_model_dir]},
         output={"json": str(tmp_path / "a.json")}, params={"compute": AUTO, "settings": settings, "template": "chat"},
         wildcards={"model": "toy", "analysis": kind})
    assert fake_cuda == [{"dtype": dtype, "device": "cuda"}]


def test_every_model_loading_rule_passes_compute() -> None:
    """The rules whose scripts load a model give them ``compute`` (a new one must join the tests above)."""
    loaders = {"generate", "reflections_internal", "capability", "sft", "dcr_contrastive", "toy_teacher", "intervention",
               "analysis"}
    for path in (REPO / "scripts").glob("*.py"):
        text = path.read_text()
        uses = any(k in text for k in ("load_model", "train_sft", "train_dcr", "run_capability", "internal_reflections",
                                       "generate("))
        assert (path.stem in loaders) == uses, f"{path.name}: loads a model but is not covered (or the reverse)"
        if uses:
            assert "smk.params.compute" in text, f"{path.name} does not pass the rule's compute params"
