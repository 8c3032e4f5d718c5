"""The link benchmark's data: scam hosts with first-seen dates, popular benign hosts, and splits.

Positives: every entry ever added to the nikolaischunk Discord phishing list
(``discord_phishing_links/derived_first_seen_from_git_history.csv``), minus entries later removed
(candidate false positives), entries with a path (single short links: the host is a shortener,
not a scam site) and shortener hosts. Negatives: the Majestic top 15k (``IDN_Domain``).

Splits are *grouped by registrable domain* (public-suffix list): a site's first-seen date is the
earliest of its hosts, and all its hosts go to one side, so ``a.evil.com`` in training never makes
``b.evil.com`` in testing easy. Registrable domains on both lists (``counter-strike.net``,
``clck.ru``) are kept as negatives only. Positives split in time: train before `val_start`,
validation (thresholds, early checks) from `val_start` to `cutoff`, test from `cutoff` on.
Negatives have no dates, so they split by a seeded hash of the registrable domain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.links.domain_model import canonical_host
from pipeline.features.domains import is_shortener, registrable_domain
from pipeline.features.links import to_ascii_host
from pipeline.scorers.links import KNOWN_FALSE_POSITIVES

PHISHING_DIR = "discord_phishing_links"
BENIGN_DIR = "benign_domains_majestic_top15k"
FIRST_SEEN_FILE = "derived_first_seen_from_git_history.csv"
BENIGN_FILE = "majestic_million_top15000.csv"
DEFAULT_CUTOFF = "2023-01-01"
DEFAULT_VAL_START = "2022-10-01"


@dataclass
class LinkSplits:
    """Hosts and labels (1 = scam) per split, with what each split was built from."""

    train: tuple[list[str], list[int]]
    val: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    summary: dict[str, object]


def _hash_bucket(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def load_positives(root: Path) -> pd.DataFrame:
    """Scam hosts with first-seen time and registrable domain (one row per host)."""
    df = pd.read_csv(root / PHISHING_DIR / FIRST_SEEN_FILE)
    df = df[df["status"].str.startswith("present_at_HEAD")]
    df = df[~df["domain"].str.contains("/", regex=False)]
    df = df.assign(host=[canonical_host(to_ascii_host(d)) for d in df["domain"]])
    df = df.assign(reg=[registrable_domain(h) for h in df["host"]])
    df = df[df["reg"].notna() & ~df["host"].map(is_shortener) & ~df["reg"].isin(KNOWN_FALSE_POSITIVES)]
    df = df.assign(first_seen=pd.to_datetime(df["first_added_utc"], utc=True))
    return df.drop_duplicates("host")[["host", "reg", "first_seen"]].reset_index(drop=True)


def load_negatives(root: Path) -> pd.DataFrame:
    df = pd.read_csv(root / BENIGN_DIR / BENIGN_FILE)
    hosts = [canonical_host(to_ascii_host(str(d))) for d in df["IDN_Domain"]]
    out = pd.DataFrame({"host": hosts, "rank": df["GlobalRank"]})
    out = out.assign(reg=[registrable_domain(h) for h in out["host"]])
    return out[out["reg"].notna()].drop_duplicates("host").reset_index(drop=True)


def build_splits(
    root: Path, cutoff: str = DEFAULT_CUTOFF, val_start: str = DEFAULT_VAL_START, seed: int = 13,
    neg_val: float = 0.1, neg_test: float = 0.3,
) -> LinkSplits:  # fmt: skip
    pos = load_positives(root)
    neg = load_negatives(root)
    pos = pos[~pos["reg"].isin(set(neg["reg"]))]  # on both lists: benign/shortener, a negative only
    group_first = pos.groupby("reg")["first_seen"].transform("min")
    cut, vs = pd.Timestamp(cutoff, tz="UTC"), pd.Timestamp(val_start, tz="UTC")
    pos_side = pd.Series("train", index=pos.index).mask(group_first >= vs, "val").mask(group_first >= cut, "test")
    bucket = neg["reg"].map(lambda r: _hash_bucket(r, seed))
    neg_side = pd.Series("train", index=neg.index).mask(bucket >= 1 - neg_val - neg_test, "val")
    neg_side = neg_side.mask(bucket >= 1 - neg_test, "test")

    def side(name: str) -> tuple[list[str], list[int]]:
        p = pos.loc[pos_side == name, "host"].tolist()
        n = neg.loc[neg_side == name, "host"].tolist()
        return p + n, [1] * len(p) + [0] * len(n)

    summary: dict[str, object] = {
        "cutoff": cutoff,
        "val_start": val_start,
        "negative_split_seed": seed,
        "positives": {s: int((pos_side == s).sum()) for s in ("train", "val", "test")},
        "positive_registrable_domains": {
            s: int(pos.loc[pos_side == s, "reg"].nunique()) for s in ("train", "val", "test")
        },
        "negatives": {s: int((neg_side == s).sum()) for s in ("train", "val", "test")},
        "test_first_seen_range": [
            str(pos.loc[pos_side == "test", "first_seen"].min()),
            str(pos.loc[pos_side == "test", "first_seen"].max()),
        ],
    }
    return LinkSplits(side("train"), side("val"), side("test"), summary)


def phishing_entries_before(root: Path, before: str) -> list[str]:
    """Every list entry first added before `before`: what an exact-match list knew then."""
    df = pd.read_csv(root / PHISHING_DIR / FIRST_SEEN_FILE)
    t = pd.to_datetime(df["first_added_utc"], utc=True)
    return df.loc[t < pd.Timestamp(before, tz="UTC"), "domain"].astype(str).tolist()


def upstream_list(root: Path) -> tuple[list[str], dict[str, str]]:
    """The current upstream list and where it came from (for the bundled bank)."""
    path = root / PHISHING_DIR / "domain-list.json"
    raw = path.read_bytes()
    entries = json.loads(raw)["domains"]
    provenance = (root / PHISHING_DIR / "PROVENANCE.md").read_text("utf-8")
    commit = next((w.strip("`") for w in provenance.split() if len(w.strip("`")) == 40), "unknown")
    return entries, {
        "source": "https://github.com/nikolaischunk/discord-phishing-links",
        "commit": commit,
        "file": "domain-list.json",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "license": "MIT (c) 2021 nikolaischunk",
    }
