"""Spam text sets with their splits: SMS Spam Collection (deduplicated split) and YouTube Spam
Collection (same split file as the text model, plus each comment's video for leave-one-video-out).

Read in place from the shared data folder, the same rows `training.text.data` uses, so the text
model's spam head and the spam-text model are measured on the same texts.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def sms(root: Path) -> pd.DataFrame:
    """text, y (1 = spam), split (train/val/test) for the deduplicated SMS split."""
    d = root / "sms_spam_uci"
    data = pd.read_csv(d / "SMSSpamCollection", sep="\t", quoting=3)
    sp = pd.read_csv(d / "split_seed13_80-10-10_dedup.csv")
    texts = data.loc[sp["line_no_excl_header"].to_numpy(), "SMS"].astype(str).tolist()
    return pd.DataFrame(
        {"text": texts, "y": (sp["label"] == "spam").astype(int).to_numpy(), "split": sp["split"].to_numpy()}
    )


def youtube(root: Path) -> pd.DataFrame:
    """text, y, split, video for the YouTube comments (duplicates within a video dropped)."""
    d = root / "youtube_spam_uci"
    frames = []
    for f in sorted(d.glob("Youtube0*.csv")):
        df = pd.read_csv(f)
        df["video"] = f.stem
        frames.append(df)
    data = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["video", "COMMENT_ID"])
    sp = pd.read_csv(d / "split_seed13_80-10-10_dedup.csv").drop_duplicates(subset=["video", "COMMENT_ID"])
    sub = sp.merge(data[["video", "COMMENT_ID", "CONTENT"]], on=["video", "COMMENT_ID"], how="inner")
    return pd.DataFrame(
        {
            "text": sub["CONTENT"].astype(str).to_numpy(),
            "y": sub["CLASS"].astype(int).to_numpy(),
            "split": sub["split"].to_numpy(),
            "video": sub["video"].to_numpy(),
        }
    )
