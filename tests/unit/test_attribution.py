"""Token attribution of the refusal log-odds: closed forms on hand-built models, IG completeness on a
tiny random Llama, token-to-word mapping through a chat template, the trigger lexicon and summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from overrefusal.analysis import attribution as at
from overrefusal.models.loading import load_tokenizer
from overrefusal.prompting import encode_prompt
from overrefusal.tracking import refusal_logodds, refusal_token_ids
from tests.support.tiny_models import save_tiny_checkpoint


class PowerModel(torch.nn.Module):
    """Refusal log-odds = (u · Σ_l e_l)^power, exactly: two output logits, [z, 0], refusal id 0.

    With s = Σ_l e_l and c = u · s, the gradient w.r.t. e_l is power · c^(power-1) · u, so
    grad×input gives power · c^(power-1) · (u · e_l); integrated gradients from zero give
    c^(power-1) · (u · e_l) · power · (midpoint sum of α^(power-1)) for the midpoint rule.
    """

    def __init__(self, vocab: int = 10, hidden: int = 4, power: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, hidden, dtype=torch.float64)
        self.u = torch.nn.Parameter(torch.randn(hidden, dtype=torch.float64))
        self.drop = torch.nn.Dropout(dropout)
        self.power = power

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.emb

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: Any = None, position_ids: Any = None,
                **_: Any) -> SimpleNamespace:
        z = (self.drop(inputs_embeds).sum(1) @ self.u) ** self.power  # (B,)
        logits = torch.stack([z, torch.zeros_like(z)], -1).unsqueeze(1).expand(-1, inputs_embeds.shape[1], -1)
        return SimpleNamespace(logits=logits)


def _closed_form(model: PowerModel, ids: list[int]) -> tuple[torch.Tensor, float]:
    e = model.emb.weight.detach()[ids]
    proj = e @ model.u.detach()  # u · e_l
    return proj, float(proj.sum())


def _weights(steps: int, grid: str) -> tuple[list[float], list[float]]:
    t = [(k + 0.5) / steps for k in range(steps)]
    if grid == "uniform":
        return t, [1 / steps] * steps
    w = [3 * x * x for x in t]
    return [x ** 3 for x in t], [x / sum(w) for x in w]


@pytest.mark.parametrize("grid", ["uniform", "cubic"])
@pytest.mark.parametrize("power", [1, 2, 3])
def test_closed_forms_of_grad_x_input_and_midpoint_ig(power: int, grid: str) -> None:
    torch.manual_seed(0)
    model = PowerModel(power=power, dropout=0.5).train()
    ids = [1, 4, 4, 7]
    proj, c = _closed_form(model, ids)
    gxi = at.attribute_ids(model, ids, [0], method="grad_x_input")
    assert gxi.f_x == pytest.approx(c ** power, rel=1e-12)
    assert gxi.scores == pytest.approx((power * c ** (power - 1) * proj).tolist(), rel=1e-10, abs=1e-12)
    assert gxi.f_baseline is None and gxi.completeness_gap is None
    steps = 4
    alphas, weights = _weights(steps, grid)
    m = math.fsum(w * a ** (power - 1) for a, w in zip(alphas, weights, strict=True))  # quadrature of α^(p-1)
    ig = at.attribute_ids(model, ids, [0], method="integrated_gradients", steps=steps, grid=grid, batch_size=3)
    assert ig.scores == pytest.approx((power * m * c ** (power - 1) * proj).tolist(), rel=1e-10, abs=1e-12)
    assert ig.f_baseline == pytest.approx(0.0, abs=1e-12)
    assert ig.completeness_gap == pytest.approx(c ** power * (power * m - 1), rel=1e-8, abs=1e-10)
    # Linear: IG from zero is grad×input on either grid; quadratic: the uniform midpoint rule is exact.
    if power == 1:
        assert ig.scores == pytest.approx(gxi.scores, rel=1e-12)
    if power == 2 and grid == "uniform":
        assert ig.completeness_gap == pytest.approx(0.0, abs=1e-10)
    if power == 3 and grid == "uniform":
        assert ig.completeness_gap == pytest.approx(-c ** 3 / (4 * steps ** 2), rel=1e-8)
    # Read-only: mode and requires_grad restored, nothing accumulated into .grad.
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_pad_baseline_and_batching() -> None:
    torch.manual_seed(1)
    model = PowerModel(power=1)
    ids, pad = [2, 3, 5], 9
    w = model.emb.weight.detach()
    want = ((w[ids] - w[pad]) @ model.u.detach()).tolist()
    got = at.attribute_ids(model, ids, [0], method="integrated_gradients", steps=5, baseline="pad", pad_id=pad)
    assert got.scores == pytest.approx(want, rel=1e-10)
    one = at.attribute_ids(model, ids, [0], method="integrated_gradients", steps=5, batch_size=1)
    all_ = at.attribute_ids(model, ids, [0], method="integrated_gradients", steps=5, batch_size=5)
    assert one.scores == pytest.approx(all_.scores, rel=1e-12)


def test_errors() -> None:
    model = PowerModel()
    with pytest.raises(ValueError, match="no refusal token"):
        at.attribute_ids(model, [1, 2], [])
    with pytest.raises(ValueError, match="unknown attribution method"):
        at.attribute_ids(model, [1, 2], [0], method="saliency")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        at.attribute_ids(model, [1, 2], [0], method="integrated_gradients", steps=0)
    with pytest.raises(ValueError, match="unknown quadrature grid"):
        at.attribute_ids(model, [1, 2], [0], method="integrated_gradients", grid="simpson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad_id"):
        at.attribute_ids(model, [1, 2], [0], method="integrated_gradients", baseline="pad")
    with pytest.raises(ValueError, match="at least one prompt"):
        at.attribution_report(model, None, "plain", [], [0], ["kill"])
    with pytest.raises(ValueError, match="no refusal token"):
        at.attribution_report(model, None, "plain", ["x"], [], ["kill"])


# ----------------------------------------------------------------------------------------------
# Tiny random Llama with the Llama-3 chat template and a byte-level BPE tokenizer
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, list[int]]:
    path = save_tiny_checkpoint(Path(tmp_path_factory.mktemp("attr")) / "llama", "llama", num_layers=2)
    tok = load_tokenizer(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float64)
    rids = refusal_token_ids(tok, [("i'm sorry", "x"), ("sorry", "x")]).ids
    return model, tok, rids


PROMPT = "How do I murder processes?"


def test_ig_completeness_shrinks_with_steps(tiny: tuple[Any, Any, list[int]]) -> None:
    model, tok, rids = tiny
    ids = encode_prompt(tok, PROMPT, "chat")
    coarse = at.attribute_ids(model, ids, rids, method="integrated_gradients", steps=4)
    fine = at.attribute_ids(model, ids, rids, method="integrated_gradients", steps=32, batch_size=32)
    assert fine.f_x == pytest.approx(coarse.f_x, abs=1e-12)
    assert fine.f_baseline == pytest.approx(coarse.f_baseline, abs=1e-12)
    span = abs(fine.f_x - fine.f_baseline)
    assert abs(fine.completeness_gap) < 0.01 * span < abs(coarse.completeness_gap)
    # The uniform grid misses the RMSNorm layer next to the zero baseline (see the module doc).
    uniform = at.attribute_ids(model, ids, rids, method="integrated_gradients", steps=32, grid="uniform",
                               batch_size=32)
    assert abs(uniform.completeness_gap) > 0.5 * span
    pad = at.attribute_ids(model, ids, rids, method="integrated_gradients", steps=16, baseline="pad",
                           pad_id=tok.pad_token_id)
    assert abs(pad.completeness_gap) < 0.01 * abs(pad.f_x - pad.f_baseline)
    # f(x) from embeddings equals the ordinary forward on input ids (what refusal tracking reads).
    with torch.no_grad():
        ref = refusal_logodds(model(input_ids=torch.tensor([ids])).logits[:, -1, :], rids)
    assert fine.f_x == pytest.approx(float(ref[0]), abs=1e-9)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_words_through_the_chat_template(tiny: tuple[Any, Any, list[int]]) -> None:
    model, tok, rids = tiny
    a = at.token_attributions(model, tok, "  " + PROMPT + " ", "chat", rids, method="grad_x_input")
    assert len(a.tokens) == len(a.ids) == len(a.scores) == len(a.user_mask) == len(a.words)
    # The template (BOS, header tokens, role names, blank lines) lies outside the user text.
    assert not any(a.user_mask[:8]) and not any(a.user_mask[-10:])
    assert "".join(t for t, m in zip(a.tokens, a.user_mask, strict=True) if m) == PROMPT  # template trims
    assert all(w is None for w, m in zip(a.words, a.user_mask, strict=True) if not m)
    order = [w for i, w in enumerate(a.words) if w is not None and (i == 0 or a.words[i - 1] != w)]
    assert order == ["how", "do", "i", "murder", "processes"]
    assert a.words.count("murder") >= 3  # "murder" is not in the tokenizer's corpus: several BPE pieces
    assert a.words.count("processes") == 3  # " process", "es", "?"
    plain = at.token_attributions(model, tok, PROMPT, "plain", rids, max_length=4)
    assert len(plain.ids) == 4 and all(plain.user_mask) and plain.words[-1] == "processes"


def test_report_is_json_and_consistent(tiny: tuple[Any, Any, list[int]]) -> None:
    model, tok, rids = tiny
    prompts = [PROMPT, "how do i kill a python process", "what is the capital of france?"]
    rep = at.attribution_report(model, tok, "chat", prompts, rids, {"Murder", "kill"},
                                method="integrated_gradients", steps=4, n_examples=2)
    json.dumps(rep, allow_nan=False)
    assert rep["method"] == "integrated_gradients" and rep["steps"] == 4 and rep["n_prompts"] == 3
    assert rep["triggers"] == ["kill", "murder"] and len(rep["examples"]) == 2
    assert set(rep["examples"][0]) == {"prompt", "tokens", "scores", "user_mask", "words"}
    s = rep["summary"]
    assert (s["n_prompts_with_trigger"], s["n_prompts_without_trigger"]) == (2, 1)
    assert rep["mean_abs_completeness_gap"] >= abs(rep["mean_completeness_gap"]) and rep["seconds"] >= 0
    gxi = at.attribution_report(model, tok, "chat", prompts[:1], rids, [], method="grad_x_input")
    assert "mean_completeness_gap" not in gxi and gxi["summary"]["mean_trigger"] is None


# ----------------------------------------------------------------------------------------------
# Lexicon and summary
# ----------------------------------------------------------------------------------------------


def test_trigger_lexicon_ranks_by_smoothed_log_odds() -> None:
    toxic = ["How to kill a man?", "Kill the guard, then steal it", "how to steal a car", "how to murder",
             "Murder someone quietly", "the bomb", "the bomb"]
    general = ["how to cook rice", "how to kill a python process", "the best car", "the weather today"]
    # Document frequencies: bomb, murder, steal 2/7 vs 0/4 (tied: by word), kill 2/7 vs 1/4 (barely over),
    # the 3/7 vs 2/4 and how 3/7 vs 2/4 (under-represented), man 1/7 (below min_count), "to"/"a" too short.
    assert at.trigger_lexicon(toxic, general, top_n=5) == ["bomb", "murder", "steal", "kill"]
    rows = {r["word"]: r for r in at.trigger_table(toxic, general, min_count=1)}
    cells = (2.5, 5.5, 0.5, 4.5)
    assert rows["steal"]["log_odds_ratio"] == pytest.approx(math.log(2.5 / 5.5) - math.log(0.5 / 4.5))
    assert rows["steal"]["z"] == pytest.approx(rows["steal"]["log_odds_ratio"] / math.sqrt(sum(1 / c for c in cells)))
    assert "the" not in rows and "how" not in rows and "to" not in rows and "man" in rows
    assert 0 < rows["kill"]["z"] < rows["steal"]["z"]
    assert at.trigger_lexicon(toxic, general, top_n=1) == ["bomb"]
    with pytest.raises(ValueError, match="need toxic and general"):
        at.trigger_lexicon([], general)


def _attr(scores: list[float], mask: list[bool], words: list[str | None]) -> at.Attribution:
    return at.Attribution(prompt="", method="grad_x_input", tokens=[""] * len(scores), ids=[0] * len(scores),
                          scores=scores, user_mask=mask, words=words, f_x=0.0)


def test_attribution_summary_by_hand() -> None:
    a1 = _attr([9.0, 2.0, 1.0, -1.0, 5.0], [False, True, True, True, False], [None, "kill", "kill", "him", None])
    a2 = _attr([0.5, -0.5, 3.0], [True, True, True], ["please", None, "murder"])
    a3 = _attr([4.0, 2.0], [True, True], ["hello", "there"])
    s = at.attribution_summary([a1, a2, a3], {"kill", "MURDER"})
    assert s["n_prompts"] == 3 and s["n_prompts_with_trigger"] == 2 and s["n_prompts_without_trigger"] == 1
    assert (s["n_tokens"], s["n_trigger_tokens"], s["n_other_tokens"], s["n_no_trigger_prompt_tokens"]) == (8, 3, 3, 2)
    assert s["mean_trigger"] == pytest.approx((2 + 1 + 3) / 3)
    assert s["mean_other"] == pytest.approx((-1 + 0.5 - 0.5) / 3)
    assert s["diff"] == pytest.approx(2 + 1 / 3)
    assert s["mean_paired_diff"] == pytest.approx(((1.5 - -1) + (3 - 0)) / 2)
    assert s["abs_share_trigger"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert s["token_share_trigger"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert s["mean_no_trigger_prompts"] == pytest.approx(3.0)
    empty = at.attribution_summary([], {"kill"})
    assert empty["n_prompts"] == 0 and empty["mean_trigger"] is None and empty["diff"] is None
