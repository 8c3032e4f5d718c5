"""The npm side of the nsfwjs port: install the pinned packages into a cache folder, dump the
bundled TensorFlow.js model, and run nsfwjs itself in Node.js as the reference.

Used by the converter (training/image/convert_nsfwjs.py) and by the parity test
(tests/unit/test_images_nsfw_parity.py); nothing here runs in serving. The packages are pure
JavaScript (`@tensorflow/tfjs` with its CPU backend, not the native `tfjs-node` build), so a
fresh machine needs only `node` and `npm` (Makefile `system-deps`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# Pinned: the converted weights and the parity test are tied to these exact versions.
NSFWJS_VERSION = "4.4.0"
TFJS_VERSION = "4.22.0"
BUFFER_VERSION = "6.0.3"  # a peer dependency of nsfwjs
PACKAGES = (f"nsfwjs@{NSFWJS_VERSION}", f"@tensorflow/tfjs@{TFJS_VERSION}", f"buffer@{BUFFER_VERSION}")
MODEL_SUBDIR = Path("node_modules/nsfwjs/dist/models/mobilenet_v2")
HERE = Path(__file__).resolve().parent


def default_npm_dir() -> Path:
    """Where the packages go: $HERON_NPM_DIR, else ~/.cache/heron/nsfwjs-<version> (never the repo)."""
    explicit = os.environ.get("HERON_NPM_DIR")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "heron" / f"nsfwjs-{NSFWJS_VERSION}"


def ensure_nsfwjs(npm_dir: Path | None = None) -> Path:
    """Install the pinned nsfwjs + tfjs into `npm_dir` unless already there; returns the folder.

    Raises (CalledProcessError, FileNotFoundError) when npm is missing or the install fails: the
    parity test must fail then, not skip."""
    npm_dir = Path(npm_dir or default_npm_dir())
    marker = npm_dir / ".heron-installed"
    if marker.exists() and marker.read_text() == " ".join(PACKAGES):
        return npm_dir
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed (make system-deps installs nodejs and npm)")
    npm_dir.mkdir(parents=True, exist_ok=True)
    (npm_dir / "package.json").write_text(json.dumps({"name": "heron-nsfwjs-reference", "private": True}))
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(npm_dir), *PACKAGES],
        check=True,
        cwd=npm_dir,
        timeout=600,
    )
    marker.write_text(" ".join(PACKAGES))
    return npm_dir


def dump_tfjs_model(npm_dir: Path, out_dir: Path) -> Path:
    """Write the bundled MobileNetV2 as a plain tfjs layers model (model.json + binary shards),
    with training/image/nsfwjs_dump.cjs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["node", str(HERE / "nsfwjs_dump.cjs"), str(npm_dir / MODEL_SUBDIR), str(out_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out_dir / "model.json"


def run_nsfwjs(pixels: np.ndarray, npm_dir: Path | None = None, timeout_s: float = 3000) -> np.ndarray:
    """Class probabilities from nsfwjs itself (`classify`, CPU backend) for uint8 images
    of shape (N, 224, 224, 3); returns (N, 5) float64 in nsfwjs's class order.

    The images are already 224x224, so nsfwjs only divides by 255 (its resize step is skipped)."""
    npm_dir = ensure_nsfwjs(npm_dir)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (224, 224, 3):
        raise ValueError(f"expected uint8 (N, 224, 224, 3), got {pixels.dtype} {pixels.shape}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pixels.u8"
        raw.write_bytes(np.ascontiguousarray(pixels).tobytes())
        proc = subprocess.run(
            ["node", str(HERE / "nsfwjs_reference.cjs"), str(npm_dir), str(raw), str(len(pixels))],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return np.asarray(rows, dtype=np.float64)
