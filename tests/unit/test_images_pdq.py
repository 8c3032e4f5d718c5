"""PDQ conformance against Meta's published hashes, and the multi-index against brute force."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.images.pdq import (
    BRUTE_FORCE_BELOW,
    DIHEDRAL,
    MATCH_THRESHOLD,
    PDQIndex,
    distance,
    distances,
    hash_dihedral,
    hash_frame,
    to_words,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "images_pdq_testset"
if not DATA.exists():  # the worktree layout: /work/wt-x next to /work/shared
    DATA = Path("/work/shared/data/images_pdq_testset")


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


PY_CSV = DATA / "expected_pdq_hashes_python_impl_README.csv"
CPP_CSV = DATA / "expected_pdq_hashes_cpp_impl_README.csv"


def _published() -> list[tuple[str, str]]:
    rows = [(r["file"], r["pdq_hex"]) for r in csv.DictReader(open(PY_CSV))]
    rows += [(r["local_path"], r["pdq_hex"]) for r in csv.DictReader(open(CPP_CSV))]
    return rows


@pytest.mark.parametrize(("path", "expected"), _published())
def test_published_hashes_reproduced_within_10_bits(path: str, expected: str) -> None:
    got, quality = hash_frame(_rgb(DATA / path))
    assert quality >= 80
    assert distance(got, expected) <= 10, f"{path}: {distance(got, expected)} bits from the published hash"


def test_dihedral_variants_find_the_rotated_and_flipped_files() -> None:
    """The 8 dihedral hashes of the original match the published hashes of the 8 rotated/flipped
    files (whose plain hashes are 96-128 bits from the original's)."""
    rows = {r["local_path"]: r["pdq_hex"] for r in csv.DictReader(open(CPP_CSV))}
    hashes, _ = hash_dihedral(_rgb(DATA / "reg-test-input/dih/bridge-1-original.jpg"))
    names = sorted(rows)
    for name in names:
        best = min(distance(h, rows[name]) for h in hashes)
        assert best <= 10, f"{name}: nearest dihedral hash {best} bits away"
    assert min(distance(hashes[0], rows[n]) for n in names[1:]) > MATCH_THRESHOLD  # the plain hash alone misses


@pytest.mark.parametrize(
    ("variant", "transform"),
    [
        ("rotate90_ccw", lambda a: np.rot90(a, 1)),
        ("rotate180", lambda a: np.rot90(a, 2)),
        ("rotate90_cw", lambda a: np.rot90(a, -1)),
        ("flip_top_bottom", lambda a: a[::-1]),
        ("flip_left_right", lambda a: a[:, ::-1]),
        ("transpose", lambda a: a.transpose(1, 0, 2)),
        ("antitranspose", lambda a: np.rot90(a, 2).transpose(1, 0, 2)),
    ],
)
def test_dihedral_names_say_which_transform_each_hash_is(variant: str, transform: Any) -> None:
    img = _rgb(Path("/work/shared/data/images_public_domain/chelsea.png"))
    hashes, _ = hash_dihedral(img)
    transformed, _ = hash_frame(np.ascontiguousarray(transform(img)))
    nearest = min(range(8), key=lambda k: distance(hashes[k], transformed))
    assert DIHEDRAL[nearest] == variant and distance(hashes[nearest], transformed) <= 10


def test_featureless_image_has_low_quality() -> None:
    _, quality = hash_frame(np.zeros((64, 64, 3), dtype=np.uint8))
    assert quality < 50


@pytest.mark.parametrize("n", [500, BRUTE_FORCE_BELOW + 5000])
def test_index_finds_exactly_what_brute_force_finds(n: int) -> None:
    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)
    index = PDQIndex(words)
    assert bool(index._order.size) == (n >= BRUTE_FORCE_BELOW)
    for trial in range(40):
        base = words[rng.integers(n)].copy()
        flips = rng.choice(256, size=int(rng.integers(0, 40)), replace=False)
        q = base.copy()
        for bit in flips:
            q[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
        truth = sorted(np.nonzero(distances(words, q) <= MATCH_THRESHOLD)[0].tolist())
        got = sorted(h.row for h in index.search(q))
        assert got == truth, f"trial {trial}: {len(flips)} bits flipped"


def test_hex_and_words_agree() -> None:
    h = "d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"
    other = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"
    assert int(distances(to_words([h]), to_words([other])[0])[0]) == distance(h, other)
