"""Check the NSFW model's `sexual` calibration on the staged benign images; write metrics.json.

    python -m training.image.calibrate_nsfw [--out models/image/artifact/metrics.json]

There are no explicit images to fit a calibration on, and none may be fetched or generated, so
the mapping in `calibration.json` is set by hand, conservatively (MODEL_CARD.md), and this script
measures what can be measured: the false-positive rate at the policy's `sexual` thresholds on the
43 staged benign images, and on eight seeded variants of each (flips, rotation, crop, JPEG 50,
brightness, contrast, greyscale, half size), 387 benign frames in all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.image.nsfw import ARTIFACT_DIR, NSFWEngine
from training.image.benign import benign_image_paths, load_rgb

THRESHOLDS = {"flag": 0.5, "hold_for_review": 0.8, "block": 0.97}  # pipeline/policy.py platform defaults


def variants(rgb: np.ndarray) -> dict[str, np.ndarray]:
    import cv2

    h, w = rgb.shape[:2]
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return {
        "flip": rgb[:, ::-1].copy(),
        "rot90": np.ascontiguousarray(np.rot90(rgb)),
        "crop80": rgb[h // 10 : h - h // 10, w // 10 : w - w // 10].copy(),
        "jpeg50": cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
        "brighter": np.clip(rgb.astype(np.int16) + 40, 0, 255).astype(np.uint8),
        "contrast": np.clip((rgb.astype(np.float32) - 128) * 1.5 + 128, 0, 255).astype(np.uint8),
        "grey": grey,
        "half": cv2.resize(rgb, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA),
    }


def rates(scores: np.ndarray) -> dict[str, float]:
    return {name: round(float((scores >= t).mean()), 4) for name, t in THRESHOLDS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ARTIFACT_DIR / "metrics.json")
    args = ap.parse_args()
    engine = NSFWEngine(backend="onnx")
    paths = benign_image_paths()
    originals = [load_rgb(p) for p in paths]
    probs = engine.probs(originals)
    scores = engine.sexual_scores(probs)
    var_names = [f"{p.name}:{k}" for p, img in zip(paths, originals, strict=True) for k in variants(img)]
    var_frames = [v for img in originals for v in variants(img).values()]
    var_scores = engine.sexual_scores(engine.probs(var_frames))
    flagged = {n: round(float(s), 4) for n, s in zip(var_names, var_scores, strict=True) if s >= THRESHOLDS["flag"]}
    worst = int(scores.argmax())
    metrics = {
        "model": engine.version,
        "benign_images": len(paths),
        "benign_fpr": rates(scores),
        "benign_max_sexual": round(float(scores.max()), 4),
        "benign_max_image": str(paths[worst].relative_to(paths[worst].parents[2])),
        "benign_max_raw": round(float(engine.calibration.raw(probs).max()), 4),
        "benign_variant_frames": len(var_frames),
        "benign_variant_fpr": rates(var_scores),
        "benign_variant_max_sexual": round(float(var_scores.max()), 4),
        "benign_variant_flagged": flagged,
        "top_class_counts": {c: int((probs.argmax(axis=1) == k).sum()) for k, c in enumerate(engine.config["classes"])},
        "thresholds": THRESHOLDS,
    }
    args.out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
