"""Inference engine for the text model: tokenise, length-sort, pad, forward, calibrate.

Four interchangeable forward paths, chosen by `quantize` (fp32, torch-int8, onnx-int8,
onnx-int8-sq); how each int8 path is built and which one serves by default live in
`models.text.quantize`. ONNX Runtime releases the GIL during `run`, so worker threads really
run in parallel on the onnx paths.

The tokenizer is a `tokenizers.Tokenizer` with truncation set once at construction: calling the
transformers wrapper with `truncation=...` mutates shared state and is not safe across threads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from models.text.heads import TaxonomyHeads, load_heads
from models.text.model import (
    DEFAULT_ARTIFACT_DIR,
    ArtifactConfig,
    TextClassifier,
    backbone_dir,
    load_artifact,
    load_config,
)
from models.text.quantize import QUANTIZE_MODES, cached_onnx_int8, export_onnx_int8, quantize_torch_int8


class TextEngine:
    """Calibrated multi-label probabilities for model-ready texts, thread-safe.

    `model_texts` are already normalised and canonicalised (see `models.text.canonical.canonicalize`).
    """

    def __init__(
        self,
        artifact_dir: Path | str | None = None,
        quantize: str = "fp32",
        num_threads: int | None = None,
        max_batch: int = 32,
        sessions: int = 1,
        taxonomy_heads: bool = True,
    ) -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        self.artifact_dir = Path(artifact_dir or DEFAULT_ARTIFACT_DIR)
        self.quantize = quantize
        self.max_batch = max_batch
        self.num_threads = num_threads
        # An onnx path whose export is cached starts from that file alone: no PyTorch model, no
        # transformers import (most of a model worker's start-up). The cache key covers the artifact's
        # config and weights; the backbone's weights are inside the export.
        onnx_path = (
            cached_onnx_int8(self.artifact_dir, smooth=quantize == "onnx-int8-sq")
            if quantize.startswith("onnx-")
            else None
        )
        model: TextClassifier | None = None
        if onnx_path is None:
            model, config, _ = load_artifact(self.artifact_dir)
        else:
            config = load_config(self.artifact_dir, skip_backbone_files=("model.safetensors",))
        # The pooled embedding's width (the taxonomy heads' input), from the backbone's own config:
        # the onnx path has no PyTorch model to ask.
        self.hidden_size = int(json.loads((backbone_dir() / "config.json").read_text("utf-8"))["hidden_size"])
        self.config: ArtifactConfig = config
        self.labels: tuple[str, ...] = tuple(config.labels)  # served categories
        self.outputs: tuple[str, ...] = tuple(config.outputs)  # every network output
        self.serve_idx = np.array([self.outputs.index(config.serving_heads[lbl]) for lbl in self.labels])
        self.version = config.version
        self.temps = np.array([config.temperature.get(o, 1.0) for o in self.outputs], dtype=np.float32)
        self.thresholds = np.array([config.thresholds.get(lbl, 0.5) for lbl in self.labels], dtype=np.float32)
        # Taxonomy heads over the pooled embedding (models.text.heads), when the artifact has them:
        # they extend the served categories at no extra encoder cost.
        # `taxonomy_heads=False` (the encoder's own evaluation) leaves them out, so heads fitted on an
        # earlier encoder do not stop a retrained encoder from being scored before they are refitted.
        self.heads: TaxonomyHeads | None = (
            load_heads(self.artifact_dir, config.version, config.weights.get("sha256")) if taxonomy_heads else None
        )
        head_cats = self.heads.categories if self.heads else ()
        self.served_labels: tuple[str, ...] = self.labels + tuple(head_cats)
        self.served_thresholds = np.concatenate(
            [
                self.thresholds,
                np.array([self.heads.thresholds[c] for c in head_cats] if self.heads else [], dtype=np.float32),
            ]
        )
        self.tokenizer = Tokenizer.from_file(str(backbone_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(config.max_length)
        self.tokenizer.no_padding()
        # Heads that read a long text's further windows (`models.text.heads.window_ids`) tokenise it
        # again without truncation; only texts that filled the first window are re-read.
        self._full_tokenizer: Tokenizer | None = None
        if self.heads is not None and self.heads.needs_windows:
            self._full_tokenizer = Tokenizer.from_file(str(backbone_dir() / "tokenizer.json"))
            self._full_tokenizer.no_truncation()
            self._full_tokenizer.no_padding()
        self._sessions: list[Any] = []
        self._model: torch.nn.Module | None = None
        if num_threads:
            torch.set_num_threads(num_threads)
        if quantize == "fp32":
            self._model = model
        elif quantize == "torch-int8":
            assert model is not None
            self._model = quantize_torch_int8(model)
        else:
            import onnxruntime as ort

            path = onnx_path or export_onnx_int8(
                model, self.artifact_dir, config.max_length, smooth=quantize == "onnx-int8-sq"
            )
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = num_threads or torch.get_num_threads()
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # One session per worker thread: concurrent runs on one session share its thread pool.
            self._sessions = [
                ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                for _ in range(max(1, sessions))
            ]
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
        return self.forward_padded_pooled(ids, mask, worker)[0]

    def forward_padded_pooled(
        self, ids: np.ndarray, mask: np.ndarray, worker: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits, pooled embedding) for one padded batch, from one encoder pass."""
        if self._sessions:
            session = self._sessions[worker % len(self._sessions)]
            logits, pooled = session.run(["logits", "pooled"], {"input_ids": ids, "attention_mask": mask})
            return logits, pooled
        assert self._model is not None
        with torch.inference_mode():
            logits, pooled = self._model.forward_with_pooled(torch.from_numpy(ids), torch.from_numpy(mask))
            return logits.float().numpy(), pooled.float().numpy()

    def outputs_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(logits, pooled) for token sequences in input order, run as length-sorted batches of `max_batch`."""
        out = np.zeros((len(seqs), len(self.outputs)), dtype=np.float32)
        pooled = np.zeros((len(seqs), self.hidden_size), dtype=np.float32)
        if not seqs:
            return out, pooled
        order = np.argsort([len(s) for s in seqs], kind="stable")
        for start in range(0, len(order), self.max_batch):
            idx = order[start : start + self.max_batch]
            ids, mask = self.pad([seqs[i] for i in idx])
            out[idx], pooled[idx] = self.forward_padded_pooled(ids, mask, worker)
        return out, pooled

    def logits_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> np.ndarray:
        """Logits for token sequences in input order, run as length-sorted batches of `max_batch`."""
        return self.outputs_from_ids(seqs, worker)[0]

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits / self.temps))

    def probs_from_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0) -> np.ndarray:
        """Calibrated probabilities of every output (n, len(outputs))."""
        return self.calibrate(self.logits_from_ids(seqs, worker))

    def served_from_ids(
        self, seqs: Sequence[Sequence[int]], worker: int = 0, texts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Calibrated probabilities of the served categories (n, len(served_labels)): the encoder's
        own categories, then the taxonomy heads' (read off the same pass's pooled vector; hybrid heads
        also read `texts`, the model texts of `seqs`, and window heads the further windows of texts
        longer than one window)."""
        logits, pooled = self.outputs_from_ids(seqs, worker)
        base = self.calibrate(logits)[:, self.serve_idx]
        if self.heads is None:
            return base
        if (self.heads.needs_texts or self.heads.needs_windows) and texts is None:
            raise ValueError("these taxonomy heads read the model texts: pass texts with the token ids")
        windows = self.window_means(pooled, seqs, texts, worker) if self.heads.needs_windows else None
        return np.concatenate([base, self.heads.probs(pooled, texts, windows)], axis=1)

    def window_means(
        self, pooled: np.ndarray, seqs: Sequence[Sequence[int]], texts: Sequence[str] | None, worker: int = 0
    ) -> np.ndarray:
        """Mean pooled vector over each text's windows; `pooled` (the first windows') is reused, and only
        texts whose first window is full are tokenised again and get further encoder passes."""
        from models.text.heads import window_ids

        out = pooled.copy()
        long = [i for i, s in enumerate(seqs) if len(s) >= self.config.max_length]
        if not long or texts is None or self._full_tokenizer is None:
            return out
        full = self._full_tokenizer.encode_batch([texts[i] for i in long])
        extra: list[list[int]] = []
        owner: list[int] = []
        for i, enc in zip(long, full, strict=True):
            for w in window_ids(enc.ids, self.config.max_length)[1:]:
                extra.append(w)
                owner.append(i)
        if not extra:
            return out
        _, more = self.outputs_from_ids(extra, worker)
        sums, counts = pooled.copy(), np.ones(len(seqs), dtype=np.float32)
        np.add.at(sums, owner, more)
        np.add.at(counts, owner, 1.0)
        return sums / counts[:, None]

    def probs(self, model_texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities of every output (n, len(outputs)) for model-ready texts."""
        return self.probs_from_ids(self.encode_batch(model_texts))

    def served(self, model_texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities of the served categories (n, len(served_labels)) for model-ready texts."""
        return self.served_from_ids(self.encode_batch(model_texts), texts=model_texts)
