"""Separability metrics on data with known answers, and per-layer activations and the report on tiny
Llama- and Qwen2-style checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from overrefusal.analysis.separability import (
    fisher_ratio,
    layer_activations,
    pca_2d,
    probe_accuracy,
    separability_report,
    silhouette,
)
from overrefusal.prompting import encode_prompt
from tests.support.tiny_models import save_tiny_checkpoint


def _gaussians(n: int, d: int, dist: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two identity-covariance Gaussians, means ``dist`` apart along the first axis."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2 * n, d))
    x[n:, 0] += dist
    return x, np.r_[np.zeros(n), np.ones(n)]


def _direct_fisher(x: np.ndarray, y: np.ndarray, a: float) -> float:
    m0, m1 = x[y == 0].mean(0), x[y == 1].mean(0)
    z = x - np.where(y[:, None] == 1, m1, m0)
    s = z.T @ z / len(x)
    s = (1 - a) * s + a * np.trace(s) / x.shape[1] * np.eye(x.shape[1])
    return float((m1 - m0) @ np.linalg.solve(s, m1 - m0))


# ------------------------------------------------------------------ metrics, known answers

def test_separated_gaussians_match_theory() -> None:
    dist = 2.0
    x, y = _gaussians(1000, 4, dist)
    # Fisher's J is the squared Mahalanobis distance: dist^2; the Bayes accuracy is Phi(dist / 2)
    assert fisher_ratio(x, y) == pytest.approx(dist ** 2, rel=0.08)
    assert fisher_ratio(x, y, shrinkage=0.0) == pytest.approx(dist ** 2, rel=0.08)
    bayes = 0.5 * (1 + math.erf(dist / 2 / math.sqrt(2)))
    probe = probe_accuracy(x, y, folds=5, seed=0)
    assert probe["mean"] == pytest.approx(bayes, abs=0.03)
    assert len(probe["per_fold"]) == probe["folds"] == 5 and not probe["folds_reduced"]
    assert silhouette(x, y, "euclidean") > 0.05
    assert silhouette(x + 3.0, y, "cosine") > 0.05


def test_identical_distributions_are_not_separable() -> None:
    x, y = _gaussians(1000, 4, 0.0, seed=1)
    assert probe_accuracy(x, y)["mean"] == pytest.approx(0.5, abs=0.05)
    assert fisher_ratio(x, y) < 0.05
    assert abs(silhouette(x, y, "euclidean")) < 0.05


def test_perfectly_separable_gives_full_accuracy() -> None:
    x, y = _gaussians(30, 6, 20.0, seed=2)
    probe = probe_accuracy(x, y, folds=5, seed=3)
    assert probe["mean"] == 1.0 and probe["per_fold"] == [1.0] * 5 and probe["std"] == 0.0
    assert silhouette(x, y, "euclidean") > 0.5


def test_fisher_in_high_dimension_matches_direct_formula_and_is_scale_free() -> None:
    x, y = _gaussians(15, 60, 1.0, seed=4)  # d > n: S_w is singular
    assert fisher_ratio(x, y, shrinkage=0.5) == pytest.approx(_direct_fisher(x, y, 0.5), rel=1e-8)
    assert fisher_ratio(x, y, shrinkage=0.0) == math.inf
    lw = fisher_ratio(x, y, details=True)
    assert 0.0 < lw["shrinkage"] <= 1.0 and math.isfinite(lw["fisher_ratio"])
    assert fisher_ratio(7.0 * x, y) == pytest.approx(lw["fisher_ratio"], rel=1e-8)
    # labels are any two values; which one is "positive" does not matter
    assert fisher_ratio(x, np.where(y == 1, "a", "b")) == pytest.approx(lw["fisher_ratio"], rel=1e-10)


def test_probe_is_deterministic_and_reduces_folds_for_a_small_class() -> None:
    x, y = _gaussians(20, 3, 1.0, seed=5)
    assert probe_accuracy(x, y, seed=7) == probe_accuracy(x, y, seed=7)
    keep = np.r_[np.arange(20), np.arange(20, 23)]  # 3 positives
    small = probe_accuracy(x[keep], y[keep], folds=5)
    assert small["folds"] == 3 and small["folds_reduced"] and "3" in small["note"]


def test_pca_of_a_line_and_its_sign_convention() -> None:
    rng = np.random.default_rng(6)
    x = np.outer(np.linspace(-1, 1, 40), rng.standard_normal(8)) + 1e-6 * rng.standard_normal((40, 8))
    coords, ratio = pca_2d(x)
    assert coords.shape == (40, 2) and ratio.shape == (2,)
    assert ratio[0] == pytest.approx(1.0, abs=1e-6)
    perm = rng.permutation(40)
    assert np.allclose(pca_2d(x[perm])[0], coords[perm], atol=1e-8)


@pytest.mark.parametrize("fn", [probe_accuracy, silhouette, fisher_ratio])
@pytest.mark.parametrize("case,match", [
    ("one_class", "exactly two classes"),
    ("three_classes", "exactly two classes"),
    ("mismatch", "labels"),
    ("nan", "non-finite"),
    ("one_dim", "2-D"),
])
def test_bad_inputs_raise(fn, case: str, match: str) -> None:
    x, y = _gaussians(5, 3, 1.0)
    if case == "one_class":
        y = np.zeros(10)
    elif case == "three_classes":
        y = np.r_[np.zeros(4), np.ones(3), 2 * np.ones(3)]
    elif case == "mismatch":
        y = y[:-1]
    elif case == "nan":
        x[2, 1] = np.nan
    elif case == "one_dim":
        x = x[:, 0]
    with pytest.raises(ValueError, match=match):
        fn(x, y)


def test_other_bad_arguments_raise() -> None:
    x, y = _gaussians(5, 3, 1.0)
    with pytest.raises(ValueError, match="at least 2 examples"):
        probe_accuracy(x[:6], y[:6])  # one positive
    with pytest.raises(ValueError, match="metric"):
        silhouette(x, y, "manhattan")
    with pytest.raises(ValueError, match="shrinkage"):
        fisher_ratio(x, y, shrinkage=1.5)
    with pytest.raises(ValueError, match="non-finite"):
        pca_2d(np.full((4, 3), np.nan))


# ------------------------------------------------------------------ activations on tiny checkpoints

WORDS = ["how", "do", "i", "kill", "a", "python", "process", "what", "is", "the", "capital", "of", "france",
         "here", "open"]


def _prefix(k: int, g: torch.Generator) -> str:
    return " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (2 + k % 3,), generator=g))


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    path: Path = save_tiny_checkpoint(tmp_path_factory.mktemp(request.param) / "m", request.param, num_layers=2)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok


def test_layer_activations_shape_and_meaning(tiny: tuple) -> None:
    model, tok = tiny
    prompts = ["how do i kill a python process", "france", "what is the capital of france"]
    model.train()
    acts = layer_activations(model, tok, "chat", prompts, batch_size=2)
    assert model.training  # mode restored
    n_layers, d = model.config.num_hidden_layers, model.config.hidden_size
    assert acts.shape == (n_layers + 1, 3, d) and acts.dtype == torch.float32
    ids = torch.tensor([encode_prompt(tok, prompts[1], "chat")])
    with torch.no_grad():
        ref = model.eval()(input_ids=ids, output_hidden_states=True).hidden_states
    # index 0 = embeddings, i = block i-1's output (HF's last entry is after the final norm, ours before)
    for i in range(n_layers):
        assert torch.allclose(acts[i, 1], ref[i][0, -1], atol=1e-5)


def test_left_padding_and_truncation_do_not_change_a_prompt(tiny: tuple) -> None:
    model, tok = tiny
    short, long = "france", "how do i kill a python process what is the capital of france here"
    together = layer_activations(model, tok, "chat", [long, short, long], batch_size=3)
    alone = layer_activations(model, tok, "chat", [short])
    assert torch.allclose(together[:, 1], alone[:, 0], atol=1e-5)
    # only the last max_length tokens are kept, so prompts that share them read the same
    cut = layer_activations(model, tok, "plain", ["here open the capital of france", "kill a the capital of france"],
                            max_length=4)
    assert torch.allclose(cut[:, 0], cut[:, 1], atol=1e-5)


def _approx_equal(a: object, b: object, rel: float = 1e-6) -> bool:
    """Equal structure and labels; floats within ``rel`` of each other."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_approx_equal(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_approx_equal(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-9)
    return a == b


def test_report_detects_a_trivially_encoded_class(tiny: tuple) -> None:
    model, tok = tiny
    g = torch.Generator().manual_seed(0)
    # with the plain template the last prompt token is the user's last word, so the class is in the
    # embedding itself: the probe must be perfect there and within-class spread is nil (Fisher unbounded)
    sets = {"seemingly_toxic": [_prefix(k, g) + " france" for k in range(10)],
            "toxic": [_prefix(k, g) + " kill" for k in range(10)], "unused": ["open"]}
    rep = separability_report(model, tok, "plain", sets, folds=3, seed=1, batch_size=8)
    again = separability_report(model, tok, "plain", sets, folds=3, seed=1, batch_size=5)
    # another batch size pads to other matmul shapes: the same report up to float rounding (which CPUs differ in)
    assert _approx_equal({k: v for k, v in rep.items() if k != "seconds"},
                         {k: v for k, v in again.items() if k != "seconds"})
    json.dumps(rep, allow_nan=False)
    n_layers = model.config.num_hidden_layers
    assert rep["classes"] == ["seemingly_toxic", "toxic"] and rep["n"] == {"seemingly_toxic": 10, "toxic": 10}
    assert [r["layer"] for r in rep["layers"]] == list(range(n_layers + 1))
    assert [r["block"] for r in rep["layers"]] == [None, *range(n_layers)]
    first = rep["layers"][0]
    assert first["probe_accuracy"] == 1.0 and first["silhouette_cosine"] == pytest.approx(1.0)
    assert first["fisher_ratio"] is None
    assert all(r["fisher_ratio"] is None or r["fisher_ratio"] > 0 for r in rep["layers"])
    assert set(rep["pca"]) == {str((n_layers + 1) // 2), str(n_layers)}
    pc = rep["pca"][str(n_layers)]
    assert len(pc["coords"]) == len(pc["labels"]) == 20 and len(pc["explained"]) == 2
    assert pc["labels"][0] == "seemingly_toxic" and pc["labels"][-1] == "toxic"


def test_report_options_and_errors(tiny: tuple) -> None:
    model, tok = tiny
    sets = {"a": ["how do i kill", "what is the", "here open a"], "b": ["france", "python process", "open"]}
    rep = separability_report(model, tok, "chat", sets, classes=("a", "b"), folds=5, pca_layers=[0, -1, 0])
    assert list(rep["pca"]) == ["0", str(model.config.num_hidden_layers)]
    assert rep["folds"] == 3 and "reduced" in rep["probe_note"]
    json.dumps(rep, allow_nan=False)
    # with the chat template every prompt ends in the same template token: layer 0 is a constant
    first = rep["layers"][0]
    assert first["fisher_ratio"] == 0.0 and first["silhouette_cosine"] == 0.0
    assert rep["pca"]["0"]["explained"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="lack"):
        separability_report(model, tok, "chat", sets)
    with pytest.raises(ValueError, match="out of range"):
        separability_report(model, tok, "chat", sets, classes=("a", "b"), pca_layers=[9])
    with pytest.raises(ValueError, match="template"):
        layer_activations(model, tok, "llama", ["x"])  # type: ignore[arg-type]
