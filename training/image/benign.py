"""The staged benign images (../shared/data/images_public_domain and images_pdq_testset), read in place.

They are the only images the NSFW port is checked and calibrated on: all benign (photos,
textures, a portrait, a cat, a retina scan, a bridge and its edits). No explicit image is ever
fetched, generated or committed; see models/image/artifact/MODEL_CARD.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.settings import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BENIGN_DIRS = ("images_public_domain", "images_pdq_testset")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}


def benign_image_paths(data_dir: Path = SHARED_DATA) -> list[Path]:
    """Every staged benign image, sorted; raises when the data sets are not there."""
    paths: list[Path] = []
    for name in BENIGN_DIRS:
        folder = data_dir / name
        if not folder.is_dir():
            raise FileNotFoundError(f"staged image set missing: {folder}")
        paths += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(paths)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, decoded as the image pipeline's contract promises (OpenCV, BGR->RGB)."""
    import cv2

    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
