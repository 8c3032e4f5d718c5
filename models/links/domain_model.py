"""The learned domain model: how scam-like a host name looks, from the string alone.

Why this shape: a new phishing domain is on no list the day it is used, and a lookup (WHOIS,
DNS, reputation APIs) on the hot path would add latency and leak what users post. The name itself
carries much of the signal (brand words in odd places, ``-gift``/``-nitro`` compounds, cheap
TLDs, random labels), so a linear model over hashed character n-grams plus a few structural
features scores any host in microseconds, offline.

Features (`featurize`): hashed character 2-5-grams of the host (``www.`` dropped) with ``^``/``$``
anchors; hashed tokens for the public suffix and for each brand word the host contains; and dense
features (length, labels, digits, hyphens, Shannon entropy, vowel share, punycode, brand words,
closest edit distance from a label to a brand, whether the host sits below a private suffix such
as ``github.io``). The brand words are the artifact's own (recorded at training time), not the
configurable look-alike list, so changing settings never changes what the model's inputs mean.

Storage: the classifier is a scikit-learn `LogisticRegression` at training time; what is saved
is its weights alone, as a NumPy ``.npz`` read with ``allow_pickle=False`` (no code can ride in
it, unlike pickle/joblib; `skops` would also be safe, but importing it costs seconds at start-up
for a model that is a weight vector and a bias). Next to it, ``config.json`` holds the feature
version, the scaling of the dense features, the score mapping and the sha256 of the weights file,
checked before loading. A feature-version or checksum mismatch is a hard error: the weights would
be read against the wrong inputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from pipeline.features.domains import public_suffix, registrable_domain

FEATURE_VERSION = 1
FORMAT_VERSION = 1
MODEL_FILE = "domain_model.npz"
CONFIG_FILE = "config.json"
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
N_FEATURES = 2**18
DEFAULT_BRANDS: tuple[str, ...] = (
    "discord", "nitro", "steam", "steamcommunity", "steampowered", "valve", "csgo", "counterstrike",
    "epicgames", "roblox", "twitch", "paypal", "gift", "free", "airdrop", "hypesquad", "boost",
    "login", "verify", "account", "support", "wallet", "metamask", "opensea", "crypto",
)  # fmt: skip
DENSE_NAMES: tuple[str, ...] = (
    "len_host", "len_label", "n_labels", "digit_share", "n_hyphens", "entropy", "vowel_share",
    "punycode", "n_brands", "brand_in_subdomain", "min_brand_distance", "private_suffix", "len_suffix",
)  # fmt: skip


class ArtifactError(RuntimeError):
    """The link-model artifact is missing, altered or from another feature version."""


def canonical_host(host: str) -> str:
    """Lower-case, no trailing dot, no leading ``www.``: the form the model is trained on."""
    host = host.strip().strip(".").lower()
    return host[4:] if host.startswith("www.") else host


def _entropy(s: str) -> float:
    if not s:
        return 0.0
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


@lru_cache(maxsize=32768)
def _parts(host: str) -> tuple[str, str, str]:
    """(subdomain part, registrable label, public suffix) of a canonical host."""
    suffix = public_suffix(host) or host.rsplit(".", 1)[-1]
    reg = registrable_domain(host) or host
    label = reg[: -len(suffix) - 1] if reg.endswith("." + suffix) else reg.split(".")[0]
    sub = host[: -len(reg) - 1] if host.endswith("." + reg) else ""
    return sub, label, suffix


def dense_features(host: str, brands: Sequence[str]) -> list[float]:
    """The structural features of one canonical host, in `DENSE_NAMES` order."""
    sub, label, suffix = _parts(host)
    compact = host.replace("-", "").replace(".", "")
    found = [b for b in brands if b in compact]
    labels = [p for p in host.replace("-", ".").split(".") if p]
    dist = min(
        (Levenshtein.distance(p, b) / max(len(b), 1) for p in labels for b in brands if len(b) >= 5), default=1.0
    )
    letters = [c for c in host if c.isalpha()]
    return [
        len(host),
        len(label),
        host.count(".") + 1,
        sum(c.isdigit() for c in host) / max(len(host), 1),
        host.count("-"),
        _entropy(label),
        sum(c in "aeiou" for c in letters) / max(len(letters), 1),
        float("xn--" in host),
        len(found),
        float(any(b in sub.replace("-", "") for b in brands)) if sub else 0.0,
        dist,
        float("." in suffix),
        len(suffix),
    ]


def _tokens(host: str, brands: Sequence[str]) -> str:
    """Word-level extras hashed next to the n-grams: the suffix and the brand words present."""
    _, _, suffix = _parts(host)
    compact = host.replace("-", "").replace(".", "")
    return " ".join([f"~tld={suffix}"] + [f"~brand={b}" for b in brands if b in compact])


_NGRAMS = HashingVectorizer(
    analyzer="char", ngram_range=(2, 5), n_features=N_FEATURES, alternate_sign=False, norm="l2", lowercase=False
)
_WORDS = HashingVectorizer(analyzer=str.split, n_features=N_FEATURES, alternate_sign=False, norm=None, lowercase=False)


def featurize(hosts: Sequence[str], brands: Sequence[str], mean: np.ndarray, scale: np.ndarray) -> sparse.csr_matrix:
    """The model's input matrix for canonical hosts: n-grams + extras (hashed) | scaled dense features."""
    grams = _NGRAMS.transform([f"^{h}$" for h in hosts])
    words = _WORDS.transform([_tokens(h, brands) for h in hosts])
    dense = (np.array([dense_features(h, brands) for h in hosts], dtype=np.float64) - mean) / scale
    return sparse.hstack([grams + words, sparse.csr_matrix(dense)], format="csr")


@dataclass
class LinkModelConfig:
    """What the artifact needs besides its weights; written as config.json."""

    version: str
    brands: list[str]
    dense_mean: list[float]
    dense_scale: list[float]
    # Raw probabilities at 1% and 0.1% false-positive rate on validation negatives: the score map
    # sends them to 0.5 (hold for review under the default policy) and 0.8 (block).
    threshold_fpr_1pct: float
    threshold_fpr_01pct: float
    model_sha256: str = ""
    sklearn_version: str = ""
    trained_on: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION
    format_version: int = FORMAT_VERSION


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def score_map(raw: np.ndarray, t1: float, t01: float, cap: float = 0.95) -> np.ndarray:
    """Monotone piecewise-linear map of raw probabilities onto the policy's scale.

    [0, t1) -> [0, 0.5), [t1, t01) -> [0.5, 0.8), [t01, 1] -> [0.8, cap]. The cap keeps a model
    guess below 1.0, which only an exact list match reaches (and which times the author out)."""
    raw = np.asarray(raw, dtype=np.float64)
    t01 = max(t01, t1 + 1e-9)
    return np.interp(raw, [0.0, t1, t01, 1.0], [0.0, 0.5, 0.8, cap])


class LinkModel:
    """The loaded learned domain model: `score(hosts)` -> calibrated scam scores in [0, 0.95]."""

    def __init__(self, coef: np.ndarray, intercept: float, config: LinkModelConfig) -> None:
        self.coef = np.asarray(coef, dtype=np.float64).ravel()
        self.intercept = float(intercept)
        self.config = config
        self._mean = np.asarray(config.dense_mean, dtype=np.float64)
        self._scale = np.asarray(config.dense_scale, dtype=np.float64)

    @property
    def version(self) -> str:
        return self.config.version

    def raw(self, hosts: Sequence[str]) -> np.ndarray:
        """Uncalibrated probabilities (what the benchmark's curves are drawn from)."""
        if not hosts:
            return np.zeros(0)
        X = featurize([canonical_host(h) for h in hosts], self.config.brands, self._mean, self._scale)
        z = X @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, hosts: Sequence[str]) -> np.ndarray:
        return score_map(self.raw(hosts), self.config.threshold_fpr_1pct, self.config.threshold_fpr_01pct)

    def save(self, out_dir: Path) -> None:
        import sklearn

        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / MODEL_FILE
        np.savez_compressed(path, coef=self.coef.astype(np.float32), intercept=np.array([self.intercept]))
        self.config.model_sha256 = _sha256(path)
        self.config.sklearn_version = sklearn.__version__
        (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def load(cls, artifact_dir: Path = DEFAULT_ARTIFACT_DIR) -> LinkModel:
        cfg_path, model_path = artifact_dir / CONFIG_FILE, artifact_dir / MODEL_FILE
        if not cfg_path.is_file() or not model_path.is_file():
            raise ArtifactError(f"link model artifact not found in {artifact_dir} (run `heron train links`)")
        data = json.loads(cfg_path.read_text())
        if data.get("format_version") != FORMAT_VERSION or data.get("feature_version") != FEATURE_VERSION:
            raise ArtifactError(
                f"{cfg_path}: format {data.get('format_version')}/features {data.get('feature_version')}, "
                f"this code reads {FORMAT_VERSION}/{FEATURE_VERSION}: retrain with `heron train links`"
            )
        config = LinkModelConfig(**data)
        actual = _sha256(model_path)
        if actual != config.model_sha256:
            raise ArtifactError(f"{model_path}: sha256 {actual} differs from config.json's {config.model_sha256}")
        with np.load(model_path, allow_pickle=False) as npz:
            coef, intercept = npz["coef"], npz["intercept"]
        expected = N_FEATURES + len(DENSE_NAMES)
        if coef.shape != (expected,):
            raise ArtifactError(f"{model_path}: {coef.shape[0]} weights, the features have {expected}")
        return cls(coef, float(intercept[0]), config)
