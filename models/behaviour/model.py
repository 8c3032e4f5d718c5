"""The behaviour model: a gradient-boosted classifier over the behaviour features and the text
model's spam score for the same message.

Inputs (`INPUTS`, in column order): the behaviour counters (`FEATURE_NAMES`) and `text.spam`, the
text model's spam probability for the message, NaN when there is none (no text, the text scorer
not configured or failed). Gradient boosting routes missing values natively, and the model is
trained on every example twice, with and without the text score, so a missing text signal leaves
it as good as a behaviour-only model rather than guessing a value.

Saved with `skops` (no pickle: loading cannot run arbitrary code) next to `meta.json`, which
records the artifact's format version, the feature names in column order, the scikit-learn
version it was trained with and the file's SHA-256. `load_model` refuses an artifact whose
checksum, format version or feature list does not match this code, and skops refuses any type
outside `TRUSTED_TYPES`, so a swapped or stale file fails loudly at start-up instead of
scoring garbage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.features.behaviour import FEATURE_NAMES

FORMAT_VERSION = 2  # 2: the text model's spam score is an input (INPUTS)
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
MODEL_FILE = "behaviour_model.skops"
META_FILE = "meta.json"
# Types skops may construct when loading (HistGradientBoostingClassifier's internals).
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "numpy.dtype",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


TEXT_SPAM = "text.spam"  # the text model's spam probability for the message; NaN when absent
INPUTS: tuple[str, ...] = (*FEATURE_NAMES, TEXT_SPAM)


class ArtifactError(RuntimeError):
    """The behaviour artifact is missing, corrupt, or does not match this code."""


def feature_matrix(
    rows: Sequence[Mapping[str, float]], text_spam: Sequence[float | None] | None = None
) -> np.ndarray:
    """Counters in `INPUTS` order (ages as log seconds, the scale the trees split on), then the
    text model's spam score: NaN where `text_spam` is None or has None/NaN for the row."""
    if text_spam is not None and len(text_spam) != len(rows):
        raise ValueError(f"{len(text_spam)} text scores for {len(rows)} rows")
    out = np.empty((len(rows), len(INPUTS)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, name in enumerate(FEATURE_NAMES):
            v = float(row[name])
            out[i, j] = math.log1p(v) if name.startswith("account.") and name.endswith("_s") else v
    col = out[:, len(FEATURE_NAMES)]
    col[:] = np.nan
    if text_spam is not None:
        for i, t in enumerate(text_spam):
            if t is not None:
                col[i] = float(t)
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class BehaviourModel:
    """A fitted classifier plus what it was trained on."""

    estimator: Any
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "0"))

    def predict_proba(
        self, rows: Sequence[Mapping[str, float]], text_spam: Sequence[float | None] | None = None
    ) -> np.ndarray:
        """Spam probability per row; `text_spam` None (or a None entry): no text signal."""
        if not rows:
            return np.empty(0)
        return np.asarray(self.estimator.predict_proba(feature_matrix(rows, text_spam))[:, 1])


def save_model(estimator: Any, out: Path, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write the skops file and meta.json (with the checksum) into `out`."""
    import sklearn
    import skops.io as sio

    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    sio.dump(estimator, path)
    untrusted = sorted(sio.get_untrusted_types(file=path))
    unknown = [t for t in untrusted if t not in TRUSTED_TYPES]
    if unknown:
        raise ArtifactError(f"the model uses types outside TRUSTED_TYPES: {unknown}; review and add them")
    digest = sha256_file(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "version": f"behaviour-{digest[:12]}",
        "features": list(INPUTS),
        "sklearn": sklearn.__version__,
        "sha256": digest,
        **extra,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", "utf-8")
    return meta


def load_model(artifact_dir: Path | None = None) -> BehaviourModel:
    """Load and verify the artifact (checksum, format version, feature list, trusted types)."""
    import skops.io as sio

    d = artifact_dir or DEFAULT_ARTIFACT_DIR
    path, meta_path = d / MODEL_FILE, d / META_FILE
    if not path.exists() or not meta_path.exists():
        raise ArtifactError(f"no behaviour model in {d}; run `heron train behaviour`")
    meta = json.loads(meta_path.read_text("utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    if meta.get("features") != list(INPUTS):
        raise ArtifactError(f"{meta_path}: trained on other features than this code computes; retrain")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise ArtifactError(f"{path}: checksum {digest[:12]} does not match meta.json ({str(meta.get('sha256'))[:12]})")
    estimator = sio.load(path, trusted=list(TRUSTED_TYPES))
    return BehaviourModel(estimator, meta)
