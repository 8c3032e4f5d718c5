"""PDQ perceptual hashes (Meta's `pdqhash` bindings) and an index for matching them at scale.

Hashing: frames larger than 512 px are first shrunk to fit 512x512 with OpenCV's area filter,
keeping the aspect ratio, as the reference tools do before hashing. Measured on the staged
reference set (tests/unit/test_images_pdq.py): without it, hashes of large photos drift up to 16
bits from the published C++ and Python ones; with it, at most 10. A hash is 256 bits, kept as
64 hex characters (HMA's and ThreatExchange's format) or 4 big-endian uint64 words.

The 8 dihedral variants (rotations and flips) are hashed from the same luminance in one call;
matching a bank against all 8 finds a rotated or mirrored repost, which a single hash misses
(96-128 bits apart, as far as unrelated images).

Index: multi-index hashing over 16 chunks of 16 bits. Two hashes within distance 31 differ in at
most 1 bit in at least one chunk (16 chunks x 2 bits = 32 > 31, pigeonhole), so probing each
chunk's sorted column for the query chunk and its 16 one-bit neighbours finds every candidate;
candidates are then checked exactly with popcount. Below `BRUTE_FORCE_BELOW` hashes a plain
numpy popcount over all of them is faster. See bench/bench_pdq.py for the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pdqhash

MATCH_THRESHOLD = 31  # the PDQ authors' recommended Hamming distance
MIN_QUALITY = 50  # hashes below this quality (flat, featureless images) are not used for matching
HASH_SIDE = 512
# What each of pdqhash.compute_dihedral's 8 hashes is the hash of: the image as posted, rotated 90
# degrees counter-clockwise, 180, 90 clockwise, flipped top-bottom, flipped left-right, transposed
# (mirrored about the main diagonal), anti-transposed. Checked against hash_frame of the
# transformed image in tests/unit/test_images_pdq.py. A match on variant v means: the posted
# image, transformed by v, is the banked one.
DIHEDRAL = ("original", "rotate90_ccw", "rotate180", "rotate90_cw", "flip_top_bottom", "flip_left_right",
            "transpose", "antitranspose")
BRUTE_FORCE_BELOW = 20_000
_BITS = 1 << np.arange(7, -1, -1, dtype=np.uint8)


def prepare(frame: np.ndarray) -> np.ndarray:
    """The RGB frame shrunk to fit 512x512 (area filter) when larger, contiguous."""
    h, w = frame.shape[:2]
    if max(h, w) > HASH_SIDE:
        s = HASH_SIDE / max(h, w)
        frame = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame)


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def hash_frame(frame: np.ndarray) -> tuple[str, int]:
    """(64-hex PDQ hash, quality 0-100) of one RGB frame."""
    bits, quality = pdqhash.compute(prepare(frame))
    return _pack(bits).hex(), int(quality)


def hash_dihedral(frame: np.ndarray) -> tuple[list[str], int]:
    """The 8 dihedral hashes (in `DIHEDRAL` order) and the quality, from one luminance pass."""
    hashes, quality = pdqhash.compute_dihedral(prepare(frame))
    return [_pack(h).hex() for h in hashes], int(quality)


def is_hex_hash(value: str) -> bool:
    if len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def to_words(hex_hashes: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, 4) uint64 words, big-endian, from hex hashes."""
    if not hex_hashes:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = bytes.fromhex("".join(hex_hashes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def distance(a: str, b: str) -> int:
    return int.from_bytes(bytes.fromhex(a), "big").__xor__(int.from_bytes(bytes.fromhex(b), "big")).bit_count()


def distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances from one query (4 words) to each row of `words`."""
    return np.bitwise_count(words ^ query).sum(axis=1, dtype=np.int32)


@dataclass(frozen=True, slots=True)
class Hit:
    row: int
    distance: int


class PDQIndex:
    """Exact radius search (distance <= threshold, at most 31) over a fixed set of hashes."""

    CHUNKS = 16

    def __init__(self, words: np.ndarray) -> None:
        self.words = np.ascontiguousarray(words, dtype=np.uint64).reshape(-1, 4)
        self.size = len(self.words)
        # Per chunk: row ids sorted by the chunk's value (one (16, N) int32 array) and, for each of
        # the 65,536 values, where its run starts in that order (CSR offsets, (16, 65537) int32).
        self._order = np.zeros((0, 0), dtype=np.int32)
        self._starts = np.zeros((0, 0), dtype=np.int32)
        if self.size >= BRUTE_FORCE_BELOW:
            chunks = self.words.astype(">u8").view(">u2").astype(np.uint16).reshape(-1, self.CHUNKS)
            self._order = np.empty((self.CHUNKS, self.size), dtype=np.int32)
            self._starts = np.empty((self.CHUNKS, 65537), dtype=np.int32)
            values = np.arange(65537)
            for j in range(self.CHUNKS):
                order = np.argsort(chunks[:, j], kind="stable")
                self._order[j] = order
                self._starts[j] = np.searchsorted(chunks[order, j], values, side="left")

    @classmethod
    def from_hex(cls, hex_hashes: list[str]) -> PDQIndex:
        return cls(to_words(hex_hashes))

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + self._order.nbytes + self._starts.nbytes)

    _FLIPS = np.concatenate(([0], 1 << np.arange(16))).astype(np.int64)

    def _candidates(self, query: np.ndarray) -> np.ndarray:
        """Rows sharing a chunk with the query up to one bit: (16 chunks x 17 probes), vectorised."""
        qchunks = query.astype(">u8").view(">u2").astype(np.int64)  # (16,)
        probes = qchunks[:, None] ^ self._FLIPS[None, :]  # (16, 17)
        rows = np.arange(self.CHUNKS)[:, None]
        lo = self._starts[rows, probes].ravel().astype(np.int64)
        hi = self._starts[rows, probes + 1].ravel().astype(np.int64)
        lens = hi - lo
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int32)
        base = lo + np.repeat(np.arange(self.CHUNKS, dtype=np.int64) * self.size, probes.shape[1])
        offsets = np.cumsum(lens) - lens
        flat = np.repeat(base - offsets, lens) + np.arange(total)
        # Duplicates (a row close in several chunks) are left in: checking a few twice costs less
        # than sorting them out; `search` dedupes the hits, which are few.
        return self._order.ravel()[flat]

    def search(self, query: np.ndarray, threshold: int = MATCH_THRESHOLD) -> list[Hit]:
        """Rows within `threshold` of `query` (4 uint64 words), nearest first."""
        if threshold > 31 and self._order.size:
            raise ValueError("the multi-index covers distances up to 31")
        if self.size == 0:
            return []
        if not self._order.size:
            d = distances(self.words, query)
            rows = np.nonzero(d <= threshold)[0]
            pairs = zip(rows.tolist(), d[rows].tolist(), strict=True)
        else:
            cand = self._candidates(query)
            if cand.size == 0:
                return []
            d_c = distances(self.words[cand], query)
            keep = d_c <= threshold
            pairs = dict(zip(cand[keep].tolist(), d_c[keep].tolist(), strict=True)).items()  # type: ignore[assignment]
        return sorted((Hit(r, dist) for r, dist in pairs), key=lambda h: h.distance)
