"""NSFW image classifier engine: nsfwjs's MobileNetV2 ported to torch, batched over frames.

`NSFWEngine.probs(frames)` takes any number of RGB uint8 frames (any sizes), resizes each to
224x224, and runs them through the network in chunks of `max_batch`: the batch dimension is the
only thing that varies, so the work is length-agnostic (no padding). `sexual_scores` maps the five
class probabilities to the taxonomy's `sexual` category with the calibration in
`artifact/calibration.json` (see MODEL_CARD.md for how it was chosen without explicit images).

Preprocessing follows nsfwjs (uint8 / 255, no mean subtraction); the resize differs on purpose:
nsfwjs resizes with bilinear `alignCorners=true`, which aliases badly when shrinking a large
photo to 224; OpenCV's area interpolation averages the pixels a target pixel covers instead.
The parity test feeds both implementations the same 224x224 pixels, so it checks the network,
not the resize.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.image.mobilenet_v2 import CLASSES, INPUT_SIZE

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
WEIGHTS_FILE = "nsfw_mobilenet_v2.safetensors"
BACKENDS = ("torch", "onnx")


def to_rgb_uint8(frame: Any) -> np.ndarray:
    """A frame as (H, W, 3) uint8 RGB: grey is repeated, an alpha channel dropped (the decoding
    extractor promises RGB; this keeps a stray grey or RGBA frame from failing the batch)."""
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise ValueError(f"frame dtype {a.dtype}, expected uint8")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"frame shape {a.shape}, expected (H, W, 3)")
    return a


def resize_224(frame: Any) -> np.ndarray:
    """(224, 224, 3) uint8: area interpolation when shrinking, bilinear when enlarging."""
    import cv2

    a = to_rgb_uint8(frame)
    h, w = a.shape[:2]
    if (h, w) == (INPUT_SIZE, INPUT_SIZE):
        return np.ascontiguousarray(a)
    shrink = h * w >= INPUT_SIZE * INPUT_SIZE
    return cv2.resize(a, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Calibration:
    """raw = porn + hentai + sexy_weight * sexy, then a monotone piecewise-linear map whose knots
    put the policy's default `sexual` thresholds (0.5 flag, 0.8 hold, 0.97 block) at raw values
    chosen conservatively (MODEL_CARD.md)."""

    sexy_weight: float
    raw_knots: tuple[float, ...]
    score_knots: tuple[float, ...]
    version: str

    @classmethod
    def load(cls, path: Path) -> Calibration:
        c = json.loads(path.read_text())
        cal = cls(float(c["sexy_weight"]), tuple(c["raw_knots"]), tuple(c["score_knots"]), str(c["version"]))
        if len(cal.raw_knots) != len(cal.score_knots) or list(cal.raw_knots) != sorted(cal.raw_knots):
            raise ValueError(f"{path}: knots must be increasing and of equal length")
        return cal

    def raw(self, probs: np.ndarray) -> np.ndarray:
        i = {c: k for k, c in enumerate(CLASSES)}
        return probs[:, i["porn"]] + probs[:, i["hentai"]] + self.sexy_weight * probs[:, i["sexy"]]

    def score(self, probs: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(self.raw(probs), self.raw_knots, self.score_knots), 0.0, 1.0)


class NSFWEngine:
    """Thread-safe batched inference; `backend` torch (BN folded into the convolutions) or onnx."""

    def __init__(
        self,
        artifact_dir: Path | str | None = None,
        backend: str = "torch",
        max_batch: int = 16,
        num_threads: int | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        """`cache_dir`: where the exported ONNX graph is kept (default: the temp folder)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        import torch
        from safetensors.torch import load_file

        from models.image.mobilenet_v2 import NSFWMobileNetV2, fuse_batchnorm

        self.artifact_dir = Path(artifact_dir or ARTIFACT_DIR)
        self.config = json.loads((self.artifact_dir / "config.json").read_text())
        self.calibration = Calibration.load(self.artifact_dir / "calibration.json")
        self.version = f"{self.config['version']}+{self.calibration.version}+{backend}"
        self.backend = backend
        self.max_batch = max(1, max_batch)
        if num_threads:
            torch.set_num_threads(num_threads)  # process-wide, as the text engine does
        model = NSFWMobileNetV2()
        state = load_file(str(self.artifact_dir / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith("num_batches_tracked")]:
            raise ValueError(f"{self.artifact_dir}: weights do not fit the model ({missing}, {unexpected})")
        self.model = fuse_batchnorm(model.eval())
        self._session: Any = None
        self._lock = threading.Lock()  # ORT sessions are thread-safe; this only guards lazy export
        if backend == "onnx":
            self._session = self._onnx_session(num_threads, cache_dir)

    def _onnx_session(self, num_threads: int | None, cache_dir: Path | str | None) -> Any:
        """The BN-folded model exported once per weights file (keyed by its sha256) and run by ONNX
        Runtime; the export is written to a temporary name and renamed, so processes starting
        together never read a half-written graph."""
        import hashlib
        import tempfile

        import onnxruntime as ort
        import torch

        digest = hashlib.sha256((self.artifact_dir / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"heron-nsfw-{digest}-fused.onnx"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
            torch.onnx.export(
                self.model,
                (dummy,),
                str(tmp),
                input_names=["pixels"],
                output_names=["probs"],
                dynamic_axes={"pixels": {0: "n"}, "probs": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
            tmp.replace(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward_224(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (N, 5) for uint8 (N, 224, 224, 3) pixels, in chunks of `max_batch`."""
        import torch

        out = []
        for start in range(0, len(pixels), self.max_batch):
            chunk = pixels[start : start + self.max_batch]
            x = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
            if self._session is not None:
                out.append(self._session.run(None, {"pixels": x})[0])
            else:
                with torch.inference_mode():
                    out.append(self.model(torch.from_numpy(x)).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(CLASSES)))

    def probs(self, frames: Sequence[Any]) -> np.ndarray:
        """Class probabilities (N, 5) for RGB uint8 frames of any size."""
        if not frames:
            return np.zeros((0, len(CLASSES)))
        return self.forward_224(np.stack([resize_224(f) for f in frames]))

    def sexual_scores(self, probs: np.ndarray) -> np.ndarray:
        return self.calibration.score(probs)
