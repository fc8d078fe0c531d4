"""SCANS steering and Surgical ablation on tiny Llama- and Qwen2-style checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from overrefusal import interventions
from overrefusal.interventions.activations import (
    decoder_layers,
    directional_ablation,
    encode_all,
    hidden_of,
    instruction_suffix,
    last_logits,
)
from overrefusal.interventions.scans import (
    ScansConfig,
    ScansSteering,
    ScansVectors,
    default_steer_layers,
    fit_scans,
)
from overrefusal.interventions.surgical import (
    SelectionError,
    SurgicalConfig,
    fit_surgical,
)
from overrefusal.tracking import refusal_logodds
from tests.support.tiny_models import save_tiny_checkpoint

WORDS = ["how", "do", "i", "kill", "a", "python", "process", "what", "is", "the", "capital", "of", "france", "here", "is", "how", "to", "do", "it", "first", "open"]


def _prompts(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (3 + k % 4,), generator=g)) for k in range(n)]


POOLS = {"harmful": _prompts(40, 1), "harmless": _prompts(40, 2), "pseudo_harmful": _prompts(40, 3)}


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    path = save_tiny_checkpoint(tmp_path_factory.mktemp(request.param) / "m", request.param, num_layers=4)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok


def _refusal_ids(tok) -> list[int]:
    return [int(i) for i in tok("i'm sorry", add_special_tokens=False)["input_ids"][:1]]


def _small_surgical(**kw) -> SurgicalConfig:
    return SurgicalConfig(**{"n_train": 16, "n_val": 8, "filter": False, "min_prompts": 4, "kl_threshold": 10.0,
                             "positions": 2, "batch_size": 8, **kw})


def test_instruction_suffix_is_the_template_tail(tiny: tuple) -> None:
    _, tok = tiny
    suffix = tok.decode(instruction_suffix(tok, "chat"))
    assert suffix.endswith(("assistant\n", "assistant<|end_header_id|>\n\n"))
    assert "alpha" not in suffix and "beta" not in suffix


def test_ablation_removes_the_direction_at_every_hooked_site(tiny: tuple) -> None:
    model, tok = tiny
    d = model.config.hidden_size
    direction = torch.randn(d, generator=torch.Generator().manual_seed(0))
    unit = direction / direction.norm()
    seen: list[tuple[str, torch.Tensor]] = []
    with directional_ablation(model, direction):
        # observers registered after the ablation hooks see what the model then computes with
        handles = []
        for i, block in enumerate(decoder_layers(model)):
            handles.append(block.register_forward_pre_hook(
                lambda m, a, kw, i=i: seen.append((f"in{i}", (a[0] if a else kw["hidden_states"]).detach())),
                with_kwargs=True))
            handles.append(block.self_attn.register_forward_hook(
                lambda m, a, o, i=i: seen.append((f"attn{i}", hidden_of(o).detach()))))
            handles.append(block.mlp.register_forward_hook(lambda m, a, o, i=i: seen.append((f"mlp{i}", o.detach()))))
        seqs = encode_all(tok, POOLS["harmless"][:4], "chat", 64)
        last_logits(model, seqs, pad_id=tok.pad_token_id or 0, batch_size=4)
        for h in handles:
            h.remove()
    assert len(seen) == 3 * len(decoder_layers(model))
    for site, x in seen:
        proj = (x @ unit).abs().max()
        assert proj < 1e-5 * x.norm(dim=-1).max(), (site, float(proj))


def test_hooks_are_removed_after_use(tiny: tuple, tmp_path: Path) -> None:
    model, tok = tiny
    seqs = encode_all(tok, POOLS["harmful"][:6], "chat", 64)
    before = last_logits(model, seqs, pad_id=0, batch_size=6)
    tensors, _report = fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(), template="chat")
    interventions.save(tmp_path / "s.safetensors", "surgical", tensors, {"ablation_coeff": 1.0})
    with interventions.attached(model, tmp_path / "s.safetensors"):
        during = last_logits(model, seqs, pad_id=0, batch_size=6)
    vectors, _ = fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], ScansConfig(n_anchors=16), template="chat")
    interventions.save(tmp_path / "v.safetensors", "scans", vectors.tensors(), vectors.settings)
    with interventions.attached(model, tmp_path / "v.safetensors"):
        steered = last_logits(model, seqs, pad_id=0, batch_size=6)
    after = last_logits(model, seqs, pad_id=0, batch_size=6)
    assert not torch.equal(before, during) and not torch.equal(before, steered)
    assert torch.equal(before, after)
    assert not any(b._forward_hooks or b._forward_pre_hooks for b in decoder_layers(model))
    assert not model._forward_pre_hooks


def test_orthogonalised_vector_is_orthogonal_to_the_refusal_vector(tiny: tuple) -> None:
    model, tok = tiny
    tensors, _report = fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(), template="chat")
    d, h = tensors["direction"].double(), tensors["harm_direction"].double()
    assert abs(float(d.norm()) - 1) < 1e-6 and abs(float(d @ h)) < 1e-6
    # lambda 0 keeps the harmful component: the same selection is then not orthogonal
    cfg0 = _small_surgical(ortho_lambda=0.0, prune_layer_fraction=0.0)
    t0, _r0 = fit_surgical(model, tok, POOLS, _refusal_ids(tok), cfg0, template="chat")
    assert abs(float(t0["direction"].double() @ t0["harm_direction"].double())) > 1e-3


def test_selection_is_deterministic_and_records_every_candidate(tiny: tuple) -> None:
    model, tok = tiny
    runs = [fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(), template="chat") for _ in range(2)]
    assert json.dumps(runs[0][1], sort_keys=True) == json.dumps(runs[1][1], sort_keys=True)
    assert torch.equal(runs[0][0]["direction"], runs[1][0]["direction"])
    report = runs[0][1]
    depth, k = report["depth"], report["positions_searched"]
    assert len(report["candidates"]) == depth * k
    pruned = [c for c in report["candidates"] if c.get("discarded") == "pruned"]
    assert {c["layer"] for c in pruned} == set(range(int(depth * 0.8), depth))
    scored = [c for c in report["candidates"] if "discarded" not in c]
    assert report["selected"]["refusal_score"] == min(c["refusal_score"] for c in scored)
    other_seed = fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(seed=5), template="chat")
    assert other_seed[1]["pools"] == report["pools"] or not torch.equal(other_seed[0]["direction"],
                                                                         runs[0][0]["direction"])


def test_selection_that_discards_every_candidate_says_why(tiny: tuple) -> None:
    model, tok = tiny
    with pytest.raises(SelectionError, match=r"every one of the \d+ candidate directions was discarded \(.*kl: \d+") \
            as exc:
        fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(kl_threshold=0.0), template="chat")
    assert exc.value.report["selected"] is None and all("discarded" in c for c in exc.value.report["candidates"])


def test_too_few_prompts_give_the_counts(tiny: tuple) -> None:
    model, tok = tiny
    with pytest.raises(ValueError, match=r"pool 'pseudo_harmful' holds 0 prompts; n_train 16 \+ n_val 8 = 24"):
        fit_surgical(model, tok, {**POOLS, "pseudo_harmful": []}, _refusal_ids(tok), _small_surgical(),
                     template="chat")
    with pytest.raises(SelectionError, match=r"too few prompts left after filtering .*kept \d+ of (16|8)"):
        fit_surgical(model, tok, POOLS, _refusal_ids(tok), _small_surgical(filter=True, min_prompts=17),
                     template="chat")
    with pytest.raises(ValueError, match="SCANS needs 64 harmful anchors but the pool holds 40 prompts"):
        fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], ScansConfig(), template="chat")
    with pytest.raises(ValueError, match=r"scans.steer_layers \[2, 9\) is outside the model's 4 blocks"):
        fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], ScansConfig(n_anchors=8, steer_layers=(2, 9)),
                  template="chat")


def _forced(vectors: ScansVectors, threshold: float, alpha: float) -> ScansVectors:
    return ScansVectors(vectors.steer, vectors.transition, {**vectors.settings, "threshold": threshold, "alpha": alpha})


def test_steering_shifts_the_refusal_score_in_the_expected_direction(tiny: tuple) -> None:
    """Refusal tokens are chosen, by construction, as those the last block's steering vector
    promotes through the final norm and the head; steering 'unsafe' (+alpha v) must then raise
    their log-odds and steering 'safe' (-alpha v) lower them."""
    model, tok = tiny
    depth = len(decoder_layers(model))
    cfg = ScansConfig(n_anchors=16, steer_layers=(depth - 1, depth))
    vectors, _ = fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], cfg, template="chat")
    promoted = model.lm_head.weight @ (model.model.norm.weight * vectors.steer[depth - 1])
    refusal = torch.topk(promoted, 5).indices.tolist()
    seqs = encode_all(tok, POOLS["pseudo_harmful"][:8], "chat", 64)
    base = refusal_logodds(last_logits(model, seqs, pad_id=0, batch_size=8), refusal)
    shifted = {}
    for name, threshold in (("unsafe", -2.0), ("safe", 2.0)):  # cosine is always >= -2 and < 2
        with ScansSteering(model, _forced(vectors, threshold, alpha=4.0)).attached() as steering:
            shifted[name] = refusal_logodds(last_logits(model, seqs, pad_id=0, batch_size=8), refusal)
            assert steering.last_scores is not None and steering.last_scores.shape == (8,)
    assert bool((shifted["unsafe"] > base).all()) and bool((shifted["safe"] < base).all())


def test_steering_covers_post_instruction_and_generated_positions(tiny: tuple) -> None:
    model, tok = tiny
    vectors, _ = fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], ScansConfig(n_anchors=8), template="chat")
    steering = ScansSteering(model, vectors)
    seqs = encode_all(tok, ["how do i kill a python process", "france"], "chat", 64)
    suffix = len(instruction_suffix(tok, "chat"))
    width = max(map(len, seqs))
    ids = torch.tensor([[0] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    starts, ends = steering._starts(ids, mask)
    assert starts == [width - suffix] * 2 and ends == [width] * 2
    # no post-instruction tokens in the row (e.g. an lm-eval continuation with none): the last token
    assert steering._starts(torch.tensor([[5, 6, 7]]), None) == ([2], [3])
    # alpha 0 steers by nothing: greedy generations equal the unsteered model's
    with ScansSteering(model, _forced(vectors, 0.75, 0.0)).attached():
        zero = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                              pad_token_id=0)
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(zero, plain)
    with ScansSteering(model, _forced(vectors, -2.0, 50.0)).attached():
        strong = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                pad_token_id=0)
    assert torch.equal(strong[:, :width], plain[:, :width]) and not torch.equal(strong, plain)


def test_default_layer_ranges_scale_the_papers_to_the_depth() -> None:
    assert default_steer_layers(32) == (10, 20)
    assert ScansConfig().layer_ranges(32) == ((10, 20), (10, 32))
    assert ScansConfig().layer_ranges(4) == ((1, 2), (1, 4))
    assert ScansConfig().layer_ranges(30) == ((9, 18), (9, 30))


def test_saved_intervention_round_trips_and_rejects_other_files(tmp_path: Path) -> None:
    t = {"direction": torch.arange(4.0)}
    interventions.save(tmp_path / "x.safetensors", "surgical", t, {"ablation_coeff": 1.0})
    kind, tensors, settings = interventions.load(tmp_path / "x.safetensors")
    assert kind == "surgical" and torch.equal(tensors["direction"], t["direction"]) and settings["ablation_coeff"] == 1
    from safetensors.torch import save_file

    save_file(t, str(tmp_path / "y.safetensors"))
    with pytest.raises(ValueError, match="not an intervention file"):
        interventions.load(tmp_path / "y.safetensors")


def test_threshold_null_is_the_midpoint_of_the_anchor_sets(tiny: tuple) -> None:
    model, tok = tiny
    vectors, report = fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"],
                                ScansConfig(n_anchors=16, threshold=None), template="chat")
    c = report["classified_unsafe"]
    mid = (c["harmful_anchors"]["mean_cosine"] + c["harmless_anchors"]["mean_cosine"]) / 2
    assert vectors.settings["threshold"] == pytest.approx(mid) and vectors.settings["threshold_rule"] == "anchor_midpoint"
    fixed, _ = fit_scans(model, tok, POOLS["harmful"], POOLS["harmless"], ScansConfig(n_anchors=16), template="chat")
    assert fixed.settings["threshold"] == 0.75 and fixed.settings["threshold_rule"] == "config"


def test_intervention_table_reads_both_kinds_and_refuses_others(tmp_path: Path) -> None:
    from overrefusal.io import DataError, write_json
    from overrefusal.report.tables import intervention_table, to_markdown

    root = tmp_path / "results/toy/m"
    scans = {"kind": "scans", "settings": {"threshold": 0.9, "threshold_rule": "anchor_midpoint"},
             "classified_unsafe": {"harmful_anchors": {"share_unsafe": 1.0}, "harmless_anchors": {"share_unsafe": 0.1},
                                   "pseudo_harmful": {"share_unsafe": 0.8}}}
    surgical = {"kind": "surgical", "baseline_refusal_score": 2.0,
                "selected": {"layer": 1, "position": -1, "refusal_score": 1.5, "kl": 0.1},
                "candidates": [{"layer": 0, "position": -1, "discarded": "degenerate"},
                               {"layer": 1, "position": -1, "cosine_with_harm": 0.9, "refusal_score": 1.5, "kl": 0.1}]}
    write_json(root / "scans/seed2/intervention/report.json", scans)
    write_json(root / "surgical/seed2/intervention/report.json", surgical)
    df = intervention_table(sorted(root.glob("*/seed2/intervention/report.json")))
    assert list(df["method"]) == ["surgical", "scans"] and list(df["seed"]) == [2, 2]
    assert df.loc[0, "candidates_kept"] == 1 and df.loc[0, "cos_or_harm"] == 0.9
    assert df.loc[1, "unsafe_seemingly_toxic"] == 0.8
    assert "| m | surgical | 2 | surgical | – |" in to_markdown(df)
    write_json(root / "x/seed0/intervention/report.json", {"kind": "rome"})
    with pytest.raises(DataError, match="field 'kind': unknown intervention 'rome'"):
        intervention_table([root / "x/seed0/intervention/report.json"])


def test_saved_intervention_bytes_are_the_same_every_time(tmp_path: Path) -> None:
    """Generation's resume fingerprint hashes the file: identical inputs must give identical bytes."""
    from overrefusal.io import sha256_file

    t = {"steer": torch.ones(2, 3), "transition": torch.zeros(2, 3)}
    settings = {"alpha": 3.5, "threshold": 0.9, "steer_layers": [0, 1], "suffix_ids": [1, 2], "depth": 2}
    hashes = set()
    for i in range(6):
        interventions.save(tmp_path / f"{i}.safetensors", "scans", t, settings)
        hashes.add(sha256_file(tmp_path / f"{i}.safetensors"))
    assert len(hashes) == 1
