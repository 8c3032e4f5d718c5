"""PDQ hash banks and image intake: index lookups and memory, decode and PDQ throughput.

    python bench/bench_pdq.py [--sizes 100000,1000000] [--queries 2000] [--seconds 3]

In one run and one process:
- **Index**: `PDQIndex` (multi-index hashing over 16 chunks of 16 bits) against the naive
  baseline (numpy popcount over every hash), on banks of random hashes, each query within 0-31
  bits of a banked hash or random. Lookups/s per single hash (a message image costs 8: its
  dihedral variants), index build time, the index's own bytes and the process's RSS growth.
- **Images**: the staged photos (images_public_domain + images_pdq_testset) as in-memory files,
  decoded with `decode_bytes` (header checks + OpenCV) against a naive Pillow decode, and hashed
  with `hash_dihedral` (shrink to 512 px, 8 dihedral hashes from one pass) against a naive
  per-image `pdqhash.compute` on the full-size frame (1 hash). Images/s, single thread.

Writes bench/results/pdq.json and prints the table.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from pipeline.images.decode import DecodeLimits, decode_bytes
from pipeline.images.pdq import MATCH_THRESHOLD, PDQIndex, distances, hash_dihedral

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
OUT = ROOT / "bench" / "results" / "pdq.json"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def random_bank(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def queries(bank: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Half near a banked hash (0-31 bits flipped), half random."""
    out = []
    for i in range(k):
        if i % 2:
            out.append(rng.integers(0, 2**64 - 1, size=4, dtype=np.uint64, endpoint=True))
            continue
        q = bank[rng.integers(len(bank))].copy()
        for bit in rng.choice(256, size=int(rng.integers(0, MATCH_THRESHOLD + 1)), replace=False):
            q[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
        out.append(q)
    return out


def timed(fn, items, seconds: float) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Items per second over at least one pass and at most `seconds`."""
    n = 0
    started = time.perf_counter()
    while True:
        for it in items:
            fn(it)
            n += 1
            if time.perf_counter() - started > seconds and n >= len(items):
                return n / (time.perf_counter() - started), n
        if time.perf_counter() - started > seconds:
            return n / (time.perf_counter() - started), n


def bench_index(sizes: list[int], k: int, seconds: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(20261203)
    rows = []
    for n in sizes:
        gc.collect()
        bank = random_bank(n, rng)
        qs = queries(bank, k, rng)
        before = rss_bytes()
        t0 = time.perf_counter()
        index = PDQIndex(bank)
        build_s = time.perf_counter() - t0
        grew = rss_bytes() - before
        # correctness on the way: the index finds what brute force finds
        for q in qs[:50]:
            truth = set(np.nonzero(distances(bank, q) <= MATCH_THRESHOLD)[0].tolist())
            assert {h.row for h in index.search(q)} == truth
        mih, _ = timed(index.search, qs, seconds)
        brute, _ = timed(lambda q: np.nonzero(distances(bank, q) <= MATCH_THRESHOLD)[0], qs[: max(20, k // 20)], seconds)
        rows.append({
            "hashes": n, "lookups_per_s": round(mih, 1), "baseline_bruteforce_lookups_per_s": round(brute, 1),
            "speedup": round(mih / brute, 1), "images_per_s_8_dihedral": round(mih / 8, 1),
            "build_s": round(build_s, 2), "index_mb": round(index.nbytes / 1e6, 1),
            "hashes_mb": round(bank.nbytes / 1e6, 1), "rss_growth_mb": round(grew / 1e6, 1),
        })
        del index, bank
    return rows


def staged_images() -> list[tuple[str, bytes]]:
    paths = sorted((DATA / "images_public_domain").glob("*.[pj][np]g"))
    paths += sorted((DATA / "images_pdq_testset").rglob("*.jpg")) + sorted((DATA / "images_pdq_testset").rglob("*.png"))
    return [(p.name, p.read_bytes()) for p in paths]


def bench_images(seconds: float) -> dict[str, object]:
    import pdqhash
    from PIL import Image

    files = staged_images()
    limits = DecodeLimits()
    datas = [d for _, d in files]
    ours_decode, _ = timed(lambda d: decode_bytes(d, limits), datas, seconds)
    naive_decode, _ = timed(lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")), datas, seconds)
    frames = [decode_bytes(d, limits).frames[0] for d in datas]
    ours_pdq, _ = timed(hash_dihedral, frames, seconds)
    naive_pdq, _ = timed(pdqhash.compute, frames, seconds)
    ours_both, _ = timed(lambda d: hash_dihedral(decode_bytes(d, limits).frames[0]), datas, seconds)
    naive_both, _ = timed(lambda d: pdqhash.compute(np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))), datas,
                          seconds)
    pixels = [f.shape[0] * f.shape[1] for f in frames]
    return {
        "images": len(files), "median_megapixels": round(float(np.median(pixels)) / 1e6, 3),
        "max_megapixels": round(max(pixels) / 1e6, 3),
        "decode_images_per_s": round(ours_decode, 1), "baseline_pillow_decode_images_per_s": round(naive_decode, 1),
        "pdq_8_dihedral_images_per_s": round(ours_pdq, 1),
        "baseline_pdq_full_size_1_hash_images_per_s": round(naive_pdq, 1),
        "decode_plus_pdq_images_per_s": round(ours_both, 1),
        "baseline_decode_plus_pdq_images_per_s": round(naive_both, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "cv2": cv2.__version__},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "index": bench_index([int(s) for s in args.sizes.split(",")], args.queries, args.seconds),
        "images": bench_images(args.seconds),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["index"]:  # type: ignore[union-attr]
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    print(" ".join(f"{k}={v}" for k, v in result["images"].items()))  # type: ignore[union-attr]
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
