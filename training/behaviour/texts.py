"""The behaviour model's text side: real spam and ham texts for the simulator, and the text model's
spam score for every simulated message.

Why real texts: the behaviour model reads the text model's spam score as one of its inputs, so
what it learns about combining the two depends on how that score behaves on real spam (SMS
spam, smishing, YouTube comment spam) and on real ordinary messages, including the ordinary
messages the text model wrongly scores high. Word salad and five templates would teach it that the
text score is always right.

Pools, by split (read in place from the shared data folder, never copied into the repository):

- **train**: the train splits of the SMS Spam Collection (deduplicated split) and the YouTube
  Spam Collection, plus the Mendeley smishing set's rows that are not UCI SMS copies
  (`derived_dedup_vs_uci.csv` minus the near-duplicates flagged in
  `derived_near_dup_vs_uci_flags.csv`: its PROVENANCE says training only, and without the flagged
  rows the SMS test split stays clean). Smishing and spam both count as spam.
- **val**: the SMS and YouTube val splits (for choices: the validation seeds).
- **test**: the SMS and YouTube test splits (the held-out evaluation seeds only).

The text model was fine-tuned on the SMS and YouTube train splits, so its scores on the train
pool are in-sample (more confident than on new text); the smishing rows and the val/test pools
are out-of-sample. The model card says so.

Text scores come from the served text model (`TextScorer`, its serving quantisation), one text
per forward pass: with int8 activations quantised per batch, a text's score would otherwise
depend on its batch-mates, and a rerun that scored a different set of texts would not reproduce
the committed figures. They are cached under ``var/behaviour/`` (not committed), keyed by the text
artifact's config and the serving path, so a retrained text model never reads stale scores.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "var" / "behaviour"
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class TextPool:
    """Ham and spam texts of one split, as chat messages (HTML entities decoded, whitespace kept)."""

    split: str
    ham: tuple[str, ...]
    spam: tuple[str, ...]


def _clean(texts: Iterable[str]) -> list[str]:
    """Decoded, non-blank, deduplicated (first occurrence kept, order stable)."""
    out: dict[str, None] = {}
    for t in texts:
        s = html.unescape(str(t)).strip()
        if s:
            out.setdefault(s, None)
    return list(out)


def smishing_clean(root: Path) -> pd.DataFrame:
    """The Mendeley rows that are not UCI SMS texts, exact or near copies (text, y)."""
    d = root / "smishing_mendeley"
    data = pd.read_csv(d / "derived_dedup_vs_uci.csv", dtype={"TEXT": str}, keep_default_na=False)
    flagged = set(pd.read_csv(d / "derived_near_dup_vs_uci_flags.csv")["row_id"].tolist())
    data = data[~data["row_id"].isin(flagged)]
    y = (data["LABEL"].str.casefold() != "ham").astype(int)  # smishing and spam are both spam
    return pd.DataFrame({"text": data["TEXT"].astype(str).to_numpy(), "y": y.to_numpy()})


def load_pools(root: Path) -> dict[str, TextPool]:
    """The three split pools (see the module docstring)."""
    from training.spam.data import sms, youtube

    frames = [sms(root)[["text", "y", "split"]], youtube(root)[["text", "y", "split"]]]
    data = pd.concat(frames, ignore_index=True)
    smish = smishing_clean(root).assign(split="train")
    data = pd.concat([data, smish], ignore_index=True)
    pools = {}
    for split in SPLITS:
        part = data[data["split"] == split]
        pools[split] = TextPool(
            split,
            ham=tuple(_clean(part.loc[part["y"] == 0, "text"])),
            spam=tuple(_clean(part.loc[part["y"] == 1, "text"])),
        )
    # A text in two splits (the SMS and YouTube splits are deduplicated within each set, not
    # across) is kept only in the earliest-listed: train never shares a text with test.
    seen: set[str] = set()
    for split in SPLITS:
        p = pools[split]
        ham = tuple(t for t in p.ham if t not in seen)
        spam = tuple(t for t in p.spam if t not in seen)
        seen |= set(p.ham) | set(p.spam)
        pools[split] = TextPool(split, ham, spam)
    return pools


class TextDraw:
    """Draws texts from one pool for one simulated guild: without replacement (reshuffled when a
    pool runs out), so a guild rarely sees the same long SMS twice, which would read as a
    spam wave of ordinary messages."""

    def __init__(self, pool: TextPool, rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self._left: dict[str, list[str]] = {"ham": [], "spam": []}

    def _next(self, kind: str) -> str:
        left = self._left[kind]
        if not left:
            left.extend(getattr(self.pool, kind))
            self.rng.shuffle(left)
        return left.pop()

    def ham(self) -> str:
        return self._next("ham")

    def spam(self) -> str:
        return self._next("spam")


# -- the text model's spam score, cached ---------------------------------------------------------


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class TextSpamScores:
    """The served text model's spam probability for raw message texts, cached on disk.

    The score is what `TextScorer` would say for a message with that text (its normalisation and
    canonical form, its serving quantisation), computed one text per forward pass (see the module
    docstring), rounded as the scorer rounds."""

    def __init__(self, cache_dir: Path = CACHE_DIR) -> None:
        from models.text.model import DEFAULT_ARTIFACT_DIR
        from models.text.quantize import serving_quantize

        self.artifact = DEFAULT_ARTIFACT_DIR
        mode = os.environ.get("HERON_TEXT_QUANTIZE", "auto")
        self.mode = serving_quantize(self.artifact) if mode == "auto" else mode
        config = (self.artifact / "config.json").read_bytes()
        self.key = hashlib.sha256(config + b"\x00" + self.mode.encode()).hexdigest()[:16]
        self.path = cache_dir / f"text_spam_{self.key}.json"
        self._scores: dict[str, float] = {}
        if self.path.is_file():
            self._scores = json.loads(self.path.read_text("utf-8"))

    def get(self, texts: Sequence[str], progress: bool = True) -> list[float]:
        """Scores for `texts` (computing and caching the ones not seen before)."""
        todo = sorted({k: t for t in texts if (k := _text_key(t)) not in self._scores}.items())
        if todo:
            self._compute(todo, progress)
        return [self._scores[_text_key(t)] for t in texts]

    def _compute(self, todo: list[tuple[str, str]], progress: bool) -> None:
        from pipeline.scorers.text import SCORE_DECIMALS, TextScorer
        from pipeline.settings import Settings

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        scorer = TextScorer(settings=Settings(), quantize=self.mode, workers=1, cache_size=0).load(self.artifact)
        from models.text.canonical import canonicalize
        from pipeline.normalize import normalize

        engine = scorer._require()
        col = list(engine.served_labels).index("spam")
        try:
            for n, (key, text) in enumerate(todo, start=1):
                p = float(engine.served([canonicalize(normalize(text))])[0, col])
                self._scores[key] = round(p, SCORE_DECIMALS)
                if progress and n % 2000 == 0:
                    print(f"  text model: {n}/{len(todo)} texts scored", flush=True)
                    self._save()
        finally:
            scorer.close()
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._scores, sort_keys=True), "utf-8")
        tmp.replace(self.path)
