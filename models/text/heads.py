"""Taxonomy heads: small per-category classifiers over the text model's pooled embedding.

Why on the pooled vector: the encoder already runs once per message for toxicity/hate/spam; a
head for violence, self_harm, sexual, harassment or scam is then a few hundred multiply-adds on
that same vector, so every category costs one encoder forward. The backbone was trained for
sentence similarity, so its pooled space carries categories with little natural data (threats,
plain-language sexual content) from a few hundred labelled and seeded examples.

Stored next to the encoder artifact, separately from it (`heads.safetensors` + `heads.json`), so
the encoder's weights and config are never rewritten to add a category. Each head is a stack of
dense layers (ReLU between; input standardisation folded into the first) giving one logit,
then Platt scaling (a * logit + b) fitted on validation, then a sigmoid: a calibrated probability.

Two cheap extras per category, each chosen on validation (`training.text.heads.RECIPE`):
- hybrid: the head's logit is blended with a lexical model's (hashed n-gram TF-IDF + structural cues
  over the whole model text, `models.text.lexical`; one featurisation per message for every category,
  weights in `heads_lexical.safetensors`), the way the spam category pairs the text model with the
  n-gram spam-text model;
- windows: the head reads the mean pooled vector of the text's consecutive 64-token windows
  (`window_ids`), so a long post is read whole; a text that fits one window costs nothing extra.

`heads.json` records the encoder version and the sha256 of the encoder weights the heads were fitted
on; a different encoder is refused (its pooled space is different, so the heads' scores would be
meaningless), including one rewritten under the same version string.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEADS_WEIGHTS = "heads.safetensors"
HEADS_CONFIG = "heads.json"
LEXICAL_WEIGHTS = "heads_lexical.safetensors"
# 2: the encoder weights' sha256 is recorded and checked, per-category inputs (first window or the mean
# of the text's windows) and hybrid blends with the lexical model (`models.text.lexical`).
HEADS_FORMAT = 2


class HeadsMismatchError(RuntimeError):
    """heads.json was fitted on another encoder than the one being served."""


@dataclass
class Blend:
    """A hybrid score: `w` times the embedding head's logit plus (1 - w) times the lexical model's,
    each standardised by its mean and sd on validation (so `w` means the same for every category)."""

    w: float
    head_mu: float
    head_sd: float
    lex_mu: float
    lex_sd: float

    def __call__(self, head: np.ndarray, lex: np.ndarray) -> np.ndarray:
        return self.w * (head - self.head_mu) / self.head_sd + (1 - self.w) * (lex - self.lex_mu) / self.lex_sd


@dataclass
class Lexical:
    """The lexical side of the hybrid heads: one featuriser, one linear model per blended category."""

    categories: tuple[str, ...]
    vocab: np.ndarray  # hashed column indices kept (models.text.lexical)
    idf: np.ndarray
    weight: np.ndarray  # (features, len(categories))
    bias: np.ndarray  # (len(categories),)

    def __post_init__(self) -> None:
        from models.text.lexical import LexicalFeatures

        self.features = LexicalFeatures(self.vocab, self.idf)
        if self.weight.shape != (self.features.width, len(self.categories)):
            raise ValueError(f"lexical weights {self.weight.shape} do not match {self.features.width} features")

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(n, len(categories)) raw logits of the lexical models for model texts."""
        return np.asarray(self.features.transform(texts) @ self.weight, dtype=np.float32) + self.bias


@dataclass
class TaxonomyHeads:
    """The loaded heads: `probs(pooled, texts, pooled_windows)` -> (n, len(categories)) calibrated probabilities.

    `pooled` is the first window's pooled vector (what every head reads), `pooled_windows` the mean over
    the text's windows (`window_ids`; needed when `needs_windows`), `texts` the model texts (needed when
    `needs_texts`: a hybrid head blends in the lexical model)."""

    categories: tuple[str, ...]
    layers: dict[str, list[tuple[np.ndarray, np.ndarray]]]  # category -> [(W (in, out), b (out,))]
    platt: dict[str, tuple[float, float]]
    thresholds: dict[str, float]
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # category -> "first" | "windows"
    blends: dict[str, Blend] = field(default_factory=dict)
    lexical: Lexical | None = None

    @property
    def needs_texts(self) -> bool:
        return bool(self.blends)

    @property
    def needs_windows(self) -> bool:
        return any(v == "windows" for v in self.inputs.values())

    def head_logits(self, cat: str, x: np.ndarray) -> np.ndarray:
        """The embedding head's raw logit (before blending and Platt scaling)."""
        h = np.asarray(x, dtype=np.float32)
        stack = self.layers[cat]
        for k, (w, b) in enumerate(stack):
            h = h @ w + b
            if k < len(stack) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def logits(self, pooled: np.ndarray, texts: Sequence[str] | None = None,
               pooled_windows: np.ndarray | None = None) -> np.ndarray:
        if self.needs_texts and texts is None:
            raise ValueError("these heads blend a lexical model: pass the model texts")
        if self.needs_windows and pooled_windows is None:
            raise ValueError("these heads read the mean of a text's windows: pass pooled_windows")
        out = np.empty((len(pooled), len(self.categories)), dtype=np.float32)
        lex = self.lexical.logits(texts) if self.lexical is not None and texts is not None and len(pooled) else None
        for j, cat in enumerate(self.categories):
            x = pooled_windows if self.inputs.get(cat) == "windows" else pooled
            z = self.head_logits(cat, x)  # type: ignore[arg-type]
            if cat in self.blends:
                assert lex is not None and self.lexical is not None
                z = self.blends[cat](z, lex[:, self.lexical.categories.index(cat)])
            a, c = self.platt[cat]
            out[:, j] = a * z + c
        return out

    def probs(self, pooled: np.ndarray, texts: Sequence[str] | None = None,
              pooled_windows: np.ndarray | None = None) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(pooled, texts, pooled_windows)))


def save_heads(out_dir: Path, categories: list[str], layers: dict[str, list[tuple[np.ndarray, np.ndarray]]],
               platt: dict[str, tuple[float, float]], thresholds: dict[str, float], meta: dict[str, Any],
               inputs: dict[str, str] | None = None, blends: dict[str, Blend] | None = None,
               lexical: Lexical | None = None) -> None:
    """Write heads.safetensors (`{category}.{k}.weight|bias`), heads_lexical.safetensors (when a head is
    hybrid) and heads.json. `meta` must name the encoder (`encoder_version`, `encoder_weights_sha256`)."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for cat in categories:
        for k, (w, b) in enumerate(layers[cat]):
            tensors[f"{cat}.{k}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
            tensors[f"{cat}.{k}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
    save_file(tensors, str(out_dir / HEADS_WEIGHTS), metadata={"format": "heron-text-heads"})
    lex_path = out_dir / LEXICAL_WEIGHTS
    if lexical is not None:
        save_file({"vocab": lexical.vocab.astype(np.int32), "idf": lexical.idf.astype(np.float32),
                   # float16 at rest: half the bytes, and a linear model's scores move by ~1e-3 at most
                   "weight": np.ascontiguousarray(lexical.weight, dtype=np.float16),
                   "bias": lexical.bias.astype(np.float32)}, str(lex_path),
                  metadata={"format": "heron-text-heads-lexical"})
    elif lex_path.exists():
        lex_path.unlink()
    cfg = {"format_version": HEADS_FORMAT, "categories": categories,
           "n_layers": {c: len(layers[c]) for c in categories},
           "platt": {c: list(platt[c]) for c in categories}, "thresholds": thresholds,
           "inputs": {c: (inputs or {}).get(c, "first") for c in categories},
           "blends": {c: asdict(b) for c, b in (blends or {}).items()}, **meta}
    if lexical is not None:
        from models.text.lexical import LEXICAL_VERSION, MIN_DF, STRUCTURAL

        cfg["lexical"] = {"version": LEXICAL_VERSION, "categories": list(lexical.categories), "min_df": MIN_DF,
                          "structural": list(STRUCTURAL), "sha256": _sha256(lex_path)}
    (out_dir / HEADS_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", "utf-8")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_heads(artifact_dir: Path, encoder_version: str, encoder_weights_sha256: str | None = None,
               ) -> TaxonomyHeads | None:
    """The heads next to an encoder artifact, or None when it has none (then those categories are
    reported unscored, never 0.0).

    Refused (HeadsMismatchError) when they were fitted on another encoder: another version string, or
    the same version with other weights (`encoder_weights_sha256`, config.json's `weights.sha256`). Why
    both: an encoder's weights were once rewritten (int8 at rest) under an unchanged version, and heads
    fitted on the old pooled space then scored silently differently."""
    cfg_path = artifact_dir / HEADS_CONFIG
    if not cfg_path.is_file():
        return None
    from safetensors.numpy import load_file

    cfg = json.loads(cfg_path.read_text("utf-8"))
    if cfg.get("format_version") != HEADS_FORMAT:
        raise ValueError(f"{cfg_path}: unsupported heads format {cfg.get('format_version')}; "
                         "refit them with `heron train text-heads`")
    if cfg.get("encoder_version") != encoder_version:
        raise HeadsMismatchError(
            f"{cfg_path} was fitted on encoder {cfg.get('encoder_version')!r}, the artifact is {encoder_version!r}; "
            "refit them with `heron train text-heads`")
    if cfg.get("encoder_weights_sha256") != encoder_weights_sha256:
        raise HeadsMismatchError(
            f"{cfg_path} was fitted on encoder weights sha256 {cfg.get('encoder_weights_sha256')!r}, the artifact's "
            f"are {encoder_weights_sha256!r} (same version {encoder_version!r}, other weights); refit them with "
            "`heron train text-heads`")
    tensors = load_file(str(artifact_dir / HEADS_WEIGHTS))
    layers = {c: [(tensors[f"{c}.{k}.weight"], tensors[f"{c}.{k}.bias"]) for k in range(int(cfg["n_layers"][c]))]
              for c in cfg["categories"]}
    platt = {c: (float(a), float(b)) for c, (a, b) in cfg["platt"].items()}
    lexical = None
    if cfg.get("lexical"):
        from models.text.lexical import LEXICAL_VERSION, MIN_DF, STRUCTURAL

        spec, lex_path = cfg["lexical"], artifact_dir / LEXICAL_WEIGHTS
        if (spec.get("version"), spec.get("min_df"), spec.get("structural")) != (LEXICAL_VERSION, MIN_DF,
                                                                                  list(STRUCTURAL)):
            raise ValueError(f"{cfg_path}: lexical features of another version; refit with `heron train text-heads`")
        if not lex_path.is_file() or _sha256(lex_path) != spec.get("sha256"):
            raise ValueError(f"{lex_path} is missing or differs from the sha256 heads.json records")
        t = load_file(str(lex_path))
        lexical = Lexical(tuple(spec["categories"]), t["vocab"], t["idf"], t["weight"].astype(np.float32), t["bias"])
    return TaxonomyHeads(tuple(cfg["categories"]), layers, platt, {c: float(t) for c, t in cfg["thresholds"].items()},
                         cfg, dict(cfg.get("inputs", {})), {c: Blend(**b) for c, b in cfg.get("blends", {}).items()},
                         lexical)


# -- reading a long text as several windows ---------------------------------------------------------
MAX_WINDOWS = 8  # a post of up to ~500 tokens is read whole; the rest of a longer one is not read
MIN_TAIL_TOKENS = 16  # a last window shorter than this adds noise to the mean, not evidence


def window_ids(full_ids: list[int], max_length: int, max_windows: int = MAX_WINDOWS) -> list[list[int]]:
    """A tokenised text (with [CLS] ... [SEP], not truncated) as consecutive windows of `max_length`
    tokens, each with its own [CLS]/[SEP]. Window 0 is exactly the truncated sequence every head
    already reads, so a text that fits in one window costs nothing extra.

    Why windows: the encoder reads `max_length` (64) tokens, and a Reddit post or a long chat
    message says what matters (intent to die) anywhere in it; a head over the mean of the windows'
    pooled vectors reads the whole text for one encoder pass per window."""
    cls, body, sep = full_ids[:1], full_ids[1:-1], full_ids[-1:]
    step = max_length - 2
    out = [cls + body[:step] + sep]
    for start in range(step, len(body), step):
        chunk = body[start:start + step]
        if len(out) >= max_windows or len(chunk) < MIN_TAIL_TOKENS:
            break
        out.append(cls + chunk + sep)
    return out
