"""`heron train text` end to end on a tiny subset, plus the pieces it is made of."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from training.text.data import LABEL_MAP, LABELS, OUTPUTS, label_map_markdown, model_text, resolve_data_dir
from training.text.evasion import TECHNIQUES, evade, evasion_suite

try:
    DATA = resolve_data_dir()
except FileNotFoundError:
    DATA = None
needs_data = pytest.mark.skipif(DATA is None, reason="shared data folder not available")


def test_evasion_suite_is_seeded_and_normalisation_undoes_most_of_it() -> None:
    texts = ["you are a disgusting idiot", "what a lovely photo of your garden"] * 10
    a, b = evasion_suite(texts, seed=5), evasion_suite(texts, seed=5)
    assert a == b and a != texts and evasion_suite(texts, seed=6) != a
    for tech in ("homoglyph", "zero_width", "leet"):
        rewritten = evade("you are a disgusting idiot", random.Random(0), 1.0, (tech,))
        assert rewritten != "you are a disgusting idiot"
        assert model_text(rewritten) == "you are a disgusting idiot", (tech, rewritten)
    assert set(TECHNIQUES) == {"leet", "homoglyph", "zero_width", "spaced", "punctuation", "repeat"}


def test_label_map_covers_only_trained_labels_and_renders() -> None:
    for table in LABEL_MAP.values():
        for cats in table.values():
            assert set(cats) <= set(LABELS)
    md = label_map_markdown()
    assert "| olid | offensive | 1 |" in md and md.count("\n") > len(LABEL_MAP)


def test_canonicalisation_matches_training_conventions() -> None:
    assert model_text("RT @bob: hey <@123456> look at https://x.example/a?b=1") == "@user: hey @user look at url"


@needs_data
def test_train_text_tiny_run_writes_a_loadable_artifact(tmp_path: Path) -> None:
    from training.cli import app

    out, runs = tmp_path / "artifact", tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "text",
            "--data-dir",
            str(DATA),
            "--out",
            str(out),
            "--runs-dir",
            str(runs),
            "--seeds",
            "0",
            "--max-examples",
            "64",
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--no-quantized",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    for name in (
        "config.json",
        "text_model.safetensors",
        "ffn_act_max.safetensors",
        "metrics.json",
        "MODEL_CARD.md",
        "eval_predictions.npz",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "olid_macro_f1",
        "hateval_macro_f1",
        "davidson_hate_f1",
        "olid_evasion_macro_f1",
        "ethos_macro_f1",
        "toxigen_neutral_fpr",
    ):
        assert key in metrics["summary"], key
    card = (out / "MODEL_CARD.md").read_text()
    assert "Tiny run" in card and "TimeLMs 82.2" in card and "self_harm" in card
    preds = np.load(out / "eval_predictions.npz")
    assert preds["seed0/test/olid"].shape == (64, len(OUTPUTS))

    from pipeline.scorers.base import ScoringItem
    from pipeline.scorers.text import TextScorer
    from pipeline.types import Message

    s = TextScorer(quantize="fp32", artifact_dir=out).load()
    try:
        (sig,) = s.score([ScoringItem(Message(text="hello there"))])
        assert sig.ok and set(sig.scores) == set(LABELS) and s.version.endswith("+fp32")
    finally:
        s.close()


def test_sampling_plan_repeats_and_caps_rows_by_source_and_class() -> None:
    from training.text.data import Split
    from training.text.train import TrainConfig, sampling_plan

    cls = np.array([0, 1, 1, 1, 2, 0])  # Davidson: hate_speech, offensive_language x3, neither, hate_speech
    split = Split(
        "davidson_train", [f"t{i}" for i in range(6)], np.zeros((6, len(OUTPUTS)), np.float32), {"class": cls}
    )
    assert sampling_plan("davidson", split, TrainConfig()).tolist() == list(range(6))  # default: the plain pool
    cfg = TrainConfig(repeats={"davidson:hate_speech": 3}, class_caps={"davidson:offensive_language": 1})
    idx = sampling_plan("davidson", split, cfg).tolist()
    assert idx.count(0) == idx.count(5) == 3
    assert sum(idx.count(i) for i in (1, 2, 3)) == 1 and idx.count(4) == 1
    assert idx == sampling_plan("davidson", split, cfg).tolist()  # the capped subset is fixed
    olid = Split("olid_train", ["a", "b"], np.zeros((2, len(OUTPUTS)), np.float32))
    assert sampling_plan("olid", olid, TrainConfig(repeats={"olid": 2})).tolist() == [0, 0, 1, 1]


@needs_data
def test_eval_with_fewer_seeds_than_the_artifact_leaves_its_metrics_and_serving_path(tmp_path: Path) -> None:
    """A clean checkout ships only seed 0: `heron eval text` there must not replace the committed
    three-seed metrics (which also choose the served int8 path) with a one-seed run."""
    import shutil

    from models.text.model import DEFAULT_ARTIFACT_DIR
    from training.cli import app

    art, runs = tmp_path / "artifact", tmp_path / "runs"
    art.mkdir()
    for name in ("config.json", "text_model.safetensors", "metrics.json", "MODEL_CARD.md"):
        shutil.copy(DEFAULT_ARTIFACT_DIR / name, art / name)
    before = {n: (art / n).read_bytes() for n in ("metrics.json", "MODEL_CARD.md")}
    assert json.loads(before["metrics.json"])["seeds"] == [0, 1, 2]
    args = [
        "eval",
        "text",
        "--data-dir",
        str(DATA),
        "--artifact",
        str(art),
        "--runs-dir",
        str(runs),
        "--max-examples",
        "16",
        "--no-quantized",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "left as they are" in result.output and "--seeds 1 --seeds 2" in result.output
    assert {n: (art / n).read_bytes() for n in before} == before
    partial = json.loads((runs / "metrics.seeds-0.json").read_text())
    assert partial["seeds"] == [0] and "olid_macro_f1" in partial["summary"]

    result = CliRunner().invoke(app, [*args, "--replace-partial"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads((art / "metrics.json").read_text())["seeds"] == [0]


def test_masked_bce_weights_positives_and_ignores_unannotated_labels() -> None:
    import torch

    from training.text.train import masked_bce

    logits = torch.zeros(2, 2)
    y = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    plain = masked_bce(logits, y)
    weighted = masked_bce(logits, y, torch.tensor([3.0, 100.0]))
    # ln 2 per observed cell; the positive counts 3x, the NaN column (even weighted 100x) not at all.
    assert plain.item() == pytest.approx(np.log(2))
    assert weighted.item() == pytest.approx((3 + 1) / 2 * np.log(2))


@needs_data
def test_ema_run_saves_the_averaged_weights_and_reports_the_raw_ones(tmp_path: Path) -> None:
    import torch

    from models.text.model import load_artifact
    from training.text.train import TrainConfig, train_one_seed

    cfg = TrainConfig(max_examples=24, max_length=24, ema_decay=0.9, pos_weight={"davidson_hate": 3.0}, num_threads=1)
    report = train_one_seed(DATA, tmp_path / "a", cfg)
    assert (
        set(report["val_summary"])
        == set(report["val_summary_raw"])
        == {"olid_macro_f1", "hateval_served_macro_f1", "davidson_macro_f1", "davidson_hate_f1"}
    )
    averaged, config, _ = load_artifact(tmp_path / "a")
    assert config.training["ema_decay"] == 0.9 and config.training["pos_weight"] == {"davidson_hate": 3.0}
    # The same seed and data without the average: its saved weights are the raw ones, and differ.
    plain = train_one_seed(DATA, tmp_path / "b", TrainConfig(**{**cfg.__dict__, "ema_decay": 0.0}))
    assert "val_summary_raw" not in plain
    raw, _, _ = load_artifact(tmp_path / "b")
    name = "backbone.encoder.layer.5.output.dense.weight"
    assert not torch.equal(averaged.state_dict()[name], raw.state_dict()[name])


@needs_data
def test_tuning_the_embeddings_saves_and_serves_them(tmp_path: Path) -> None:
    """The embedding experiment's switch: its artifact carries the tuned embeddings and loads."""
    import torch

    from models.text.model import backbone_dir, load_artifact, load_backbone
    from training.text.train import TrainConfig, train_one_seed

    cfg = TrainConfig(max_examples=24, max_length=24, tune_embeddings=True, num_threads=1)
    train_one_seed(DATA, tmp_path / "emb", cfg)
    model, config, tokenizer = load_artifact(tmp_path / "emb")
    assert config.tuned_prefixes[0] == "backbone.embeddings."
    tuned = model.state_dict()["backbone.embeddings.word_embeddings.weight"]
    pretrained = load_backbone(backbone_dir()).state_dict()["embeddings.word_embeddings.weight"]
    cls = tokenizer.cls_token_id  # in every training text
    assert not torch.allclose(tuned[cls], pretrained[cls].half().float())


def test_layer_decay_slows_the_lower_layers_only() -> None:
    """With layer-wise decay the top encoder layer keeps the base rate and each layer below learns
    at `layer_decay` times the one above; without it every tuned layer shares one rate."""
    from training.text.train import TrainConfig, layer_lr

    cfg = TrainConfig(lr=1e-4, layer_decay=0.5)
    rates = [layer_lr(f"backbone.encoder.layer.{i}.attention.self.query.weight", cfg, 6) for i in range(6)]
    assert rates == pytest.approx([1e-4 * 0.5 ** (5 - i) for i in range(6)])
    assert layer_lr("backbone.embeddings.word_embeddings.weight", cfg, 6) == pytest.approx(1e-4 * 0.5**6)
    flat = TrainConfig(lr=1e-4)
    assert {layer_lr(f"backbone.encoder.layer.{i}.output.dense.bias", flat, 6) for i in range(6)} == {1e-4}


def test_bare_domains_become_url_and_email_addresses_email() -> None:
    assert model_text("Go to Google.com NOW") == "go to url now"
    assert model_text("visit bit.ly/abc or www.x.com") == "visit url or url"
    assert model_text("write to John.Doe@example.co.uk!") == "write to email!"
    # sentence boundaries without a space are words, not links
    assert "url" not in model_text("you ignorant cunt.you're not the expert")
    assert "url" not in model_text("a crisis.eu running in circles")


def test_chat_abbreviations_and_bot_commands_reach_the_model_as_words() -> None:
    assert model_text("gr8 game m8, see u b4 2nite") == "great game mate, see u before tonight"
    assert model_text("!ban @bob") == "!ban @user"


def test_training_augmentation_is_seeded_broad_and_mostly_undone() -> None:
    from training.text.evasion import AUG_TECHNIQUES, augment

    text = "you are a disgusting idiot and a pathetic loser"
    a = [augment(text, random.Random(s), 0.6) for s in range(200)]
    assert a == [augment(text, random.Random(s), 0.6) for s in range(200)]
    assert sum(x != text for x in a) > 150
    # beyond the suite's tricks: mixtures, other tables, symbols, masking
    assert {"mask", "symbol", "separator", "marks", "typo", "case"} <= set(AUG_TECHNIQUES)
    # normalisation brings most rewritten words back (masking, typos and some symbols it cannot undo)
    clean = set(text.split())
    recovered = [np.mean([w in clean for w in model_text(x).split()]) for x in a]
    assert np.mean(recovered) > 0.65, np.mean(recovered)


def test_heldout_evasion_is_seeded_and_never_used_in_training() -> None:
    import ast

    from training.text.evasion_heldout import heldout_suite

    texts = ["you are a disgusting idiot", "what a lovely photo of your garden"] * 10
    assert heldout_suite(texts, seed=3) == heldout_suite(texts, seed=3) != texts
    root = Path(__file__).resolve().parents[2] / "training" / "text"
    for name in ("train.py", "evasion.py", "data.py"):
        tree = ast.parse((root / name).read_text("utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "training.text.evasion_heldout" not in imported, name
