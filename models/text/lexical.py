"""Lexical features for the taxonomy heads' hybrid scores: hashed n-gram TF-IDF + structural cues.

Why: the pooled embedding reads 64 tokens and blurs exact wording, while a smishing text gives
itself away by its surface (a link, a short code, "£500", "urgent") and a threat by a few words.
A linear model over n-grams of the *whole* model text, blended with the embedding head's logit,
catches what the embedding misses at a cost of hashing the text once per message for every
category together (one sparse matrix, one (V, categories) product).

Features reuse the spam-text model's (`models.spam.model`): hashed character 2-5-grams within word
boundaries and word 1-2-grams of the lower-cased text, sublinear TF times IDF, rows L2-normalised.
Unlike that model, only hashed features seen in at least `MIN_DF` training texts are kept (the
vocabulary, stored as indices), which keeps the stored weights small; the structural cues below
are appended as 0/1 columns. Everything is stored as arrays in `heads.safetensors`: no pickle.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from models.spam.model import counts

LEXICAL_VERSION = 1
MIN_DF = 2
# Structural cues of fraud lures, read off the model text (links are already the one token `url`,
# mentions `@user`; digits and currency signs survive normalisation).
STRUCTURAL: dict[str, re.Pattern[str]] = {
    "url": re.compile(r"\burl\b"),
    "shortener": re.compile(r"\b(?:bitly|tinyurl|goo\.?gl|t\.co|ow\.ly|is\.gd|cutt\.ly|rb\.gy|shorturl|tiny\.cc)\b"),
    "bare_domain": re.compile(r"\b[a-z0-9-]{2,}\.(?:com|net|org|co|uk|info|biz|xyz|top|site|online|link|me|io)\b"),
    "phone": re.compile(r"(?:\+?\d[\d\s-]{8,}\d)"),
    "short_code": re.compile(r"\b(?:text|txt|reply|send|call)\b[^.]{0,20}\b\d{4,6}\b"),
    "money": re.compile(r"[£$€]\s?\d|\b\d[\d,.]*\s?(?:pounds|dollars|usd|gbp|eur|euros|k)\b"),
    "urgency": re.compile(
        r"\b(?:urgent|urgently|immediately|now|today|expire[sd]?|suspend(?:ed)?|locked|verify|"
        r"confirm|final notice|last chance|within \d+ ?(?:hours|hrs|days))\b"
    ),
    "prize": re.compile(r"\b(?:won|winner|win|prize|claim|reward|free|bonus|gift ?card|selected)\b"),
    "account": re.compile(r"\b(?:account|bank|card|password|pin|otp|code|payment|parcel|package|delivery)\b"),
}


def structural(texts: Sequence[str]) -> np.ndarray:
    """(n, len(STRUCTURAL)) 0/1 cues of each model text."""
    out = np.zeros((len(texts), len(STRUCTURAL)), dtype=np.float64)
    for i, t in enumerate(texts):
        low = t.lower()
        for j, pat in enumerate(STRUCTURAL.values()):
            out[i, j] = 1.0 if pat.search(low) else 0.0
    return out


def fit_vocab(texts: Sequence[str], min_df: int = MIN_DF) -> tuple[np.ndarray, np.ndarray]:
    """(vocab, idf): the hashed columns seen in >= `min_df` texts and their smoothed IDF."""
    x = counts([t.lower() for t in texts])
    df = np.bincount(x.indices, minlength=x.shape[1])
    vocab = np.flatnonzero(df >= min_df).astype(np.int32)
    idf = (np.log((1 + x.shape[0]) / (1 + df[vocab])) + 1.0).astype(np.float32)
    return vocab, idf


class LexicalFeatures:
    """The fitted featuriser: model texts -> sparse (n, len(vocab) + len(STRUCTURAL)) rows."""

    def __init__(self, vocab: np.ndarray, idf: np.ndarray) -> None:
        self.vocab = np.asarray(vocab, dtype=np.int64)
        self.idf = np.asarray(idf, dtype=np.float64)
        width = int(counts([""]).shape[1])
        # column lookup (hashed index -> vocabulary position, -1 when not in it): one gather per row
        self._pos = np.full(width, -1, dtype=np.int64)
        self._pos[self.vocab] = np.arange(len(self.vocab))

    @property
    def width(self) -> int:
        return len(self.vocab) + len(STRUCTURAL)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        x = counts([t.lower() for t in texts]).tocoo()
        col = self._pos[x.col]
        keep = col >= 0
        tf = 1.0 + np.log(x.data[keep].astype(np.float64))
        val = tf * self.idf[col[keep]]
        m = sparse.csr_matrix((val, (x.row[keep], col[keep])), shape=(len(texts), len(self.vocab)))
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        m = sparse.diags(1.0 / norms) @ m
        return sparse.hstack([m, sparse.csr_matrix(structural(texts))], format="csr")
