"""int8 at rest: how the text artifact's tuned tensors are stored, and how they come back.

Why: the tuned encoder layers stored fp16 made `text_model.safetensors` 21.3 MB, over the project's
15 MB cap on any committed file. Every weight matrix (Linear weights, and the word-embedding
matrix when it is tuned) is now stored as symmetric int8 with one fp32 scale per output channel
(per row): `w ≈ q * scale[:, None]`, `q = round(w / scale)` in [-127, 127], `scale = max|w_row| / 127`.
Per-row scales keep a channel with small weights from being flattened by a neighbour with large
ones (one scale per tensor moved OLID logits several times more in the ONNX int8 measurements,
`models.text.quantize`). Vectors (biases, LayerNorm) and the head are a few KB and stay fp32, so
nothing that sets the logits' scale directly is rounded.

The file stays a plain safetensors file (no pickle): the int8 matrix keeps its parameter name and
its scales sit beside it under `<name>` + `SCALE_SUFFIX`. The file's metadata names the format;
`config.json` records the file's sha256, checked at load, so weights and the calibration fitted
on them cannot drift apart unnoticed. Dequantisation happens once at load; every forward path
(fp32, torch-int8, onnx-int8, onnx-int8-sq) starts from the same dequantised fp32 model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

INT8_FORMAT = "int8-per-channel-sym-v1"
FP16_FORMAT = "fp16-v1"  # the format before int8 (artifacts without `weights_format` metadata)
WEIGHT_FORMATS = (INT8_FORMAT, FP16_FORMAT)
SCALE_SUFFIX = ".__int8_scale"
# A 2-D float tensor with at least this many values is a weight matrix worth int8; the head
# (n_outputs x 384) is smaller than one encoder row block and stays fp32.
MIN_INT8_NUMEL = 32 * 1024
QMAX = 127


def _is_matrix(name: str, t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dim() == 2 and t.numel() >= MIN_INT8_NUMEL and not name.startswith("head.")


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q int8 [rows, cols], scale fp32 [rows]); an all-zero row gets scale 1."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scale[:, None]), -QMAX, QMAX).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


def encode(tensors: Mapping[str, torch.Tensor], fmt: str = INT8_FORMAT) -> dict[str, torch.Tensor]:
    """The tensors as stored in `fmt`: int8 matrices + fp32 scales + fp32 rest, or fp16 (the old format)."""
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"weights format must be one of {WEIGHT_FORMATS}, got {fmt!r}")
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if fmt == FP16_FORMAT:
            out[name] = t.to(torch.float16) if t.is_floating_point() and not name.startswith("head.") else t
        elif _is_matrix(name, t):
            out[name], out[name + SCALE_SUFFIX] = quantize_rows(t)
        else:
            out[name] = t.float() if t.is_floating_point() else t
    return out


def decode(stored: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 tensors back from `encode`'s output (either format)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = stored.get(name + SCALE_SUFFIX)
        if scale is not None:
            if t.dtype != torch.int8 or scale.shape != (t.shape[0],):
                raise ValueError(f"{name}: int8 matrix {tuple(t.shape)} {t.dtype} with scales {tuple(scale.shape)}")
            out[name] = dequantize_rows(t, scale)
        else:
            out[name] = t.float() if t.is_floating_point() else t
    orphans = [n for n in stored if n.endswith(SCALE_SUFFIX) and n[: -len(SCALE_SUFFIX)] not in stored]
    if orphans:
        raise ValueError(f"int8 scales without their matrix: {orphans[:3]}")
    return out


def roundtrip_(params: Iterable[tuple[str, torch.nn.Parameter | torch.Tensor]], fmt: str = INT8_FORMAT) -> None:
    """Replace each tensor in place by what storing it in `fmt` and loading it back gives.

    Training calls this before calibrating, so temperatures and thresholds are fitted on the
    weights the artifact will hold, not on the unrounded ones."""
    with torch.no_grad():
        for name, p in params:
            back = decode(encode({name: p}, fmt))[name]
            p.copy_(back.to(p.dtype))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(tensors: Mapping[str, torch.Tensor], path: Path, version: str, fmt: str = INT8_FORMAT) -> str:
    """Write `tensors` in `fmt` to `path`; returns the file's sha256 (for config.json)."""
    save_file(
        encode(tensors, fmt), str(path), metadata={"format": "heron-text", "version": version, "weights_format": fmt}
    )
    return sha256_file(path)


def file_format(path: Path) -> str:
    """The weights format named in the file's metadata (files from before int8 say nothing: fp16)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    fmt = meta.get("weights_format", FP16_FORMAT)
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"{path}: unknown weights format {fmt!r} (this code reads {WEIGHT_FORMATS})")
    return fmt


def load(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """fp32 tensors from a weights file, after checking its sha256 against config.json's record."""
    if expected_sha256:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ValueError(
                f"{path} has sha256 {actual[:16]}…, config.json expects {expected_sha256[:16]}…: the "
                "weights and their calibration do not belong together; retrain or re-convert the artifact"
            )
    file_format(path)
    from safetensors.torch import load_file

    return decode(load_file(str(path)))
