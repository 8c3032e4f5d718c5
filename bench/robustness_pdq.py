"""PDQ robustness on the staged images: match rate per transform and false matches (seeded).

    python bench/robustness_pdq.py [--seed 18]

Originals: every distinct picture in images_pdq_testset (the bridge photo once, its staged
variants being copies of it; `small.jpg` is all black and is reported as gated by quality) and
images_public_domain. Each original is banked (its PDQ hash); each transform of it is posted and
matched as `image_hash` does (8 dihedral hashes, distance <= 31, quality >= 50). False matches:
every posted image (original and transformed) against the banked hashes of every *other*
original. Writes bench/results/pdq_robustness.json and prints a markdown table for docs/images.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipeline.images.pdq import MATCH_THRESHOLD, MIN_QUALITY, distance, hash_dihedral, hash_frame

DATA = Path("/work/shared/data")
OUT = Path(__file__).resolve().parent / "results" / "pdq_robustness.json"


def originals() -> list[tuple[str, np.ndarray]]:
    t = DATA / "images_pdq_testset"
    paths = [t / "bridge-mods/aaa-orig.jpg", t / "reg-test-input/pen-and-coaster.png", t / "misc-images/wee.jpg",
             t / "misc-images/small.jpg"]
    paths += sorted((t / "reg-test-input/labelme-subset").glob("*.jpg"))
    paths += sorted((DATA / "images_public_domain").glob("*.[pj][np]g"))
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        out.append((p.name, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    return out


def jpeg(q: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(img: np.ndarray, _: np.random.Generator) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return f


def resize(s: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(img: np.ndarray, _: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
    return f


def crop(frac: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Remove `frac` of the width and of the height, split between the edges at random."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        dh, dw = int(h * frac), int(w * frac)
        top, left = int(rng.integers(0, dh + 1)), int(rng.integers(0, dw + 1))
        return img[top : h - (dh - top), left : w - (dw - left)]
    return f


def pad(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    b = int(0.1 * max(h, w))
    colour = [int(c) for c in rng.integers(0, 256, 3)]
    return cv2.copyMakeBorder(img, b, b, b, b, cv2.BORDER_CONSTANT, value=colour)


def text(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.copy()
    h, w = out.shape[:2]
    scale = max(0.4, w / 400)
    y = int(rng.integers(h // 5, h - h // 10))
    cv2.putText(out, "FREE NITRO >> discord-gift.example", (int(w * 0.03), y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)
    return out


def brightness(img: np.ndarray, _: np.random.Generator) -> np.ndarray:
    return np.clip(img.astype(np.int16) + 40, 0, 255).astype(np.uint8)


def contrast(img: np.ndarray, _: np.random.Generator) -> np.ndarray:
    return np.clip((img.astype(np.float32) - 128) * 1.4 + 128, 0, 255).astype(np.uint8)


def rotate_small(deg: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(img: np.ndarray, _: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return f


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "identity": lambda a, _: a,
    "jpeg_q90": jpeg(90), "jpeg_q70": jpeg(70), "jpeg_q50": jpeg(50),
    "resize_50": resize(0.5), "resize_25": resize(0.25),
    "resize_50+jpeg_q70": lambda a, r: jpeg(70)(resize(0.5)(a, r), r),
    "crop_5": crop(0.05), "crop_10": crop(0.10), "crop_20": crop(0.20),
    "pad_10": pad, "text_overlay": text, "brightness_+40": brightness, "contrast_x1.4": contrast,
    "rotate_90": lambda a, _: np.rot90(a, 1), "rotate_180": lambda a, _: np.rot90(a, 2),
    "rotate_270": lambda a, _: np.rot90(a, -1),
    "flip_left_right": lambda a, _: a[:, ::-1], "flip_top_bottom": lambda a, _: a[::-1],
    "rotate_5deg": rotate_small(5), "rotate_15deg": rotate_small(15),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    imgs = originals()
    banked = {name: hash_frame(img) for name, img in imgs}
    usable = [n for n, (_, q) in banked.items() if q >= MIN_QUALITY]
    gated = [f"{n} (quality {q})" for n, (_, q) in banked.items() if q < MIN_QUALITY]
    rows = []
    false_matches = []
    queries_total = 0
    for tname, fn in TRANSFORMS.items():
        matched = plain = lowq = 0
        dists = []
        for name, img in imgs:
            if name not in usable:
                continue
            posted = np.ascontiguousarray(fn(img, rng))
            hashes, q = hash_dihedral(posted)
            if q < MIN_QUALITY:
                lowq += 1
                continue
            best = min(distance(h, banked[name][0]) for h in hashes)
            dists.append(best)
            matched += best <= MATCH_THRESHOLD
            plain += distance(hashes[0], banked[name][0]) <= MATCH_THRESHOLD
            for other in usable:
                if other == name:
                    continue
                queries_total += 1
                d = min(distance(h, banked[other][0]) for h in hashes)
                if d <= MATCH_THRESHOLD:
                    false_matches.append({"posted": f"{name}:{tname}", "bank": other, "distance": d})
        n = len(usable)
        rows.append({"transform": tname, "images": n, "matched": matched, "match_rate": round(matched / n, 3),
                     "matched_without_dihedral": plain, "gated_low_quality": lowq,
                     "median_distance": float(np.median(dists)) if dists else None, "max_distance": max(dists)})
    result = {"seed": args.seed, "threshold": MATCH_THRESHOLD, "min_quality": MIN_QUALITY, "originals": len(imgs),
              "usable_originals": len(usable), "gated_originals": gated, "transforms": rows,
              "false_match_pairs_checked": queries_total, "false_matches": false_matches}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"seed {args.seed}; {len(usable)} originals banked ({len(imgs)} staged, gated: {', '.join(gated) or 'none'})")
    print("| transform | matched | match rate | without dihedral | median / max distance |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['transform']} | {r['matched']}/{r['images']} | {r['match_rate']:.0%} | "
              f"{r['matched_without_dihedral']}/{r['images']} | {r['median_distance']:.0f} / {r['max_distance']} |")
    print(f"false matches: {len(false_matches)} of {queries_total} (posted image, unrelated banked image) pairs")
    for fm in false_matches:
        print(f"  {fm}")


if __name__ == "__main__":
    main()
