"""Loaders for the shared data sets and the one table that maps their labels onto the taxonomy.

Why a table and not per-loader code: which data set says what about which category is the
most consequential modelling decision here, so it lives in one place (`LABEL_MAP`) that the
model card prints verbatim. A label a data set does not annotate is `None` (masked out of the
loss), never a guessed 0.

Data is read at run time from the shared folder (`HERON_DATA_DIR` or `../shared/data` next to
the repository); nothing is copied into the repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

# The model's input form lives with the model (serving must not import training); re-exported
# here for the training code and notebooks that know it by this name.
from models.text.canonical import CANONICAL_VERSION as CANONICAL_VERSION
from models.text.canonical import canonicalize as canonicalize
from models.text.canonical import model_text

REPO_ROOT = Path(__file__).resolve().parents[2]

# The categories this model is trained for. Others in the taxonomy have no usable training
# data in the shared folder (see UNTRAINED); the scorer does not emit them.
LABELS: tuple[str, ...] = ("toxicity", "hate", "spam")

# Dataset-specific auxiliary heads. Why: "offensive" and "hate" mean different things in OLID,
# HatEval, Davidson and HateXplain (Davidson's "offensive" is mostly casual profanity, HatEval's
# hate targets only immigrants and women); one shared head has to average those conventions and
# measured 4 points below an OLID-only model on OLID. Each set also gets its own head on the shared
# encoder, so the shared heads learn from everything while each benchmark keeps its definition.
AUX_HEADS: tuple[str, ...] = (
    "olid_offensive", "hateval_hate", "davidson_hate", "davidson_abusive", "hatexplain_hate", "hatexplain_abusive",
)
# Every output of the network, in order: the served categories first, then the auxiliary heads.
OUTPUTS: tuple[str, ...] = LABELS + AUX_HEADS

AUX_MAP: dict[str, dict[str, dict[str, int]]] = {
    "olid": {"offensive": {"olid_offensive": 1}, "not-offensive": {"olid_offensive": 0}},
    "hateval": {"hate": {"hateval_hate": 1}, "not-hate": {"hateval_hate": 0}},
    "davidson": {
        "hate_speech": {"davidson_hate": 1, "davidson_abusive": 1},
        "offensive_language": {"davidson_hate": 0, "davidson_abusive": 1},
        "neither": {"davidson_hate": 0, "davidson_abusive": 0},
    },
    "hatexplain": {
        "hatespeech": {"hatexplain_hate": 1, "hatexplain_abusive": 1},
        "offensive": {"hatexplain_hate": 0, "hatexplain_abusive": 1},
        "normal": {"hatexplain_hate": 0, "hatexplain_abusive": 0},
    },
    # Neither offensive nor hateful under any data set's definition: every head learns a 0.
    "identity_neutral": {"neutral": dict.fromkeys(AUX_HEADS, 0)},
}

UNTRAINED: dict[str, str] = {
    "harassment": "no data set labels targeted abuse separately (OLID level B/C and HatEval TR are not "
    "staged; Jigsaw `insult` has 22 positive rows in the staged samples)",
    "sexual": "no data set labels sexual content (Jigsaw `obscene` is profanity, not sexual content)",
    "violence": "only 3 Jigsaw `threat` positives; ETHOS `violence` is evaluation-only (GPL-3.0, out-of-domain set)",
    "self_harm": "no staged data set covers self-harm",
    "scam": "no staged text data set labels fraud/phishing text (phishing is handled by the link scorer's lists)",
}

# dataset -> source label -> {category: 0/1 or None}. None = not annotated by this data set.
# Reasoning per row is in the model card; short version: "offensive" in OLID/Davidson/HateXplain
# is our `toxicity`; hate in HatEval/Davidson/HateXplain is our `hate` and implies toxicity; a
# non-offensive text is neither toxic nor hateful; curated abuse/tweet sets hold (almost) no bulk
# promotion, so their rows are spam negatives; SMS/YouTube ham says nothing about abuse.
LABEL_MAP: dict[str, dict[str, dict[str, int | None]]] = {
    "olid": {
        "offensive": {"toxicity": 1, "hate": None, "spam": 0},
        "not-offensive": {"toxicity": 0, "hate": 0, "spam": 0},
    },
    "hateval": {
        "hate": {"toxicity": 1, "hate": 1, "spam": 0},
        "not-hate": {"toxicity": None, "hate": 0, "spam": 0},
    },
    "davidson": {
        "hate_speech": {"toxicity": 1, "hate": 1, "spam": 0},
        "offensive_language": {"toxicity": 1, "hate": 0, "spam": 0},
        "neither": {"toxicity": 0, "hate": 0, "spam": 0},
    },
    "hatexplain": {
        "hatespeech": {"toxicity": 1, "hate": 1, "spam": 0},
        "offensive": {"toxicity": 1, "hate": 0, "spam": 0},
        "normal": {"toxicity": 0, "hate": 0, "spam": 0},
    },
    "jigsaw": {
        "identity_hate": {"toxicity": 1, "hate": 1, "spam": 0},
        "toxic (any other label)": {"toxicity": 1, "hate": 0, "spam": 0},
        "clean": {"toxicity": 0, "hate": 0, "spam": 0},
    },
    "sms_spam": {
        "spam": {"toxicity": None, "hate": None, "spam": 1},
        "ham": {"toxicity": None, "hate": None, "spam": 0},
    },
    "youtube_spam": {
        "spam": {"toxicity": None, "hate": None, "spam": 1},
        "ham": {"toxicity": None, "hate": None, "spam": 0},
    },
    "identity_neutral": {
        "neutral": {"toxicity": 0, "hate": 0, "spam": 0},
    },
}

def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """`data_dir`, else $HERON_DATA_DIR, else ../shared/data relative to the repository root."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_absolute():
            path = (REPO_ROOT / path) if not path.exists() else path.resolve()
    elif os.environ.get("HERON_DATA_DIR"):
        path = Path(os.environ["HERON_DATA_DIR"])
    else:
        path = REPO_ROOT.parent / "shared" / "data"
    if not (path / "tweeteval_offensive_olid").is_dir():
        raise FileNotFoundError(f"shared data not found at {path} (set --data-dir or HERON_DATA_DIR)")
    return path


@dataclass
class Split:
    """One labelled text set: raw texts, model texts, a label matrix with NaN for 'not annotated'."""

    name: str
    raw: list[str]
    y: np.ndarray  # (n, len(OUTPUTS)) float32, NaN = masked
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. Davidson's 3-class labels
    _texts: list[str] | None = None

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = [model_text(t) for t in self.raw]
        return self._texts

    def __len__(self) -> int:
        return len(self.raw)

    def head(self, n: int | None, seed: int = 0) -> Split:
        """A seeded random subset of at most n rows (tiny runs), keeping every column aligned."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return Split(
            self.name,
            [self.raw[i] for i in idx],
            self.y[idx],
            {k: v[idx] for k, v in self.extra.items()},
            None if self._texts is None else [self._texts[i] for i in idx],
        )


def _rows(dataset: str, labels: list[str]) -> np.ndarray:
    table = LABEL_MAP[dataset]
    aux = AUX_MAP.get(dataset, {})
    out = np.full((len(labels), len(OUTPUTS)), np.nan, dtype=np.float32)
    for i, lab in enumerate(labels):
        for j, cat in enumerate(LABELS):
            v = table[lab].get(cat)
            if v is not None:
                out[i, j] = v
        for head, v in aux.get(lab, {}).items():
            out[i, OUTPUTS.index(head)] = v
    return out


def _lines(path: Path) -> list[str]:
    parts = path.read_text("utf-8").split("\n")  # not splitlines(): tweets contain U+2028 and friends
    if parts and parts[-1] == "":
        parts.pop()
    return [ln.strip() for ln in parts]


def _tweeteval(root: Path, folder: str, dataset: str, split: str) -> Split:
    names = dict(ln.split("\t") for ln in _lines(root / folder / "mapping.txt"))
    texts = _lines(root / folder / f"{split}_text.txt")
    labels = [names[x] for x in _lines(root / folder / f"{split}_labels.txt")]
    assert len(texts) == len(labels), (folder, split)
    y = _rows(dataset, labels)
    return Split(f"{dataset}_{split}", texts, y, {"label": np.array([int(v) for v in y[:, 0 if dataset == "olid"
                                                                                     else 1] == 1])})


def olid(root: Path, split: str) -> Split:
    return _tweeteval(root, "tweeteval_offensive_olid", "olid", split)


def hateval(root: Path, split: str) -> Split:
    return _tweeteval(root, "tweeteval_hate", "hateval", split)


DAVIDSON_CLASSES = ("hate_speech", "offensive_language", "neither")


def davidson(root: Path, split: str) -> Split:
    d = root / "davidson_hate_offensive"
    data = pd.read_csv(d / "labeled_data.csv", index_col=0)
    sp = pd.read_csv(d / "split_seed13_80-10-10.csv")
    rows = sp.loc[sp["split"] == split, "row_id"].to_numpy()
    sub = data.loc[rows]
    cls = sub["class"].to_numpy()
    return Split(f"davidson_{split}", sub["tweet"].astype(str).tolist(),
                 _rows("davidson", [DAVIDSON_CLASSES[c] for c in cls]), {"class": cls})


def hatexplain(root: Path) -> Split:
    """All three staged files pooled: the provenance says this re-split is for training only."""
    parts = [pd.read_csv(root / "hatexplain" / f"{s}.tsv", sep="\t", quoting=3, encoding="latin1")
             for s in ("train", "valid", "test")]
    df = pd.concat(parts, ignore_index=True).dropna(subset=["text", "label"])
    return Split("hatexplain_all", df["text"].astype(str).tolist(), _rows("hatexplain", df["label"].tolist()))


def jigsaw(root: Path) -> Split:
    """The staged Jigsaw samples (train sample + IBM's test examples); tiny, training only."""
    d = root / "jigsaw_toxic_samples"
    df = pd.concat([pd.read_csv(d / "detoxify_dummy_train.csv"), pd.read_csv(d / "ibm_max_test_examples.csv")],
                   ignore_index=True)
    cols = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    labs = ["identity_hate" if r.identity_hate == 1 else "toxic (any other label)" if r[cols].max() == 1 else "clean"
            for _, r in df.iterrows()]
    return Split("jigsaw", df["comment_text"].astype(str).tolist(), _rows("jigsaw", labs))


def sms_spam(root: Path, split: str) -> Split:
    d = root / "sms_spam_uci"
    data = pd.read_csv(d / "SMSSpamCollection", sep="\t", quoting=3)
    sp = pd.read_csv(d / "split_seed13_80-10-10_dedup.csv")
    sub = sp[sp["split"] == split]
    texts = data.loc[sub["line_no_excl_header"].to_numpy(), "SMS"].astype(str).tolist()
    return Split(f"sms_spam_{split}", texts, _rows("sms_spam", sub["label"].tolist()))


def youtube_spam(root: Path, split: str) -> Split:
    d = root / "youtube_spam_uci"
    frames = []
    for f in sorted(d.glob("Youtube0*.csv")):
        df = pd.read_csv(f)
        df["video"] = f.stem
        frames.append(df)
    data = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["video", "COMMENT_ID"])
    sp = pd.read_csv(d / "split_seed13_80-10-10_dedup.csv")
    sp = sp[sp["split"] == split].drop_duplicates(subset=["video", "COMMENT_ID"])
    sub = sp.merge(data[["video", "COMMENT_ID", "CONTENT"]], on=["video", "COMMENT_ID"], how="left")
    sub = sub.dropna(subset=["CONTENT"])
    labs = ["spam" if c == 1 else "ham" for c in sub["CLASS"]]
    return Split(f"youtube_spam_{split}", sub["CONTENT"].astype(str).tolist(), _rows("youtube_spam", labs))


def identity_neutral(split: str) -> Split:
    """Templated neutral sentences naming identity groups (training/text/identity.py): negatives
    against identity-term bias. Generated, not read from the shared folder."""
    from training.text.identity import sentences

    texts = sentences(split)
    return Split(f"identity_neutral_{split}", texts, _rows("identity_neutral", ["neutral"] * len(texts)))


def ethos(root: Path) -> Split:
    """All 998 ETHOS comments: never trained on, so the whole set is an out-of-domain test."""
    df = pd.read_csv(root / "ethos" / "Ethos_Dataset_Binary.csv", sep=";")
    is_hate = (df["isHate"].to_numpy() >= 0.5).astype(np.float32)
    y = np.full((len(df), len(OUTPUTS)), np.nan, dtype=np.float32)
    y[:, LABELS.index("hate")] = is_hate
    return Split("ethos", df["comment"].astype(str).tolist(), y, {"label": is_hate.astype(int)})


def toxigen(root: Path) -> Split:
    """ToxiGen seed sentences: `neutral_*` lines mention a group without hate (false-positive probe)."""
    seen: set[str] = set()
    texts, hate, groups = [], [], []
    for f in sorted((root / "toxigen_demonstrations" / "demonstrations").rglob("*.txt")):
        kind = f.name.split("_", 1)[0]
        group = f.stem.split("_", 1)[1].replace("_sentences", "")
        for ln in f.read_text("utf-8").splitlines():
            t = ln.strip().lstrip("-").strip()
            if not t or t in seen:  # the two muslim files are near-duplicates upstream
                continue
            seen.add(t)
            texts.append(t)
            hate.append(1 if kind == "hate" else 0)
            groups.append(group)
    y = np.full((len(texts), len(OUTPUTS)), np.nan, dtype=np.float32)
    y[:, LABELS.index("hate")] = hate
    return Split("toxigen", texts, y, {"label": np.array(hate), "group": np.array(groups)})


TRAIN_SOURCES: dict[str, Callable[[Path], Split]] = {
    "olid": lambda r: olid(r, "train"),
    "hateval": lambda r: hateval(r, "train"),
    "davidson": lambda r: davidson(r, "train"),
    "hatexplain": hatexplain,
    "jigsaw": jigsaw,
    "sms_spam": lambda r: sms_spam(r, "train"),
    "youtube_spam": lambda r: youtube_spam(r, "train"),
    "identity_neutral": lambda r: identity_neutral("train"),
}

VAL_SOURCES: dict[str, Callable[[Path], Split]] = {
    "olid": lambda r: olid(r, "val"),
    "hateval": lambda r: hateval(r, "val"),
    "davidson": lambda r: davidson(r, "val"),
    "sms_spam": lambda r: sms_spam(r, "val"),
    "youtube_spam": lambda r: youtube_spam(r, "val"),
}

TEST_SOURCES: dict[str, Callable[[Path], Split]] = {
    "olid": lambda r: olid(r, "test"),
    "hateval": lambda r: hateval(r, "test"),
    "davidson": lambda r: davidson(r, "test"),
    "sms_spam": lambda r: sms_spam(r, "test"),
    "youtube_spam": lambda r: youtube_spam(r, "test"),
    "ethos": ethos,
    "toxigen": toxigen,
}


@lru_cache(maxsize=4)
def _load_all(root: str, which: str) -> dict[str, Split]:
    table = {"train": TRAIN_SOURCES, "val": VAL_SOURCES, "test": TEST_SOURCES}[which]
    return {name: fn(Path(root)) for name, fn in table.items()}


def load_sets(root: Path, which: str, max_examples: int | None = None, seed: int = 0) -> dict[str, Split]:
    """Every set of one kind ('train', 'val' or 'test'), optionally cut to `max_examples` each."""
    return {k: v.head(max_examples, seed) for k, v in _load_all(str(root), which).items()}


def label_map_markdown() -> str:
    """The label-map table as Markdown (for the model card and the docs)."""
    head = "| data set | source label | " + " | ".join(LABELS) + " |\n|---|---|" + "---|" * len(LABELS) + "\n"
    rows = []
    for ds, table in LABEL_MAP.items():
        for lab, cats in table.items():
            cells = ["–" if cats.get(c) is None else str(cats[c]) for c in LABELS]
            rows.append(f"| {ds} | {lab} | " + " | ".join(cells) + " |")
    aux = "\n\nDataset-specific auxiliary heads (same encoder; used for that set's benchmark):\n\n"
    aux += "| data set | source label | " + " | ".join(AUX_HEADS) + " |\n|---|---|" + "---|" * len(AUX_HEADS) + "\n"
    for ds, table in AUX_MAP.items():
        for lab, heads in table.items():
            aux += f"| {ds} | {lab} | " + " | ".join(str(heads.get(h, "–")) for h in AUX_HEADS) + " |\n"
    return head + "\n".join(rows) + aux
