"""The torch port of nsfwjs's MobileNetV2 gives nsfwjs's own class probabilities (within 1e-3).

The fixture installs the pinned `nsfwjs` and `@tensorflow/tfjs` (pure JavaScript, CPU backend)
from npm into a cache folder and runs nsfwjs's public `classify` in Node.js. There is no skip:
without node/npm, or when npm cannot install, the test fails (Makefile `system-deps` installs
nodejs and npm on a fresh machine). Both implementations get the same 224x224 pixels, so the
resize step (which nsfwjs and Heron do differently on purpose) does not count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.image.mobilenet_v2 import CLASSES, NSFWMobileNetV2
from models.image.nsfw import ARTIFACT_DIR, WEIGHTS_FILE, NSFWEngine, resize_224
from training.image.benign import benign_image_paths, load_rgb
from training.image.nsfwjs_npm import ensure_nsfwjs, run_nsfwjs

TOLERANCE = 1e-3

# nsfwjs on tfjs's pure-JS CPU backend takes ~3 s an image on a free core; the test machine is shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def npm_dir() -> Path:
    return ensure_nsfwjs()  # raises (fails the test) when npm is missing or the install fails


@pytest.fixture(scope="module")
def pixels() -> tuple[list[str], np.ndarray]:
    paths = benign_image_paths()
    assert len(paths) >= 40, f"expected the staged benign images, found {len(paths)}"
    return [p.name for p in paths], np.stack([resize_224(load_rgb(p)) for p in paths])


@pytest.fixture(scope="module")
def reference(npm_dir: Path, pixels: tuple[list[str], np.ndarray]) -> np.ndarray:
    return run_nsfwjs(pixels[1], npm_dir)


def test_nsfwjs_runs_and_sums_to_one(reference: np.ndarray, pixels: tuple[list[str], np.ndarray]) -> None:
    assert reference.shape == (len(pixels[0]), len(CLASSES))
    np.testing.assert_allclose(reference.sum(axis=1), 1.0, atol=1e-4)


def test_torch_port_matches_nsfwjs(reference: np.ndarray, pixels: tuple[list[str], np.ndarray]) -> None:
    """The unfused port (the converted weights as they are) and the serving engine (BN folded),
    on torch and on ONNX Runtime."""
    names, px = pixels
    model = NSFWMobileNetV2().eval()
    model.load_state_dict(load_file(str(ARTIFACT_DIR / WEIGHTS_FILE)), strict=False)
    with torch.inference_mode():
        ported = model(torch.from_numpy(px.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)).numpy()
    # 7: batches that do not divide the set evenly
    served = {b: NSFWEngine(backend=b, max_batch=7).forward_224(px) for b in ("torch", "onnx")}
    for label, got in (("port", ported), ("engine torch", served["torch"]), ("engine onnx", served["onnx"])):
        diff = np.abs(got - reference)
        worst = np.unravel_index(diff.argmax(), diff.shape)
        print(
            f"{label}: max abs diff {diff.max():.3g} over {len(names)} images "
            f"(worst {names[worst[0]]} {CLASSES[worst[1]]})"
        )
        assert diff.max() < TOLERANCE, f"{label}: {names[worst[0]]} {CLASSES[worst[1]]} differs by {diff.max()}"
    # the images are not all one class: the comparison covers more than a constant output
    assert len(set(reference.argmax(axis=1))) >= 2
