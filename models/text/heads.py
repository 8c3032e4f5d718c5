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
`heads.json` records the encoder version the heads were fitted on; a different encoder is refused
(its pooled space is different, so the heads' scores would be meaningless).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADS_WEIGHTS = "heads.safetensors"
HEADS_CONFIG = "heads.json"
HEADS_FORMAT = 1


class HeadsMismatchError(RuntimeError):
    """heads.json was fitted on another encoder than the one being served."""


@dataclass
class TaxonomyHeads:
    """The loaded heads: `probs(pooled)` -> (n, len(categories)) calibrated probabilities."""

    categories: tuple[str, ...]
    layers: dict[str, list[tuple[np.ndarray, np.ndarray]]]  # category -> [(W (in, out), b (out,))]
    platt: dict[str, tuple[float, float]]
    thresholds: dict[str, float]
    config: dict[str, Any]

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        x = np.asarray(pooled, dtype=np.float32)
        out = np.empty((x.shape[0], len(self.categories)), dtype=np.float32)
        for j, cat in enumerate(self.categories):
            h = x
            stack = self.layers[cat]
            for k, (w, b) in enumerate(stack):
                h = h @ w + b
                if k < len(stack) - 1:
                    h = np.maximum(h, 0.0)
            a, c = self.platt[cat]
            out[:, j] = a * h[:, 0] + c
        return out

    def probs(self, pooled: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(pooled)))


def save_heads(out_dir: Path, categories: list[str], layers: dict[str, list[tuple[np.ndarray, np.ndarray]]],
               platt: dict[str, tuple[float, float]], thresholds: dict[str, float], meta: dict[str, Any]) -> None:
    """Write heads.safetensors (`{category}.{k}.weight|bias`) and heads.json."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for cat in categories:
        for k, (w, b) in enumerate(layers[cat]):
            tensors[f"{cat}.{k}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
            tensors[f"{cat}.{k}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
    save_file(tensors, str(out_dir / HEADS_WEIGHTS), metadata={"format": "heron-text-heads"})
    cfg = {"format_version": HEADS_FORMAT, "categories": categories,
           "n_layers": {c: len(layers[c]) for c in categories},
           "platt": {c: list(platt[c]) for c in categories}, "thresholds": thresholds, **meta}
    (out_dir / HEADS_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", "utf-8")


def load_heads(artifact_dir: Path, encoder_version: str) -> TaxonomyHeads | None:
    """The heads next to an encoder artifact, or None when it has none (then those categories are
    reported unscored, never 0.0)."""
    cfg_path = artifact_dir / HEADS_CONFIG
    if not cfg_path.is_file():
        return None
    from safetensors.numpy import load_file

    cfg = json.loads(cfg_path.read_text("utf-8"))
    if cfg.get("format_version") != HEADS_FORMAT:
        raise ValueError(f"{cfg_path}: unsupported heads format {cfg.get('format_version')}")
    if cfg.get("encoder_version") != encoder_version:
        raise HeadsMismatchError(
            f"{cfg_path} was fitted on encoder {cfg.get('encoder_version')!r}, the artifact is {encoder_version!r}; "
            "refit them with `heron train text-heads`")
    tensors = load_file(str(artifact_dir / HEADS_WEIGHTS))
    layers = {c: [(tensors[f"{c}.{k}.weight"], tensors[f"{c}.{k}.bias"]) for k in range(int(cfg["n_layers"][c]))]
              for c in cfg["categories"]}
    platt = {c: (float(a), float(b)) for c, (a, b) in cfg["platt"].items()}
    return TaxonomyHeads(tuple(cfg["categories"]), layers, platt, {c: float(t) for c, t in cfg["thresholds"].items()},
                         cfg)
