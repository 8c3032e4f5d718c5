"""The spam-text model: a linear model over hashed character and word n-grams.

Why: the text model's spam head (a fine-tuned MiniLM) misses the obvious, repetitive spam of
comment sections ("check out my channel", "subscribe", links) on videos it has never seen, and
n-grams of the raw text catch exactly that. Its probability is served as the ``spam_text``
scorer's ``spam`` score; the ensemble averages it with the text model's spam score (equal weights
by default), which is the combination measured by ``heron eval spam``. (The behaviour model
reads the text model's spam score, not this one's.) Settings and training data are chosen on
validation rows (``training/spam/select.py``); models/spam/MODEL_CARD.md has the figures.

Features: TF-IDF-weighted hashed character 2-5-grams (within word boundaries) and word 1-2-grams
of the lower-cased text, URLs and numbers kept (they are spam cues). Stored as NumPy arrays (idf,
weights, bias) read with ``allow_pickle=False``, with a sha256 and feature version in
``config.json``: no pickle, no code in the artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

FEATURE_VERSION = 1
FORMAT_VERSION = 1
N_FEATURES = 2**18
WEIGHTS_FILE = "spam_text.npz"
CONFIG_FILE = "config.json"
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"

_CHARS = HashingVectorizer(
    analyzer="char_wb", ngram_range=(2, 5), n_features=N_FEATURES, alternate_sign=False, norm=None
)
_WORDS = HashingVectorizer(
    analyzer="word", ngram_range=(1, 2), n_features=N_FEATURES, alternate_sign=False, norm=None,
    token_pattern=r"(?u)\b\w+\b|https?://|www\.|[$£€!?]",
)  # fmt: skip


class SpamArtifactError(RuntimeError):
    """The spam-text artifact is missing, altered or from another feature version."""


def counts(texts: Sequence[str]) -> sparse.csr_matrix:
    """Raw hashed n-gram counts (chars | words) before TF-IDF weighting."""
    return sparse.hstack([_CHARS.transform(texts), _WORDS.transform(texts)], format="csr")


def tfidf(X: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf times idf, rows L2-normalised (scikit-learn's TfidfTransformer, as arrays)."""
    X = X.astype(np.float64)
    X.data = 1.0 + np.log(X.data)
    X = X @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ X)


def fit_idf(X: sparse.csr_matrix) -> np.ndarray:
    df = np.bincount(X.indices, minlength=X.shape[1])
    return np.log((1 + X.shape[0]) / (1 + df)) + 1.0


@dataclass
class SpamTextConfig:
    version: str
    # Threshold on the *averaged* score (0.5 text model + 0.5 this model) chosen for F1 on the
    # validation splits: what `heron eval spam` reports, for policies that want to match it.
    combined_threshold: float
    own_threshold: float
    weights_sha256: str = ""
    trained_on: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION
    format_version: int = FORMAT_VERSION


class SpamTextModel:
    def __init__(self, idf: np.ndarray, coef: np.ndarray, intercept: float, config: SpamTextConfig) -> None:
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64).ravel()
        self.intercept = float(intercept)
        self.config = config

    @property
    def version(self) -> str:
        return self.config.version

    def features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return tfidf(counts([t.lower() for t in texts]), self.idf)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Spam probabilities for raw message texts."""
        if not texts:
            return np.zeros(0)
        z = self.features(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / WEIGHTS_FILE
        np.savez_compressed(
            path,
            idf=self.idf.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=np.array([self.intercept]),
        )
        self.config.weights_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def load(cls, artifact_dir: Path = DEFAULT_ARTIFACT_DIR) -> SpamTextModel:
        cfg, path = artifact_dir / CONFIG_FILE, artifact_dir / WEIGHTS_FILE
        if not cfg.is_file() or not path.is_file():
            raise SpamArtifactError(f"spam-text artifact not found in {artifact_dir} (run `heron train spam`)")
        data = json.loads(cfg.read_text())
        if data.get("format_version") != FORMAT_VERSION or data.get("feature_version") != FEATURE_VERSION:
            raise SpamArtifactError(f"{cfg}: another format/feature version; retrain with `heron train spam`")
        config = SpamTextConfig(**data)
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != config.weights_sha256:
            raise SpamArtifactError(f"{path}: sha256 {actual} differs from config.json's {config.weights_sha256}")
        with np.load(path, allow_pickle=False) as npz:
            idf, coef, intercept = npz["idf"], npz["coef"], npz["intercept"]
        if coef.shape != (2 * N_FEATURES,) or idf.shape != (2 * N_FEATURES,):
            raise SpamArtifactError(f"{path}: weights do not match {2 * N_FEATURES} features")
        return cls(idf, coef, float(intercept[0]), config)
