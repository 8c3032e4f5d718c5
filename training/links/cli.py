"""`heron train links`, `heron train links-bank`, `heron eval links`, `heron eval spam`.

Registered on training/cli.py's typer apps by `register`, so that file only gains one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.links.domain_model import DEFAULT_ARTIFACT_DIR

DataDir = Annotated[
    Path | None,
    typer.Option(help="shared data folder (default: $HERON_DATA_DIR or ../shared/data next to the repo)"),
]
Artifact = Annotated[Path, typer.Option(help="link model artifact directory")]
Cutoff = Annotated[str, typer.Option(help="test positives: first seen on or after this date (UTC)")]
ValStart = Annotated[str, typer.Option(help="validation positives: first seen from this date to the cut-off")]


def register(train_app: typer.Typer, eval_app: typer.Typer) -> None:
    @train_app.command("links")
    def train_links_cmd(
        data_dir: DataDir = None,
        out: Artifact = DEFAULT_ARTIFACT_DIR,
        cutoff: Cutoff = "2023-01-01",
        val_start: ValStart = "2022-10-01",
        evaluate: Annotated[bool, typer.Option(help="score the future (test) slice afterwards")] = True,
    ) -> None:
        """Train the learned domain model on hosts first seen before the cut-off; write the artifact."""
        from training.links.train import evaluate_links, train_links
        from training.text.data import resolve_data_dir

        root = resolve_data_dir(data_dir)
        train_links(root, out, cutoff=cutoff, val_start=val_start)
        if evaluate:
            evaluate_links(root, out)

    @train_app.command("links-bank")
    def train_links_bank_cmd(
        data_dir: DataDir = None,
        out: Annotated[Path | None, typer.Option(help="bank file (default: the bundled one)")] = None,
    ) -> None:
        """Rebuild the bundled known-bad link bank from the shared phishing list (with provenance)."""
        from training.links.bank import build_bank
        from training.text.data import resolve_data_dir

        if out is None:
            build_bank(resolve_data_dir(data_dir))
        else:
            build_bank(resolve_data_dir(data_dir), out)

    @eval_app.command("links")
    def eval_links_cmd(data_dir: DataDir = None, artifact: Artifact = DEFAULT_ARTIFACT_DIR) -> None:
        """Temporal benchmark: AUPRC and recall at 1% / 0.1% FPR on future domains, exact matching beside it."""
        from training.links.train import evaluate_links
        from training.text.data import resolve_data_dir

        evaluate_links(resolve_data_dir(data_dir), artifact)

    @train_app.command("spam")
    def train_spam_cmd(
        data_dir: DataDir = None,
        out: Annotated[Path | None, typer.Option(help="spam-text artifact directory")] = None,
        evaluate: Annotated[bool, typer.Option(help="run `heron eval spam` afterwards")] = True,
    ) -> None:
        """Train the spam-text model on the SMS and YouTube train splits; thresholds on their val splits."""
        from models.spam.model import DEFAULT_ARTIFACT_DIR as SPAM_DIR
        from training.spam.evaluate import evaluate_spam, train_spam
        from training.text.data import resolve_data_dir

        root = resolve_data_dir(data_dir)
        train_spam(root, out or SPAM_DIR)
        if evaluate:
            evaluate_spam(root, (out or SPAM_DIR) / "metrics.json")

    @eval_app.command("spam")
    def eval_spam_cmd(
        data_dir: DataDir = None,
        out: Annotated[Path | None, typer.Option(help="where to write the figures (default: the artifact's)")] = None,
    ) -> None:
        """SMS (dedup split) and YouTube (leave-one-video-out) spam F1/MCC: text model, baseline, spam-text."""
        from models.spam.model import DEFAULT_ARTIFACT_DIR as SPAM_DIR
        from training.spam.evaluate import evaluate_spam
        from training.text.data import resolve_data_dir

        evaluate_spam(resolve_data_dir(data_dir), out or SPAM_DIR / "metrics.json")
