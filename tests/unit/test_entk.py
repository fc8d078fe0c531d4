"""Empirical NTK (DCR's kernel analysis): estimators against an autograd reference, Hutchinson's error,
normalisation and class blocks, parameter subsets (LoRA, tied embeddings), and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from overrefusal.analysis import entk
from overrefusal.analysis.entk import (
    EntkConfig,
    block_means,
    entk_report,
    kernel_estimate,
    kernel_fro,
    normalise,
    select_params,
)
from overrefusal.interventions.activations import pad_id_of
from overrefusal.prompting import encode_prompt
from tests.support.tiny_models import save_tiny_checkpoint

torch.set_num_threads(1)
VOCAB = 64


def tiny(kind: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.nn.Module:
    common = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64, "vocab_size": VOCAB, "pad_token_id": 0}
    torch.manual_seed(seed)
    model = (Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True)) if kind == "qwen2"
             else LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False)))
    return model.to(dtype).eval()


def prompts(lengths: tuple[int, ...] = (5, 9, 3, 7), seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture(scope="module")
def llama64() -> torch.nn.Module:
    return tiny("llama")


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def reference(model: torch.nn.Module, seqs: list[list[int]], mode: str, top_k: int | None) -> np.ndarray:
    """Independent ground truth: autograd.grad on the model's own parameters, one logit at a time."""
    params = list(select_params(model, mode, 2).values())
    jacs = []
    for s in seqs:
        z = model(input_ids=torch.tensor([s]), use_cache=False).logits[0, -1]
        toks = range(VOCAB) if top_k is None else z.topk(top_k).indices.tolist()
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(z[t], params, retain_graph=True)])
                for t in toks]
        jacs.append(torch.stack(rows).double())
    return np.array([[torch.linalg.matrix_norm(a @ b.T).item() for b in jacs] for a in jacs])


# ---------------------------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_exact_matches_autograd_reference(kind: str) -> None:
    # Qwen2 ties lm_head to the embedding: the reference differentiates the one shared tensor through
    # both uses, which functional_call must reproduce.
    model = tiny(kind)
    seqs = prompts((4, 6, 3))
    ref = reference(model, seqs, "last_n+head", top_k=5)
    got = kernel_fro(model, seqs, EntkConfig(top_k=5, estimator="exact"))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("top_k", [10, None], ids=["top10", "full_vocab"])
def test_fd_and_jvp_agree_with_exact(llama64: torch.nn.Module, top_k: int | None) -> None:
    seqs = prompts()
    exact = kernel_fro(llama64, seqs, EntkConfig(top_k=top_k, estimator="exact"))
    jvp = kernel_fro(llama64, seqs, EntkConfig(top_k=top_k, estimator="jvp", batch_size=3))
    assert rel_err(jvp, exact) < 1e-7  # float64; the padded row batches differ from the lone prompts by rounding
    # Forward differences err by O(eps): DCR's eps = 1e-3 is within 1e-2, and the error is truncation
    # (shrinks ~10x with eps), not rounding.
    err = {eps: rel_err(kernel_fro(llama64, seqs, EntkConfig(top_k=top_k, estimator="fd", eps=eps)), exact)
           for eps in (1e-3, 1e-4)}
    assert err[1e-3] < 1e-2
    assert err[1e-4] < 1e-3
    assert err[1e-3] / err[1e-4] > 5
    # Central differences err by O(eps^2): a tenth of the step cuts the error ~100x (80x measured).
    central = {eps: rel_err(kernel_fro(llama64, seqs, EntkConfig(top_k=top_k, estimator="fd", eps=eps,
                                                                 fd_scheme="central")), exact)
               for eps in (1e-3, 1e-4)}
    assert central[1e-3] / central[1e-4] > 30
    assert central[1e-4] < err[1e-4] / 10


def test_fd_vs_jvp_in_fp32() -> None:
    model = tiny("llama", torch.float32)
    seqs = prompts()
    jvp = kernel_fro(model, seqs, EntkConfig(estimator="jvp"))
    assert rel_err(kernel_fro(model, seqs, EntkConfig(estimator="fd", eps=1e-4)), jvp) < 1e-3
    assert rel_err(kernel_fro(model, seqs, EntkConfig(estimator="fd")), jvp) < 1e-2
    assert rel_err(kernel_fro(model, seqs, EntkConfig(estimator="fd", eps=1e-4, fd_scheme="central")), jvp) < 1e-4


def test_hutchinson_within_five_percent() -> None:
    # Margin: with 32 probes the relative s.e. of one entry is ~5% here, so single entries may miss
    # by 10%; the whole matrix (relative Frobenius error) stays under 5% (observed <= 3% over these
    # seeds) and every entry within 5 of its own reported standard errors (observed <= 3.3).
    model = tiny("llama", torch.float32)
    seqs = prompts()
    cfg = EntkConfig(top_k=None, estimator="hutchinson", probes=32)
    exact = kernel_fro(model, seqs, EntkConfig(top_k=None, estimator="exact"))
    runs = []
    for seed in range(5):
        res = kernel_estimate(model, seqs, EntkConfig(**{**cfg.__dict__, "seed": seed}))
        est, rel = res.fro, res.rel_se
        assert rel is not None
        assert np.linalg.norm(est - exact) / np.linalg.norm(exact) < 0.05
        assert np.all(np.abs(est / exact - 1) <= 5 * rel)
        runs.append(est)
    assert not np.array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(kernel_fro(model, seqs, cfg), runs[0])  # seeded: deterministic


def test_symmetric_on_full_vocabulary(llama64: torch.nn.Module) -> None:
    seqs = prompts((5, 8, 2))
    for estimator in ("exact", "jvp"):
        k = kernel_fro(llama64, seqs, EntkConfig(top_k=None, estimator=estimator))
        np.testing.assert_allclose(k, k.T, rtol=1e-7)
    # With top-k the blocks are J_o[T_o] J_u[T_u]^T: K(x, y) = K(y, x)^T still, so norms match too.
    k = kernel_fro(llama64, seqs, EntkConfig(top_k=10, estimator="exact"))
    np.testing.assert_allclose(k, k.T, rtol=1e-10)


def test_auto_runs_exact_within_its_memory_bound_else_jvp(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("llama", torch.float32)
    seqs = prompts()
    auto = kernel_estimate(model, seqs, EntkConfig(estimator="auto"))
    assert auto.estimator == "exact"
    np.testing.assert_array_equal(auto.fro, kernel_fro(model, seqs, EntkConfig(estimator="exact")))
    assert rel_err(auto.fro, kernel_fro(model, seqs, EntkConfig(estimator="jvp"))) < 1e-5
    # The tiny Jacobian (4 prompts x top-10 x selected parameters, fp32) exactly at the bound: in one piece.
    n_bytes = len(seqs) * 10 * auto.n_params * 4
    monkeypatch.setattr(entk, "EXACT_AUTO_BYTES", n_bytes)
    assert kernel_estimate(model, seqs, EntkConfig(estimator="auto")).estimator == "exact"
    # Past the bound: exact in groups while there are at most n (= 4) of them, then jvp.
    monkeypatch.setattr(entk, "EXACT_AUTO_BYTES", n_bytes // 3)
    grouped = kernel_estimate(model, seqs, EntkConfig(estimator="auto"))
    assert grouped.estimator == "exact"
    np.testing.assert_allclose(grouped.fro, auto.fro, rtol=1e-6)
    monkeypatch.setattr(entk, "EXACT_AUTO_BYTES", n_bytes // 6)
    fallback = kernel_estimate(model, seqs, EntkConfig(estimator="auto"))
    assert fallback.estimator == "jvp"
    np.testing.assert_array_equal(fallback.fro, kernel_fro(model, seqs, EntkConfig(estimator="jvp")))
    # The full vocabulary multiplies the rows by V / top_k.
    monkeypatch.setattr(entk, "EXACT_AUTO_BYTES", n_bytes)
    assert kernel_estimate(model, seqs, EntkConfig(estimator="auto", top_k=None)).estimator == "jvp"


@pytest.mark.parametrize(("kind", "mode"), [("llama", "all"), ("qwen2", "last_n+head")])
def test_exact_in_groups_keeps_only_embedding_rows_in_use(kind: str, mode: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its memory bound the exact Jacobian is built in parameter groups, the embedding matrices (tied
    in qwen2, input and output in llama's "all") cut to the rows of the prompts' tokens and token sets; the
    kernel is the same as in one piece and as the autograd reference."""
    model, seqs = tiny(kind), prompts()
    cfg = EntkConfig(params=mode, top_k=5, estimator="exact")
    whole = kernel_fro(model, seqs, cfg)
    pb = entk._Problem(model, seqs, cfg, 0)
    kept = pb.compressed_rows()
    # Both matrices of "all" on the untied llama; the output one of last_n+head; qwen2's tied one once.
    assert len(kept) == (2 if (kind, mode) == ("llama", "all") else 1)
    used = {t for s in seqs for t in s} | set(pb.tokens.flatten().tolist())
    assert all(rows.tolist() == sorted(used) and len(used) < VOCAB for rows in kept.values())
    for budget in (pb.exact_bytes() // 5, pb.exact_bytes() // 60):
        monkeypatch.setattr(entk, "EXACT_AUTO_BYTES", budget)
        groups = pb.pieces(budget)
        assert len(groups) >= 5
        # groups are filled greedily, so dense parameters are cut by rows across group boundaries
        assert any(r is not None and n not in kept for g in groups for n, r in g)
        sizes = [sum((pb.params[n][0].numel() if pb.params[n].dim() else 1)
                     * (pb.params[n].shape[0] if r is None else r.numel()) for n, r in g) for g in groups]
        # every group fits, but for one that holds a single row wider than the bound
        assert all(size * pb.row_bytes() <= budget or len(g) == 1 for size, g in zip(sizes, groups, strict=True))
        grouped = kernel_fro(model, seqs, cfg)
        assert rel_err(grouped, whole) < 1e-12
        assert rel_err(grouped, reference(model, seqs, mode, 5)) < 1e-12


def test_exact_in_groups_refuses_a_gradient_outside_the_kept_rows() -> None:
    grad = torch.zeros(2, 6, 3)
    entk._check_rows("w", grad, torch.tensor([1, 4]))
    grad[1, 4, 2] = 1.0
    entk._check_rows("w", grad, torch.tensor([1, 4]))
    grad[0, 5, 0] = 1e-30
    with pytest.raises(RuntimeError, match=r"w is non-zero in rows \[5\]"):
        entk._check_rows("w", grad, torch.tensor([1, 4]))


def test_model_left_unchanged() -> None:
    model = tiny("llama", torch.float32).train()
    model.model.layers[0].eval()  # a mixed state must come back as it was
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for estimator in ("exact", "fd", "jvp", "hutchinson"):
        kernel_fro(model, prompts((3, 5)), EntkConfig(estimator=estimator, top_k=4, probes=2))
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None and p.requires_grad
    assert model.training and model.model.layers[1].training and not model.model.layers[0].training


# ---------------------------------------------------------------------------------------------
# Parameter subsets
# ---------------------------------------------------------------------------------------------


def test_subsets_llama_and_tied_qwen2() -> None:
    llama, qwen = tiny("llama"), tiny("qwen2")
    names = list(select_params(llama, "last_n+head", 1))
    assert names[-2:] == ["model.norm.weight", "lm_head.weight"]
    assert all(n.startswith("model.layers.1.") for n in names[:-2])
    assert len(select_params(llama, "last_n+head", 2)) == 2 * len(names[:-2]) + 2
    # Tied: the output embedding is the input embedding's tensor, selected once under its first name.
    qnames = list(select_params(qwen, "last_n+head", 1))
    assert "model.embed_tokens.weight" in qnames and "lm_head.weight" not in qnames
    assert len(qnames) == len(set(qnames))
    assert len(select_params(qwen, "all", 2)) == len(list(qwen.parameters()))


def test_lora_subset_selects_only_lora() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    names = list(select_params(model, "lora", 2))
    assert len(names) == 2 * 2 * 2 and all("lora_" in n for n in names)  # layers x modules x (A, B)
    # last_n+head finds the blocks through the PEFT wrapper; LoRA weights in them come along.
    assert any("lora_" in n for n in select_params(model, "last_n+head", 1))
    seqs = prompts((4, 6))
    exact = kernel_fro(model, seqs, EntkConfig(params="lora", top_k=8, estimator="exact"))
    jvp = kernel_fro(model, seqs, EntkConfig(params="lora", top_k=8, estimator="jvp"))
    assert np.all(exact > 0)
    np.testing.assert_allclose(jvp, exact, rtol=1e-7)


def test_subset_errors(llama64: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="'lora' selects no parameters"):
        select_params(llama64, "lora", 2)
    with pytest.raises(ValueError, match="last_n must be between 1 and the model's 2"):
        select_params(llama64, "last_n+head", 3)
    with pytest.raises(ValueError, match="unknown parameter mode"):
        select_params(llama64, "lastN+head", 2)
    with pytest.raises(ValueError, match="lora"):
        kernel_fro(llama64, prompts((3, 4)), EntkConfig(params="lora"))
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        kernel_fro(llama64, prompts((3, 4)), EntkConfig(top_k=VOCAB + 1))
    with pytest.raises(ValueError, match="fp32"):
        kernel_fro(tiny("llama", torch.bfloat16), prompts((3, 4)), EntkConfig(estimator="fd"))


@pytest.mark.parametrize("bad", [
    {"params": "lora-only"}, {"estimator": "jacrev"}, {"last_n": 0}, {"top_k": 0}, {"top_k": 2.5},
    {"eps": 0.0}, {"eps": float("nan")}, {"probes": 0}, {"max_length": 0}, {"batch_size": -1}, {"last_n": True},
    {"fd_scheme": "backward"},
])
def test_config_rejects_bad_values(bad: dict) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=f"EntkConfig.{field}"):
        EntkConfig(**bad)


def test_config_rejects_non_integer_seed() -> None:
    with pytest.raises(TypeError, match="seed"):
        EntkConfig(seed=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Normalisation and class blocks
# ---------------------------------------------------------------------------------------------


def test_normalise_and_block_means_by_hand() -> None:
    k = np.array([[2.0, 1.0, 4.0, 2.0],
                  [3.0, 3.0, 6.0, 0.0],
                  [1.0, 2.0, 4.0, 2.0],
                  [5.0, 0.0, 5.0, 5.0]])
    kn = normalise(k)
    expected = np.array([[1.0, 0.5, 2.0, 1.0],
                         [1.0, 1.0, 2.0, 0.0],
                         [0.25, 0.5, 1.0, 0.5],
                         [1.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(kn, expected)
    means = block_means(kn, ["a", "b", "a", "b"], ["a", "b"])
    # a = rows/cols {0, 2}, b = {1, 3}; within-class blocks skip the (unit) diagonal.
    assert means == {"a": {"a": (2.0 + 0.25) / 2, "b": (0.5 + 1.0 + 0.5 + 0.5) / 4},
                     "b": {"a": (1.0 + 2.0 + 1.0 + 1.0) / 4, "b": (0.0 + 0.0) / 2}}


def test_normalise_and_block_means_errors() -> None:
    with pytest.raises(ValueError, match=r"zero or non-finite diagonal at rows \[1\]"):
        normalise(np.array([[1.0, 2.0], [3.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        normalise(np.ones((2, 3)))
    with pytest.raises(ValueError, match="at least 2 prompts.*'b': 1"):
        block_means(np.ones((3, 3)), ["a", "a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="not among the classes"):
        block_means(np.ones((2, 2)), ["a", "c"], ["a"])


# ---------------------------------------------------------------------------------------------
# Report on the paper architectures' tiny checkpoints
# ---------------------------------------------------------------------------------------------

SETS = {
    "seemingly_toxic": ["how do i kill a python process", "how do i kill the lights"],
    "toxic": ["how do i kill my neighbour", "how to poison a dog"],
    "general": ["what is the capital of france?", "think about safety before you answer."],
}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_entk_report(kind: str, tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / kind, kind, num_layers=2)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    cfg = EntkConfig(max_length=12)
    rep = entk_report(model, tok, "chat", SETS, cfg)
    json.dumps(rep)
    assert rep["classes"] == list(SETS) and rep["n"] == {c: 2 for c in SETS}
    assert rep["labels"] == [c for c in SETS for _ in range(2)]
    kn = np.array(rep["normalised"])
    np.testing.assert_allclose(np.diag(kn), 1.0)
    assert set(rep["block_means"]) == set(SETS) and rep["config"] == {**cfg.__dict__, "estimator_requested": "fd"}
    assert rep["n_params"] == sum(p.numel() for p in select_params(model, "last_n+head", 2).values())
    assert rep["param_names"]["count"] == len(select_params(model, "last_n+head", 2))
    assert rep["hutchinson_rel_se"] is None
    # Prompts keep their LAST max_length tokens (the answer position).
    seqs = [encode_prompt(tok, t, "chat")[-12:] for c in SETS for t in SETS[c]]
    assert max(len(encode_prompt(tok, t, "chat")) for c in SETS for t in SETS[c]) > 12
    np.testing.assert_array_equal(np.array(rep["kernel_fro"]), kernel_fro(model, seqs, cfg, pad_id=pad_id_of(tok)))
    again = entk_report(model, tok, "chat", SETS, cfg)
    assert again["kernel_fro"] == rep["kernel_fro"]
    with pytest.raises(ValueError, match="at least 2 prompts"):
        entk_report(model, tok, "chat", {"a": ["x", "y"], "b": ["z"]}, cfg)
