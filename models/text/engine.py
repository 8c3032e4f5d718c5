"""Inference engine for the text model: tokenise, length-sort, pad, forward, calibrate.

Four interchangeable forward paths, chosen by `quantize`:
- "fp32": the PyTorch model under `torch.inference_mode`;
- "torch-int8": `torch.ao.quantization.quantize_dynamic` over the Linear layers;
- "onnx-int8": the model exported to ONNX once (cached on disk, keyed by the artifact's hash)
  and dynamically quantised with ONNX Runtime, the feed-forward output projections left fp32;
  ORT releases the GIL during `run`, so worker threads really run in parallel;
- "onnx-int8-sq": the same with every MatMul int8, the feed-forward output projections made
  quantisable by SmoothQuant (Xiao et al. 2023): their inputs' per-channel outlier scale moves
  into the weights. Those fp32 MatMuls were a third of the FLOPs and 38 % of the int8 model's
  time (ORT profile, batches of 8, one thread).
Which one serves by default is decided by measurement in `heron eval text` (fastest path whose
OLID-validation macro-F1 is within 0.5 points of fp32) and recorded in metrics.json.

The tokenizer is a `tokenizers.Tokenizer` with truncation set once at construction: calling the
transformers wrapper with `truncation=...` mutates shared state and is not safe across threads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from models.text.model import (
    ACT_MAX_FILE,
    CONFIG_FILE,
    DEFAULT_ARTIFACT_DIR,
    WEIGHTS_FILE,
    ArtifactConfig,
    TextClassifier,
    backbone_dir,
    load_artifact,
)
from pipeline.settings import get_settings

QUANTIZE_MODES = ("fp32", "torch-int8", "onnx-int8", "onnx-int8-sq")
# ONNX int8 recipe, chosen by measurement on OLID validation with the first trained model: plain
# per-tensor int8 moved logits by up to 2.3 and cost ~0.8 macro-F1; per-channel weights cut the
# logit error to ~0.6, and keeping the feed-forward output projections (whose inputs carry BERT's
# large activation outliers) in fp32 brought the loss to ~0.0 at the best threshold.
ONNX_RECIPE = "int8-per-channel-ffn-out-fp32-v2"
# SmoothQuant migration strength for the feed-forward output projections: s_j = max|X_j|^a /
# max|W_j|^(1-a), X / s into int8, W * s. Chosen on OLID validation with seed 0's model (every
# MatMul int8, per-channel weights; macro-F1 against fp32 78.19): a=0.3 69.83, 0.5 76.84,
# 0.8 77.58, 0.9 77.54, 1.0 77.63 (the recipe above: 77.68). Those inputs are GELU outputs whose few large
# channels (up to 24 against a median of 2) set the per-tensor activation scale; a high a
# flattens them at little cost to the weights' per-channel int8.
SQ_ALPHA = 0.8
SQ_RECIPE = f"int8-per-channel-all-smoothquant-a{SQ_ALPHA}-v1"


def fp32_node(name: str) -> bool:
    """MatMuls the int8 recipe leaves in fp32: the feed-forward output projections."""
    return "/output/dense/" in name and "/attention/" not in name


def _artifact_key(artifact_dir: Path, recipe: str = ONNX_RECIPE) -> str:
    h = hashlib.sha256()
    names = (CONFIG_FILE, WEIGHTS_FILE) + ((ACT_MAX_FILE,) if recipe == SQ_RECIPE else ())
    for name in names:
        h.update((artifact_dir / name).read_bytes())
    h.update(torch.__version__.encode())
    h.update(recipe.encode())
    return h.hexdigest()[:16]


class _InverseScale(torch.nn.Module):
    """x / s per input channel, as one elementwise Mul in the exported graph."""

    def __init__(self, inv: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv", inv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.inv


def smooth_ffn_out(model: TextClassifier, act_max: dict[str, torch.Tensor], alpha: float = SQ_ALPHA) -> None:
    """SmoothQuant the feed-forward output projections in place (the fp32 function is unchanged).

    For input channel j: s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha); the Linear's weight column j
    is multiplied by s_j and its input divided by s_j, so dynamic per-tensor int8 of the input no
    longer spends its range on a few outlier channels.
    """
    layers = model.backbone.encoder.layer
    for i, layer in enumerate(layers):
        key = f"layer.{i}"
        if key not in act_max:
            raise ValueError(f"{ACT_MAX_FILE} has no maxima for encoder {key}")
        dense = layer.output.dense
        amax = act_max[key].float().clamp(min=1e-5)
        if amax.shape[0] != dense.in_features:
            raise ValueError(f"{ACT_MAX_FILE}: {key} has {amax.shape[0]} channels, the layer {dense.in_features}")
        wmax = dense.weight.detach().abs().amax(0).clamp(min=1e-5)
        scale = (amax**alpha / wmax ** (1 - alpha)).clamp(min=1e-2, max=1e2)
        with torch.no_grad():
            dense.weight.mul_(scale)
        layer.output.dense = torch.nn.Sequential(_InverseScale((1.0 / scale).float()), dense)


def load_act_max(artifact_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = artifact_dir / ACT_MAX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the onnx-int8-sq path needs the activation maxima that "
                                "`heron train text` writes (`heron eval text` adds them to older artifacts)")
    return load_file(str(path))


def onnx_cache_dir() -> Path:
    """Where exported ONNX files go: `Settings.cache_dir` (HERON_CACHE_DIR), else a per-user temp
    folder (never the repo)."""
    configured = get_settings().cache_dir
    base = configured or Path(tempfile.gettempdir()) / f"heron-cache-{os.getuid()}"
    return Path(base) / "text-onnx"


def export_onnx_int8(model: TextClassifier, artifact_dir: Path, max_length: int, smooth: bool = False) -> Path:
    """Export the fp32 model to ONNX and quantise its weights to int8 (cached per artifact hash).

    `smooth`: the SmoothQuant recipe (every MatMul int8); `model` is modified in place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    recipe = SQ_RECIPE if smooth else ONNX_RECIPE
    if smooth and not (artifact_dir / ACT_MAX_FILE).is_file():
        load_act_max(artifact_dir)  # raises the clear error before hashing a missing file
    out_dir = onnx_cache_dir() / _artifact_key(artifact_dir, recipe)
    final = out_dir / "model.int8.onnx"
    if final.is_file():
        return final
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / f"model.fp32.{os.getpid()}.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    if smooth:
        smooth_ffn_out(model, load_act_max(artifact_dir))
    model.eval()
    with torch.no_grad():  # not inference_mode: the exporter traces differently under it (measured worse int8)
        torch.onnx.export(
            model, (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    import onnx

    graph = onnx.load(str(fp32)).graph
    keep_fp32 = [] if smooth else [n.name for n in graph.node if n.op_type == "MatMul" and fp32_node(n.name)]
    tmp = out_dir / f"model.int8.{os.getpid()}.onnx"
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep_fp32)
    os.replace(tmp, final)  # atomic: concurrent workers never read a half-written file
    fp32.unlink(missing_ok=True)
    return final


class TextEngine:
    """Calibrated multi-label probabilities for model-ready texts, thread-safe.

    `model_texts` are already normalised and canonicalised (see `training.text.data.canonicalize`).
    """

    def __init__(self, artifact_dir: Path | str | None = None, quantize: str = "fp32",
                 num_threads: int | None = None, max_batch: int = 32, sessions: int = 1) -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        self.artifact_dir = Path(artifact_dir or DEFAULT_ARTIFACT_DIR)
        self.quantize = quantize
        self.max_batch = max_batch
        self.num_threads = num_threads
        model, config, _ = load_artifact(self.artifact_dir)
        self.config: ArtifactConfig = config
        self.labels: tuple[str, ...] = tuple(config.labels)  # served categories
        self.outputs: tuple[str, ...] = tuple(config.outputs)  # every network output
        self.serve_idx = np.array([self.outputs.index(config.serving_heads[lbl]) for lbl in self.labels])
        self.version = config.version
        self.temps = np.array([config.temperature.get(o, 1.0) for o in self.outputs], dtype=np.float32)
        self.thresholds = np.array([config.thresholds.get(lbl, 0.5) for lbl in self.labels], dtype=np.float32)
        self.tokenizer = Tokenizer.from_file(str(backbone_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(config.max_length)
        self.tokenizer.no_padding()
        self._sessions: list[Any] = []
        self._model: torch.nn.Module | None = None
        if num_threads:
            torch.set_num_threads(num_threads)
        if quantize == "fp32":
            self._model = model
        elif quantize == "torch-int8":
            self._model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            import onnxruntime as ort

            path = export_onnx_int8(model, self.artifact_dir, config.max_length, smooth=quantize == "onnx-int8-sq")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = num_threads or torch.get_num_threads()
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # One session per worker thread: concurrent runs on one session share its thread pool.
            self._sessions = [ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                              for _ in range(max(1, sessions))]
        if self._model is not None:
            self._model.eval()

    # -- tokenising -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids (with [CLS]/[SEP], truncated) for one model-ready text."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    # -- forward ------------------------------------------------------------------------------
    @staticmethod
    def pad(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask

    def forward_padded(self, ids: np.ndarray, mask: np.ndarray, worker: int = 0) -> np.ndarray:
        """Raw logits for one padded batch (`worker` picks the ONNX session)."""
        if self._sessions:
            session = self._sessions[worker % len(self._sessions)]
            return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        assert self._model is not None
        with torch.inference_mode():
            return self._model(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    def logits_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> np.ndarray:
        """Logits for token sequences in input order, run as length-sorted batches of `max_batch`."""
        out = np.zeros((len(seqs), len(self.outputs)), dtype=np.float32)
        if not seqs:
            return out
        order = np.argsort([len(s) for s in seqs], kind="stable")
        for start in range(0, len(order), self.max_batch):
            idx = order[start:start + self.max_batch]
            ids, mask = self.pad([seqs[i] for i in idx])
            out[idx] = self.forward_padded(ids, mask, worker)
        return out

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits / self.temps))

    def probs_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> np.ndarray:
        """Calibrated probabilities of every output (n, len(outputs))."""
        return self.calibrate(self.logits_from_ids(seqs, worker))

    def served_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> np.ndarray:
        """Calibrated probabilities of the served categories (n, len(labels))."""
        return self.probs_from_ids(seqs, worker)[:, self.serve_idx]

    def probs(self, model_texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities of every output (n, len(outputs)) for model-ready texts."""
        return self.probs_from_ids(self.encode_batch(model_texts))

    def served(self, model_texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities of the served categories (n, len(labels)) for model-ready texts."""
        return self.served_from_ids(self.encode_batch(model_texts))
