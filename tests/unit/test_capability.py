"""General capability through real lm-eval on tiny local tasks.

Most checks use a *scripted* model whose outputs are known by construction, so the expected
accuracies are computed by hand rather than trusted from lm-eval: a one-layer Llama whose
attention and MLP write nothing, so the logits depend only on the last token (a bigram model we
choose). After ``:`` it predicts ``four``, after ``what`` it predicts ``five``, after anything
else EOS. Every question ends in ``Answer:``, so without a chat template the model answers
``four``; the test chat template's generation prompt is ``"\\nwhat\\n"`` (ending in whitespace like real
templates, so lm-eval keeps a word boundary before the answer), so with it the model answers ``five``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from overrefusal import capability
from overrefusal.io import DataError, write_jsonl

torch.set_num_threads(1)

SCHEMA = json.loads((Path(__file__).parents[2] / "src/overrefusal/schemas" / "capability.schema.json").read_text())
WORDS = ["[PAD]", "[UNK]", "[EOS]", "Question", "Answer", ":", "?", "what", "is", "two", "plus",
         "three", "four", "five"]
VOCAB = {w: i for i, w in enumerate(WORDS)}
Q = "what is two plus two?"

# Hand-computed: the model picks "four" (plain) or "five" (chat); see the module docstring.
MC_ROWS = [
    {"id": "m1", "question": Q, "choices": ["three", "four", "five"], "answer": 1},  # four: right, five: wrong
    {"id": "m2", "question": Q, "choices": ["four", "five"], "answer": 0},  # four: right, five: wrong
    {"id": "m3", "question": Q, "choices": ["five", "four"], "answer": 0},  # four: wrong, five: right
]
GEN_ROWS = [
    {"id": "g1", "question": Q, "answer": "four"},
    {"id": "g2", "question": Q, "answer": " four "},  # surrounding whitespace must not matter
    {"id": "g3", "question": Q, "answer": "five"},
]


def _scripted_model(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    v = 16  # hidden size == vocab size: embeddings are one-hot rows
    tk = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]")
    tok.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}\nwhat\n{% endif %}"
    )
    cfg = LlamaConfig(
        vocab_size=v, hidden_size=v, intermediate_size=4, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, head_dim=v, max_position_embeddings=128, tie_word_embeddings=False,
        eos_token_id=VOCAB["[EOS]"], pad_token_id=VOCAB["[PAD]"], bos_token_id=None, rms_norm_eps=1e-6,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # o_proj and down_proj are zero: the residual stream is the token embedding
        model.model.embed_tokens.weight.copy_(torch.eye(v))
        for norm in [model.model.norm, *(n for layer in model.model.layers
                                         for n in (layer.input_layernorm, layer.post_attention_layernorm))]:
            norm.weight.fill_(1.0)
        w = model.lm_head.weight  # logits(next | cur) = 4 * w[next, cur] after RMSNorm of a one-hot
        w[VOCAB["[EOS]"], :] = 10.0
        for cur, nxt in ((":", "four"), ("what", "five")):
            w[VOCAB["[EOS]"], VOCAB[cur]] = 0.0
            w[VOCAB[nxt], VOCAB[cur]] = 10.0
    model.generation_config.eos_token_id = VOCAB["[EOS]"]
    model.generation_config.pad_token_id = VOCAB["[PAD]"]
    model.save_pretrained(path)
    tok.save_pretrained(path)


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capability")
    _scripted_model(root / "model")
    write_jsonl(root / "mc.jsonl", MC_ROWS)
    write_jsonl(root / "gen.jsonl", GEN_ROWS)
    return root


def _tasks(root: Path, gen_fewshot: int = 0) -> dict[str, dict[str, Any]]:
    return {
        "tiny_mc": {"kind": "mc", "path": str(root / "mc.jsonl")},
        "tiny_gen": {"kind": "gen", "path": str(root / "gen.jsonl"), "num_fewshot": gen_fewshot, "max_gen_toks": 4},
    }


# --------------------------------------------------------------------------- config builder


def test_local_task_configs_mc_and_gen(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    write_jsonl(tmp_path / "shots.jsonl", GEN_ROWS[:1])
    tasks = {
        "a": {"kind": "mc", "path": str(tmp_path / "mc.jsonl"), "num_fewshot": 2},
        "b": {"kind": "gen", "path": str(tmp_path / "gen.jsonl"), "fewshot_path": str(tmp_path / "shots.jsonl")},
        "mmlu": {"kind": "lm_eval", "num_fewshot": 5},
    }
    mc, gen = capability.local_task_configs(tasks)  # the registry task gets no config
    assert mc["task"] == "a" and mc["output_type"] == "multiple_choice" and mc["num_fewshot"] == 2
    assert mc["doc_to_choice"] == "choices" and mc["doc_to_target"] == "answer"
    assert [m["metric"] for m in mc["metric_list"]] == ["acc", "acc_norm"]
    assert mc["doc_to_text"] == "Question: {{question}}\nAnswer:" and "\n" in mc["doc_to_text"]  # a real newline
    assert mc["dataset_kwargs"]["data_files"] == {"test": str((tmp_path / "mc.jsonl").resolve())}
    assert "fewshot_split" not in mc
    assert gen["output_type"] == "generate_until" and gen["num_fewshot"] == 0
    assert gen["generation_kwargs"]["until"] == ["\n"] and gen["generation_kwargs"]["do_sample"] is False
    assert gen["generation_kwargs"]["max_gen_toks"] == 32
    assert gen["fewshot_split"] == "train"
    assert gen["dataset_kwargs"]["data_files"]["train"] == str((tmp_path / "shots.jsonl").resolve())
    assert [m["metric"] for m in gen["metric_list"]] == ["exact_match"]


@pytest.mark.parametrize(
    ("row", "kind", "message"),
    [
        ({"id": "x", "question": "q", "choices": ["a", "b"], "answer": 2}, "mc", "index into 'choices'"),
        ({"id": "x", "question": "q", "choices": ["a"], "answer": 0}, "mc", "at least 2 strings"),
        ({"id": "x", "question": "q", "choices": ["a", "b"], "answer": True}, "mc", "'answer'"),
        ({"id": "x", "question": "", "answer": "a"}, "gen", "'question'"),
        ({"id": "x", "question": "q", "answer": 3}, "gen", "'answer' must be a non-empty string"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, row: dict[str, Any], kind: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [MC_ROWS[0] if kind == "mc" else GEN_ROWS[0], row])
    with pytest.raises(DataError, match=rf"t\.jsonl: row 2: .*{message}"):
        capability.local_task_configs({"t": {"kind": kind, "path": str(path)}})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "qa", "path": "x"}, "kind is 'qa'"),
        ({"kind": "mc"}, "needs 'path'"),
        ({"kind": "mc", "path": "x", "num_fewshot": -1}, "num_fewshot"),
        ({"kind": "gen", "path": "x", "max_gen_toks": 0}, "max_gen_toks"),
        ({"kind": "lm_eval", "path": "x"}, "unknown field"),
    ],
)
def test_bad_specs_are_rejected(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        capability.local_task_configs({"t": spec})


def test_paper_tasks_plan_and_exist_in_lm_eval() -> None:
    """The paper suites are lm-eval registry names whose metric is one the task really reports.

    Running them needs the HF hub, so this only checks the plan and lm-eval's own task index
    (scanning just the relevant folders keeps this fast).
    """
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    plan = capability.registry_task_plan(capability.PAPER_TASKS)
    assert plan == {0: ["arc_easy", "arc_challenge", "openbookqa", "piqa"], 5: ["mmlu", "gsm8k"]}
    assert capability.local_task_configs(capability.PAPER_TASKS) == []
    root = Path(lm_eval.tasks.__file__).parent
    tm = TaskManager(
        include_defaults=False,
        include_path=[str(root / d) for d in ("mmlu/default", "gsm8k", "arc", "openbookqa", "piqa")],
    )
    for name, spec in capability.PAPER_TASKS.items():
        entry = tm.task_index.get(name)
        assert entry is not None and entry.yaml_path is not None, name
        text = Path(entry.yaml_path).read_text()
        if m := re.search(r"^include: (\S+)", text, flags=re.M):  # arc_challenge reuses arc_easy.yaml
            text += (Path(entry.yaml_path).parent / m.group(1)).read_text()
        metric, _, flt = spec["metric"].partition(",")
        assert f"metric: {metric}" in text, name
        if flt:
            assert flt in text, name


# --------------------------------------------------------------------------- real lm-eval runs


def test_run_capability_plain_matches_hand_computed(scripted_dir: Path) -> None:
    out = capability.run_capability(
        str(scripted_dir / "model"), _tasks(scripted_dir, gen_fewshot=1), template="alpaca", batch_size=2
    )
    jsonschema.validate(out, SCHEMA)
    mc, gen = out["tasks"]["tiny_mc"], out["tasks"]["tiny_gen"]
    assert mc["metrics"] == pytest.approx({"acc": 2 / 3, "acc_norm": 2 / 3})
    assert gen["metrics"] == pytest.approx({"exact_match": 2 / 3})
    assert (mc["n"], gen["n"], mc["num_fewshot"], gen["num_fewshot"]) == (3, 3, 0, 1)
    assert (mc["primary_metric"], gen["primary_metric"]) == ("acc", "exact_match")
    assert out["lm_eval_version"] == "0.4.13" and out["template"] == "alpaca"


def test_run_capability_chat_template_is_applied(scripted_dir: Path) -> None:
    out = capability.run_capability(str(scripted_dir / "model"), _tasks(scripted_dir), template="chat", batch_size=4)
    jsonschema.validate(out, SCHEMA)
    # the chat generation prompt "\nwhat\n" makes the model answer "five": only m3 and g3 are right
    assert out["tasks"]["tiny_mc"]["metrics"]["acc"] == pytest.approx(1 / 3)
    assert out["tasks"]["tiny_gen"]["metrics"]["exact_match"] == pytest.approx(1 / 3)


def test_run_capability_hooks_are_active_during_eval_only(scripted_dir: Path) -> None:
    """A hook that swaps the "four" and "five" logits flips every answer, like a refusal-vector edit."""
    state = {"calls": 0, "entered": False, "exited": False}
    four, five = VOCAB["four"], VOCAB["five"]

    def swap(_module: torch.nn.Module, _inputs: Any, logits: torch.Tensor) -> torch.Tensor:
        state["calls"] += 1
        out = logits.clone()
        out[..., [four, five]] = logits[..., [five, four]]
        return out

    @contextlib.contextmanager
    def hooks(model: torch.nn.Module) -> Iterator[None]:
        handle = model.lm_head.register_forward_hook(swap)
        state["entered"] = True
        try:
            yield
        finally:
            handle.remove()
            state["exited"] = True

    out = capability.run_capability(
        str(scripted_dir / "model"), _tasks(scripted_dir), template="alpaca", batch_size=2, hooks=hooks
    )
    assert state["entered"] and state["exited"] and state["calls"] > 0
    assert out["tasks"]["tiny_mc"]["metrics"]["acc"] == pytest.approx(1 / 3)
    assert out["tasks"]["tiny_gen"]["metrics"]["exact_match"] == pytest.approx(1 / 3)


def test_run_capability_on_shared_tiny_model_with_limit(tiny_model_dir: str, scripted_dir: Path) -> None:
    """Random model, BOS-adding tokenizer and a BOS-starting chat template: runs, and respects limit."""
    out = capability.run_capability(
        tiny_model_dir, _tasks(scripted_dir), template="chat", batch_size=2, seed=3, limit=2
    )
    jsonschema.validate(out, SCHEMA)
    assert set(out["tasks"]) == {"tiny_mc", "tiny_gen"}
    for res in out["tasks"].values():
        assert res["n"] == 2
        assert all(0.0 <= v <= 1.0 for v in res["metrics"].values())
    assert out["seed"] == 3 and out["limit"] == 2


def test_run_capability_registry_path_with_yaml_group(
    scripted_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``lm_eval`` branch (per-few-shot calls, groups, result mapping) on YAML tasks of our own.

    The real paper tasks need the hub, so lm-eval's registry is swapped for a folder holding a
    YAML task and a YAML group over two tasks; indexing just that folder also keeps this fast.
    """
    import functools

    import lm_eval.tasks

    mc = str(scripted_dir / "mc.jsonl")
    body = (
        "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {path}\ntest_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{{{question}}}}\\nAnswer:"\n'  # double quotes: a real newline
        "doc_to_choice: choices\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
    for task in ("yaml_a", "yaml_b"):
        (tmp_path / f"{task}.yaml").write_text(f"task: {task}\n" + body.format(path=mc))
    (tmp_path / "yaml_group.yaml").write_text(
        "group: yaml_group\ntask:\n  - yaml_a\n  - yaml_b\naggregate_metric_list:\n"
        "  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 1.0\n"
    )
    monkeypatch.setattr(
        lm_eval.tasks, "TaskManager",
        functools.partial(lm_eval.tasks.TaskManager, include_defaults=False, include_path=str(tmp_path)),
    )
    tasks = {
        "single": {"kind": "lm_eval", "lm_eval_task": "yaml_a", "num_fewshot": 0, "metric": "acc"},
        "grouped": {"kind": "lm_eval", "lm_eval_task": "yaml_group", "num_fewshot": 1, "metric": "acc"},
    }
    assert capability.registry_task_plan(tasks) == {0: ["yaml_a"], 1: ["yaml_group"]}
    out = capability.run_capability(str(scripted_dir / "model"), tasks, template="alpaca", batch_size=2)
    jsonschema.validate(out, SCHEMA)
    single, grouped = out["tasks"]["single"], out["tasks"]["grouped"]
    assert (single["lm_eval_task"], single["n"], single["num_fewshot"]) == ("yaml_a", 3, 0)
    assert (grouped["lm_eval_task"], grouped["n"], grouped["num_fewshot"]) == ("yaml_group", 6, 1)  # 3 + 3 docs
    assert single["metrics"]["acc"] == pytest.approx(2 / 3) and grouped["metrics"]["acc"] == pytest.approx(2 / 3)


def test_run_capability_rejects_bad_arguments(scripted_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown template"):
        capability.run_capability(str(scripted_dir / "model"), _tasks(scripted_dir), template="vicuna", batch_size=1)
    with pytest.raises(ValueError, match="limit must be"):
        capability.run_capability(str(scripted_dir / "model"), _tasks(scripted_dir), template="chat", batch_size=1,
                                  limit=0)
    with pytest.raises(ValueError, match="no tasks"):
        capability.run_capability(str(scripted_dir / "model"), {}, template="chat", batch_size=1)


def test_hf_offline_sets_and_restores_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline flags must reach already-imported libraries (they read the env at import)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with capability._hf_offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert huggingface_hub.constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False
