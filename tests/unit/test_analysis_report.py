"""Tables and figures of the analyses (overrefusal.report.analyses) from constructed results."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from overrefusal.io import DataError
from overrefusal.report.analyses import FIGURES, TABLES

CLASSES = ["seemingly_toxic", "toxic", "general"]


def _doc(kind: str, per_label: dict[str, list[dict]]) -> dict:
    """An analysis JSON as rule analysis writes it: labels and seeds in order, results per label and seed."""
    seeds = list(range(len(next(iter(per_label.values())))))
    return {"analysis": kind, "model": "toy", "labels": list(per_label), "seeds": seeds,
            "checkpoints": {label: {str(i): r for i, r in enumerate(runs)} for label, runs in per_label.items()}}


def _entk(label_values: dict[str, list[float]]) -> dict:
    def one(st_t: float) -> dict:
        bm = {a: {b: (1.0 if a == b else 0.2) for b in CLASSES} for a in CLASSES}
        bm["seemingly_toxic"]["toxic"] = bm["toxic"]["seemingly_toxic"] = st_t
        return {"classes": CLASSES, "block_means": bm, "n_params": 1000, "seconds": 1.23,
                "config": {"estimator": "fd", "params": "last_n+head", "top_k": 10}}
    return _doc("entk", {label: [one(v) for v in values] for label, values in label_values.items()})


def _separability() -> dict:
    def layers(acc: list[float]) -> list[dict]:
        return [{"layer": i, "block": None if i == 0 else i - 1, "probe_accuracy": a, "probe_std": 0.01,
                 "silhouette_cosine": a - 0.5, "fisher_ratio": None if i == 0 else 4 * a} for i, a in enumerate(acc)]
    pca = {"2": {"coords": [[0, 1], [1, 0], [2, 2], [3, 1]], "labels": ["seemingly_toxic"] * 2 + ["toxic"] * 2,
                 "explained": [0.6, 0.2]}}
    def one(acc: list[float]) -> dict:
        return {"classes": CLASSES[:2], "n": {"seemingly_toxic": 2, "toxic": 2}, "folds": 2, "layers": layers(acc),
                "pca": pca}
    return _doc("separability", {"base": [one([0.5, 0.7, 0.8]), one([0.5, 0.7, 0.8])],
                                 "dcr_stl/dcr_stage": [one([0.5, 0.9, 1.0]), one([0.5, 0.8, 1.0])]})


def _attribution() -> dict:
    ex = {"prompt": "how do i kill a process", "tokens": ["<s>", "how", "do", "i", "kill", "a", "process", "A:"],
          "scores": [0.0, 0.1, 0.0, 0.1, 2.0, 0.0, 0.3, 0.5], "user_mask": [False] + [True] * 6 + [False],
          "words": [None, "how", "do", None, "kill", None, "process", None]}
    def cp(share: float) -> dict:
        return {"method": "integrated_gradients", "mean_f_x": 1.5, "mean_abs_completeness_gap": 0.01,
                "examples": [ex], "summary": {
                    "mean_trigger": 2.0 * share, "mean_other": 0.1, "diff": 2.0 * share - 0.1, "mean_paired_diff": 0.5,
                    "abs_share_trigger": share, "token_share_trigger": 0.2, "n_prompts": 4,
                    "n_prompts_with_trigger": 3}}
    return _doc("attribution", {"stl": [cp(0.8), cp(0.7)], "tbr_internal": [cp(0.3), cp(0.2)]})


def test_entk_table_has_the_block_means_per_checkpoint_over_seeds() -> None:
    df = TABLES["entk"]([_entk({"stl": [0.88, 0.86, 0.90], "base": [0.9, 0.9, 0.9]})])
    assert list(df["checkpoint"]) == ["stl", "base"]  # the labels' order, not the JSON's sorted keys
    assert df.loc[0, "ST|T"] == pytest.approx(0.88) and df.loc[0, "T|ST"] == pytest.approx(0.88)
    assert df.loc[0, "ST|T_ci_low"] < 0.88 < df.loc[0, "ST|T_ci_high"] and df.loc[0, "n_seeds"] == 3
    assert df.loc[1, "G|G"] == 1.0


def test_separability_table_has_a_row_per_layer() -> None:
    df = TABLES["separability"]([_separability()])
    assert len(df) == 6 and df.loc[0, "block"] == "embeddings" and df.loc[1, "block"] == "0"
    dcr = df[df["checkpoint"] == "dcr_stl/dcr_stage"].set_index("layer")
    assert dcr.loc[1, "probe_accuracy"] == pytest.approx(0.85) and dcr.loc[2, "probe_accuracy"] == 1.0
    assert math.isnan(df.loc[0, "fisher_ratio"])  # unbounded on one seed: no mean


def test_attribution_table_compares_trigger_and_other_tokens() -> None:
    df = TABLES["attribution"]([_attribution()]).set_index("checkpoint")
    assert df.loc["stl", "abs_share_trigger"] == pytest.approx(0.75)
    assert df.loc["tbr_internal", "abs_share_trigger"] == pytest.approx(0.25)
    assert df.loc["stl", "diff"] == pytest.approx(1.4) and df.loc["stl", "n_seeds"] == 2


@pytest.mark.parametrize("kind, doc", [("entk", _entk({"base": [0.9, 0.8], "stl": [0.5, 0.6]})), ("separability", _separability()),
                                       ("attribution", _attribution())])
def test_figures_are_written_as_png_and_reproducible_pdf(tmp_path: Path, kind: str, doc: dict) -> None:
    FIGURES[kind]([doc], [tmp_path / "a.png", tmp_path / "a.pdf"])
    FIGURES[kind]([doc], [tmp_path / "b.png", tmp_path / "b.pdf"])
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_result_of_another_analysis_or_a_missing_seed_is_refused() -> None:
    with pytest.raises(DataError, match="expected a entk analysis result, got analysis='separability'"):
        TABLES["entk"]([_separability()])
    doc = _entk({"base": [0.9, 0.8], "stl": [0.9, 0.8]})
    del doc["checkpoints"]["base"]["1"]  # the base model runs once, on the first seed
    assert list(TABLES["entk"]([doc])["n_seeds"]) == [1, 2]
    del doc["checkpoints"]["stl"]["1"]
    with pytest.raises(DataError, match=r"stl lacks seeds \['1'\]"):
        TABLES["entk"]([doc])
