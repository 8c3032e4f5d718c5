"""Generate MODEL_CARD.md from the artifact's config and metrics.json.

Generated, never hand-edited, so the numbers in the card are always the numbers the last
`heron eval text` printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.text.int8 import INT8_FORMAT
from models.text.model import ACT_MAX_TEXTS, CONFIG_FILE, WEIGHTS_FILE, ArtifactConfig
from models.text.quantize import SQ_ALPHA
from training.text.data import LABELS, UNTRAINED, label_map_markdown
from training.text.identity import GROUPS
from training.text.identity import sentences as identity_sentences

CARD_FILE = "MODEL_CARD.md"
# Marks a card written while the taxonomy heads were fitted on an earlier encoder (`_heads_note`).
HEADS_PENDING = "**Taxonomy heads pending refit:**"


def _ms(summary: dict[str, Any], key: str, scale: float = 1.0, digits: int = 1) -> str:
    if key not in summary:
        return "n/a"
    s = summary[key]
    return f"{s['mean'] * scale:.{digits}f} ± {s['sd'] * scale:.{digits}f}"


def _weights_words(cfg: ArtifactConfig) -> str:
    if cfg.weights.get("format") == INT8_FORMAT:
        return (
            "encoder weight matrices int8 at rest, symmetric per output channel with fp32 scales; biases, "
            "LayerNorm and head fp32; dequantised at load, sha256 checked against config.json"
        )
    return "encoder layers fp16, head fp32"


def _quantization_section(add: Any, q: dict[str, Any], cfg: ArtifactConfig) -> None:
    """The served model's figures per forward path, each at its own validation-fitted threshold."""
    serving = q["serving"]
    nan = float("nan")
    add("## Weights at rest and quantised serving paths\n")
    add(
        f"The served model is seed {serving['seed']}; its forward path is chosen for that model alone "
        f"({serving['rule']}) and recorded in `config.json` (`serving`), which serving reads. Every row is "
        "scored at its own OLID threshold, fitted on OLID validation for that path (the test split is never "
        "used to choose), and each int8 row is the mean over "
        f"{q.get('orders', 1)} random arrival orders batched 32 at a time (dynamic int8 quantises activations "
        "per batch, so a text's score depends slightly on its batch-mates).\n"
    )
    add(
        "| weights at rest | forward path | OLID val macro-F1 | OLID test macro-F1 | threshold | "
        "loss vs before int8 (val) |"
    )
    add("|---|---|---|---|---|---|")
    before = serving.get("before_int8") or {}
    if before:
        add(
            f"| before int8 ({before.get('source', 'training')}) | fp32 | {before.get('olid_val_macro_f1', nan):.2f} "
            f"| {before.get('olid_test_macro_f1', nan):.2f} | {before.get('olid_threshold', nan):.2f} | |"
        )
    for extra in q.get("before_int8_paths", []):
        loss = serving["reference_olid_val_macro_f1"] - extra["olid_val_macro_f1"]
        add(
            f"| before int8 | {extra['path']} | {extra['olid_val_macro_f1']:.2f} | {extra['olid_test_macro_f1']:.2f} "
            f"| {extra['olid_threshold']:.2f} | {loss:+.2f} |"
        )
    for mode, r in q["paths"].items():
        if "error" in r:
            add(f"| int8 | {mode} | error: {r['error']} | | | |")
            continue
        loss = serving["olid_val_loss"].get(mode, nan)
        mark = " **(served)**" if mode == serving["quantize"] else ""
        add(
            f"| int8 | {mode}{mark} | {r.get('olid_val_macro_f1', nan):.2f} | {r.get('olid_test_macro_f1', nan):.2f} | "
            f"{r.get('olid_threshold', nan):.2f} | {loss:+.2f} |"
        )
    for mode, why in (q.get("not_measured") or {}).items():
        add(f"| int8 | {mode} | not measured: {why} | | | |")
    add(
        f"\nServed: **{serving['quantize']}** (the largest allowed loss is {serving['max_loss']} points). "
        "onnx-int8: per-channel weights, feed-forward output projections kept fp32. onnx-int8-sq: every MatMul "
        "int8, the feed-forward output projections' inputs divided per channel by SmoothQuant scales (Xiao et al. "
        f"2023, migration strength {SQ_ALPHA}, from activation maxima on {ACT_MAX_TEXTS:,} training texts) that "
        "their weights absorb. torch-int8: PyTorch dynamic int8 over every Linear.\n"
    )


def _augmentation_words(tr: dict[str, Any]) -> str:
    """What the training augmentation did, by `TrainConfig.augmenter` ("suite" before 2026-12-04)."""
    share = f"A share of {tr.get('aug_prob')} of the training texts is rewritten each epoch by "
    if tr.get("augmenter", "suite") == "suite":
        return (
            share + "the seeded evasion generator (leetspeak, homoglyphs, zero-width characters, spaced "
            "letters, inner punctuation, repeated letters) and then normalised as at serving time."
        )
    return (
        share + "`training.text.evasion.augment` and then normalised as at serving time. It draws from more "
        "than the evasion suite's tricks: look-alike letters from Cyrillic/Greek, fullwidth, circled, "
        "squared and negative squared (🅰), small capitals, diacritics and eleven mathematical alphabets, one "
        "table per word or mixed letter by letter; symbol and leet substitutions (@, $, €, ∆, ⭕); separators "
        "(. - _ * ~ + / | · space, zero-width) between every letter or once inside a word; combining marks; "
        "masking (f*ck, b***h); random case; typos; the suite's own tricks; one trick or a mixture of two "
        "or three in one word, on the whole word or a stretch of it, at a per-text rate drawn around "
        f"{tr.get('aug_word_prob')} of the words."
    )


# The artifact this retrain replaced (`minilm6-multilabel-s0-20261128`, normaliser 2, canonical 1, the
# suite's tricks as augmentation), from its metrics.json, and its seed 0 on the held-out rewrite
# (measured with that model's own normaliser, on 2026-12-04, before the new seeds were scored).
_BEFORE_20261204: dict[str, Any] = {
    "version": "minilm6-multilabel-s0-20261128",
    "val": {"olid": [78.19, 77.15, 77.52], "hateval_served": [72.63, 71.98, 70.99], "davidson": [77.21, 76.76, 77.39]},
    "test": {
        "olid_macro_f1": (80.42, 1.56),
        "hateval_served_macro_f1": (59.37, 0.95),
        "davidson_hate_f1": (0.438, 0.017),
        "toxigen_neutral_fpr": (0.126, 0.011),
        "sms_spam_f1": (0.951, 0.008),
        "youtube_spam_f1": (0.936, 0.009),
        "olid_evasion_drop": (1.89, 0.59),
    },
    "heldout_drop_seed0": 10.77,  # clean 79.40, held-out 68.62 (suite drop 1.30 in the same run)
}
_VAL_KEYS = {
    "olid": "olid_val_macro_f1",
    "hateval_served": "hateval_served_val_macro_f1",
    "davidson": "davidson_val_macro_f1",
}


def _retrain_20261204(metrics: dict[str, Any]) -> str | None:
    """The dated entry for the 2026-12-04 retrain (normaliser 3, canonical 2, broad augmentation):
    its decision rule, written before the runs, and the figures it was decided on."""
    import statistics

    per_seed = metrics.get("per_seed", {})
    reports = [r.get("val_report", {}) for r in per_seed.values()]
    after = {k: [100 * r[key] for r in reports if key in r] for k, key in _VAL_KEYS.items()}
    if not all(after.values()) or metrics.get("version") == _BEFORE_20261204["version"]:
        return None
    before = _BEFORE_20261204["val"]

    def mean_sd(v: list[float]) -> str:
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"

    ok = all(statistics.mean(after[k]) >= statistics.mean(before[k]) - 0.5 for k in before)
    s = metrics.get("summary", {})
    bt = _BEFORE_20261204["test"]

    def test_pair(key: str, digits: int = 2) -> str:
        if key not in s:
            return "n/a"
        b = bt[key]
        return f"{b[0]:.{digits}f} ± {b[1]:.{digits}f} → {s[key]['mean']:.{digits}f} ± {s[key]['sd']:.{digits}f}"

    held_before = _BEFORE_20261204["heldout_drop_seed0"]
    held_seed0 = per_seed.get("0", {}).get("olid_heldout_drop")
    return (
        "- Retrained (2026-12-04, all 3 seeds, adopted"
        + ("" if ok else " **against its rule: see below**")
        + "): normaliser 3 and canonical form 2 (chat abbreviations spelled out, a leading `!` kept as "
        "punctuation, bare domains → `url`, e-mail addresses → `email`, letters folded by their Unicode names, "
        'spelled-out words kept apart) and the broad training augmentation (`TrainConfig.augmenter="broad"`), '
        "the rest of the recipe unchanged. Decision rule, written before the runs: adopt if the 3-seed mean "
        "validation macro-F1 of OLID (its own head), HatEval (served head) and Davidson (3-class) is each no "
        "more than 0.5 below the replaced artifact's; only then score the test sets. Validation, replaced → "
        f"retrained: OLID {mean_sd(before['olid'])} → {mean_sd(after['olid'])}, HatEval served "
        f"{mean_sd(before['hateval_served'])} → {mean_sd(after['hateval_served'])}, Davidson macro "
        f"{mean_sd(before['davidson'])} → {mean_sd(after['davidson'])}"
        + (" (rule met)." if ok else " (rule not met).")
        + f" Test, replaced → retrained: OLID {test_pair('olid_macro_f1')}, HatEval served "
        f"{test_pair('hateval_served_macro_f1')}, Davidson hate F1 {test_pair('davidson_hate_f1', 3)}, ToxiGen "
        f"neutral flagged {test_pair('toxigen_neutral_fpr', 3)}, SMS spam F1 {test_pair('sms_spam_f1', 3)}, "
        f"YouTube spam F1 {test_pair('youtube_spam_f1', 3)}; evasion-suite drop {test_pair('olid_evasion_drop')}"
        + (
            f"; held-out rewrite drop, seed 0: {held_before:.2f} → {held_seed0:.2f} (all seeds: "
            f"{s['olid_heldout_drop']['mean']:.2f} ± {s['olid_heldout_drop']['sd']:.2f})"
            if held_before is not None and held_seed0 is not None and "olid_heldout_drop" in s
            else ""
        )
        + ". The held-out rewrite is much harsher than the issue's own (which cost the replaced model 3.1 points "
        "against this rewrite's 10.8), so its ≤ 2-point target is not met: the broad augmentation recovered about "
        "2 points of it. Seed 0 on OLID test with one held-out trick alone (every word of 3+ letters with "
        "probability 0.5), replaced → retrained drop: multi-character leet 18.3 → 13.2, separators 17.3 → 11.7, "
        "emoji between letters 12.6 → 11.0, emoji for vowels 11.5 → 10.0, regional-indicator letters 11.5 → 10.9, "
        "masking 10.5 → 9.3, dropped vowels 9.6 → 8.7, a space inside a word 8.6 → 6.7, look-alike letters "
        "5.6 → 5.3, alternating case 0.0 → 0.0. What the normaliser does not undo yet (a next version, with a "
        "retrain): parenthesised letters (NFKC gives `(d)`), Armenian letters outside the confusables table, "
        "`:`, `—`, `…` and `'` between single letters, multi-character leet. Training time: seeds 0 and 1 at "
        "the same time, one torch thread each, beside another session's job (2,397 and 2,396 s), then seed 2 "
        "alone with 2 threads (667 s). The taxonomy heads sit on this encoder's pooled embedding and must be "
        "refitted on it."
    )


def _heads_note(artifact: Path, cfg: ArtifactConfig) -> str | None:
    """Why the taxonomy heads are not described, when they were fitted on another encoder."""
    import json

    path = artifact / "heads.json"
    if not path.is_file():
        return None
    fitted_on = json.loads(path.read_text("utf-8")).get("encoder_version")
    if fitted_on == cfg.version:
        return None
    return (
        f"{HEADS_PENDING} `heads.json` was fitted on encoder `{fitted_on}`, not on this "
        f"encoder (`{cfg.version}`), so serving refuses it (`HeadsMismatchError`) until `heron train "
        "text-heads` refits them on this encoder's pooled embedding."
    )


def write_model_card(artifact: Path, metrics: dict[str, Any]) -> Path:
    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    s = metrics["summary"]
    tr = cfg.training
    size_mb = (artifact / WEIGHTS_FILE).stat().st_size / 1e6
    n_seeds = len(metrics["seeds"])
    lines: list[str] = []
    add = lines.append
    add(f"# Heron text model — `{cfg.version}`\n")
    add("_Generated by `training/text/card.py` from `config.json` and `metrics.json`; do not edit by hand._\n")
    if metrics.get("max_examples"):
        add(
            f"> **Tiny run** (`--max-examples {metrics['max_examples']}`): numbers below are smoke-test "
            "numbers, not model quality.\n"
        )
    add("## Model\n")
    add(
        f"- Backbone: `{cfg.backbone['package']}=={cfg.backbone['version']}` (sentence-transformers "
        "all-MiniLM-L6-v2, 6 layers, 384 hidden), loaded offline from the package; the sha256 of "
        + ", ".join(f"`{k}`" for k in cfg.backbone["files"])
        + " is checked at load time."
    )
    add(
        "- Head: attention-masked mean pooling → dropout 0.1 → linear, one sigmoid output per head: the shared "
        f"category heads ({', '.join(cfg.labels)}) and dataset-specific heads "
        f"({', '.join(o for o in cfg.outputs if o not in cfg.labels)}); multi-label, trained with masked binary "
        "cross-entropy (a head only learns from rows whose data set annotates it)."
    )
    add(
        "- Why dataset heads: a first run with shared heads only (same recipe otherwise) scored OLID test 77.4 "
        "macro-F1 and Davidson hate F1 0.344 (seed 0): the data sets' definitions of offensive/hate disagree, "
        "and one head averaged them. Each data set now also has its own head on the shared encoder."
    )
    add(
        "- Tried for OLID and Davidson hate, not adopted (seed 0, validation only): OLID rows twice per epoch, "
        "Davidson hate rows twice, Davidson's casual-profanity class capped at 6,000 rows and 96 tokens instead "
        "of 64 (`TrainConfig.repeats`/`class_caps`). Validation moved by noise: OLID macro-F1 77.35 → 76.97, "
        "HatEval 77.51 → 77.87, Davidson hate F1 0.488 → 0.497 (its thresholds fit for macro-F1 plus hate F1); "
        "the test sets were not scored for it."
    )
    add(
        "- Also tried (2026-12-01, seed 0, validation only, not adopted): "
        "(a) one more pass from this artifact over OLID, Davidson's hate rows and 15% of everything else "
        "(21,449 rows; AdamW restarted, peak learning rate 4e-5 and 5e-4 for the head, 6% warm-up, linear "
        "decay, the same augmentation): OLID 78.19 → 78.14, HatEval served 72.63 → 73.05, Davidson macro 77.21 → "
        "77.69, Davidson hate F1 0.495 → 0.512; a same-size uniform pass (control): 77.61, 72.80, 77.29, "
        "0.492; (b) the issue's probe shape, OLID train alone for 2 epochs with this recipe's layers and "
        "learning rate (`TrainConfig(epochs=2, repeats={}, source_caps={<every other source>: 1})`): "
        "OLID val 78.27, the same as the multi-task model's 78.19. So on validation neither "
        "more OLID passes nor dropping the other data sets moves OLID: the multi-task pool is not what "
        "holds OLID below the 82.2 target."
    )
    add(
        "- Also tried (2026-12-01, seed 0 from scratch, validation only, not adopted; decision rule written "
        "before the run): a positive-class weight of 3 on the `davidson_hate` head (Davidson's hate class is 6% "
        "of its rows; `TrainConfig.pos_weight`) with an exponential moving average of the tuned weights "
        "(decay 0.998; `TrainConfig.ema_decay`), both scored from one run against this artifact's seed 0 "
        "(same seed and data order; `training.text.train.val_summary`). Raw weights: OLID 78.19 → 77.59, "
        "HatEval served 72.63 → 72.38, Davidson macro 77.21 → 77.03, Davidson hate F1 0.495 → 0.494; the "
        "averaged weights: 77.71, 72.42, 77.08, 0.495. Neither the class weight nor the averaging moves "
        "Davidson hate or OLID beyond noise."
    )
    add(
        "- Also tried (2026-12-01, seed 0 from scratch, validation only, not adopted): 128 tokens instead of 64 "
        "(11% of OLID validation texts are longer than 64 tokens; the committed model scored at 128 tokens "
        "without retraining gave OLID val 78.53 against 78.19). Trained at 128: OLID 78.09, HatEval served "
        "72.06, Davidson macro 76.97, Davidson hate F1 0.484, so truncation is not what holds OLID back either."
    )
    add(
        "- Also tried (2026-12-02, all 3 seeds from scratch, validation only, not adopted; decision rule written "
        "before the runs): emoji spelled as their Unicode names. The backbone's uncased vocabulary has no emoji, "
        "so every emoji reaches the model as the same unknown token; 11.6 % of OLID, 14.7 % of Davidson and "
        "1.1 % of HatEval validation texts hold one. Each emoji was replaced by its CLDR name in words "
        '(`emoji.demojize`, skin tones dropped, a run of the same emoji named once: "🖕🖕🖕 you" → '
        '"middle finger you"), which left no unknown token in those validation sets, and the same recipe was '
        "retrained. 3-seed validation means, this artifact → emoji spelled: OLID 77.62 → 77.21 (seeds 76.85, "
        "77.54, 77.25), HatEval served 71.87 → 72.38, Davidson macro 77.12 → 76.74. The rule was to adopt only "
        "if OLID fell by at most 0.3 and HatEval and Davidson by at most 0.5; OLID fell by 0.41, so the test "
        "sets were not scored for it. On validation, naming emoji did not move OLID beyond seed noise."
    )
    add(
        "- Also tried (2026-12-02, validation only, not adopted; decision rule written before the runs): a "
        "uniform weight soup (Wortsman et al. 2022) of the three seeds. The recipe was retrained from scratch "
        "for seeds 0, 1 and 2; seed 0 came out with the same validation figures as this artifact to 7 digits "
        "(15,304 of its 10.65 M stored values differ, each by at most one fp16 step, from CPU kernel differences). "
        "Their tuned tensors were averaged and calibrated again on validation. Validation, mean of the three "
        "seeds → soup (→ mean-logit ensemble of the three, 3× the serving cost, for reference): OLID 77.62 → "
        "77.26 (77.70), HatEval served 71.87 → 69.45 (72.53), Davidson macro 77.12 → 76.45 (77.30), Davidson "
        "hate F1 0.491 → 0.473 (0.496). The rule asked the soup for OLID +0.5 over the seeds' mean; it lost "
        "ground everywhere, and even the full ensemble moved OLID by only +0.08, so seed averaging of either "
        "kind does not lift OLID on validation. The test sets were not scored for it."
    )
    add(
        "- Also tried (2026-12-02 night, seed 0, validation only, not adopted; decision rule written before "
        "the run): tuning the embedding block too (word, position and type embeddings and their LayerNorm; "
        "`TrainConfig.tune_embeddings`), with no weight decay on the word rows so that rows of tokens absent "
        "from the training texts keep their pretrained values (up to the fp16 storage). The issue's "
        "probe presumably tuned them; this "
        "recipe freezes them. Seed 0, this artifact → embeddings tuned: OLID 78.19 → 77.88, HatEval served "
        "72.63 → 72.14, Davidson macro 77.21 → 76.54, Davidson hate F1 0.495 → 0.479 (1,375 s of training "
        "with 2 threads). The rule asked for OLID +0.5 before training seeds 1 and 2; it lost ground on every "
        "set, so frozen embeddings are not what holds OLID below the target either. The test sets were not "
        "scored for it."
    )
    add(
        "- Also tried (2026-12-02 night, seed 0, validation only, not adopted; decision rule written before "
        "the run): a longer schedule at a lower learning rate, 2 epochs at 5e-5 instead of 1 at 8e-5 "
        "(`TrainConfig(epochs=2, lr=5e-5)`, as `heron train text --epochs 2 --lr 5e-5` sets it; 2,798 s "
        "with 2 threads). Seed 0, this artifact → longer: "
        "OLID 78.19 → 77.42, HatEval served 72.63 → 74.06, Davidson macro 77.21 → 76.81, Davidson hate F1 "
        "0.495 → 0.484. The rule asked for OLID +0.5 with the others within 0.5 before training seeds 1 and 2; "
        "OLID fell, so it was not pursued. The test sets were not scored for it."
    )
    add(
        "- Also tried (2026-12-03, seed 0, validation only, not adopted; decision rule written before the run): "
        'CamelCase hashtags spelt as words before normalisation ("#LiberalismIsAMentalDisorder" → "#liberalism '
        'is a mental disorder"; normalisation case-folds, after which the uncased WordPiece vocabulary cuts a '
        "run-together tag into fragments). 15 % of OLID train and validation tweets carry a hashtag, a third of "
        "the tags CamelCase. Retrained from scratch, seed 0 (1,298 s with 2 threads): OLID "
        "78.19 → 78.43, HatEval served 72.63 → 72.77, Davidson macro 77.21 → 77.01, Davidson hate F1 0.495 → "
        "0.497. The rule asked for OLID +0.5 with the others within 0.5; +0.24 is within one seed's noise, so "
        "the input form was left as it is (a new form means retraining every seed). The test sets were not "
        "scored for it."
    )
    add(
        "- Also tried (2026-12-03, seed 0, validation only, not adopted; same rule): those split hashtags "
        "together with layer-wise learning-rate decay (Howard & Ruder 2018): encoder layer i from the top "
        "at 8e-5 × 0.85^i, so the bottom layer learns at 3.5e-5 (`TrainConfig.layer_decay`; 1,344 s with 2 "
        "threads). Against the split hashtags alone: OLID 78.43 → 77.90, HatEval served 72.77 → 72.27, "
        "Davidson macro 77.01 → 76.11, Davidson hate F1 0.497 → 0.473. Slowing the lower layers lost ground "
        "on every set. The test sets were not scored for it."
    )
    add(
        "- Also probed (2026-12-03, validation only): the plain Hugging Face recipe that the issue's probe "
        "most likely ran, to see whether this recipe is what holds OLID back: `AutoModelForSequenceClassification` "
        "over the same backbone (the [CLS] pooler, a fresh 2-way softmax head), every weight tuned, embeddings "
        "included, on OLID train alone, raw tweets (no normalisation or augmentation), 128 tokens, batch 32, "
        "AdamW at 3e-5 with 6% warm-up and linear decay, 2 epochs, seed 0 (1,770 s with 2 threads). OLID "
        "validation macro-F1 after epoch 1: 77.29 at p ≥ 0.5, 77.47 at the best validation threshold; after "
        "epoch 2: 76.44 and 78.01, against 78.19 for this artifact at its validation threshold. On validation "
        "the plain recipe is no better than this one; the issue's ~81.8 on OLID test lies within the spread "
        "of single seeds there (this recipe's seeds 0–2: 79.2, 82.2, 79.8). The test set was not scored for it."
    )
    add(
        "- Also probed for Davidson hate (2026-12-03, seed 0, validation only, not adopted): a word 1–3-gram "
        "plus character 2–5-gram TF-IDF logistic regression on Davidson's training rows (3 classes), alone and "
        "averaged with this model's two Davidson heads (blend weight 0.2, 0.35 or 0.5 on the n-gram model). "
        "Alone it reached validation hate F1 0.415–0.437 (C = 1, 4, 16) against this model's 0.495; the best "
        "of the nine blends 0.503 (macro-F1 0.772 → 0.779), a gain within the noise of 143 validation hate "
        "rows, for a second model to serve, so it was not pursued."
    )
    entry = _retrain_20261204(metrics)
    if entry:
        add(entry)
    add(
        f"- Tuned: the top {tr.get('tune_layers')} encoder layers and the head; embeddings frozen. "
        f"Artifact: `{WEIGHTS_FILE}` = {size_mb:.1f} MB ({_weights_words(cfg)}) + `config.json`."
    )
    secs = {s: r.get("val_report", {}).get("train_seconds") for s, r in metrics["per_seed"].items()}
    n_rows = next((r.get("val_report", {}).get("train_examples") for r in metrics["per_seed"].values()), "?")
    add(
        "- Why this split: measured on the 2-core build machine, a training step with all 6 layers tuned ran at "
        "~46 examples/s (length 40, batch 32) vs ~60 with 4 tuned; we kept all 6 (quality first): fp16 "
        "storage of 6 layers was 21.3 MB, over the 15 MB cap on a committed file, so the weight matrices are "
        "stored int8 (10.8 MB; section below for what it costs). Freezing the word embeddings halves the artifact; "
        f"adapters were not tried. Training time per seed on the shared 2-core machine ({tr.get('epochs')} epoch "
        f"over the pooled {n_rows} rows, {tr.get('num_threads')} torch thread(s) per seed): "
        + ", ".join(f"seed {s}: {v:.0f} s" for s, v in secs.items() if v)
        + ". For scale: on 2026-12-02 "
        "three seeds trained at the same time, one thread each, on a 2-vCPU AVX2 machine took 4,734–4,754 s "
        "each (79 minutes for all three), and 2,996–3,007 s each (50 minutes) on a later session's machine of "
        "the same kind; one seed alone with 2 threads took 1,210 s on a 2-vCPU "
        "AVX-512 machine."
    )
    add(
        f"- Inputs: `pipeline.normalize.normalize` (version {cfg.normalizer_version}) then "
        f"`models.text.canonical.canonicalize` (version {cfg.canonical_version}): mentions → `@user`, links and "
        "bare domains (`google.com`, a top-level domain from `pipeline.normalize.LINK_TLDS`, a known shortener or "
        "a path) → `url`, e-mail addresses → `email` (its own word: an address is a contact point, not a click, "
        "and the pretrained vocabulary knows the word where it splits the address into fragments); chat "
        "abbreviations written with digits are spelled out (`b4` → `before`, `gr8` → `great`), a leading `!` is "
        f"punctuation (`!ban`); truncated to {cfg.max_length} tokens."
    )
    add(
        "- Calibration: temperature scaling per label on the pooled validation splits: "
        + ", ".join(f"{k} T={v:.2f}" for k, v in cfg.temperature.items())
        + "."
    )
    add(
        "- Serving thresholds (max F1 on pooled validation): "
        + ", ".join(f"{k} ≥ {v:.2f}" for k, v in cfg.thresholds.items())
        + "."
    )
    add("")
    add("## Training data\n")
    add(
        "Read at run time from the shared data folder; nothing is copied into the repository. Training: "
        "TweetEval offensive (OLID) train, TweetEval hate (HatEval) train, Davidson et al. 2017 train rows of "
        "`split_seed13_80-10-10.csv`, HateXplain (all three staged files: training-only per its provenance), the "
        "staged Jigsaw samples, SMS Spam Collection and YouTube Spam Collection `split_seed13` train rows. "
        + _augmentation_words(tr)
    )
    if "identity_neutral" in (tr.get("repeats") or {}):
        add(
            "Also: templated neutral sentences that name identity groups (`training/text/identity.py`, "
            f"{len(identity_sentences('train'))} sentences, x{tr['repeats']['identity_neutral']} per epoch), "
            "labelled 0 on every head — the "
            "mitigation of Dixon et al. (2018) for words like gay, muslim or black being learnt as offensive "
            "because the training sets mostly use them in offensive tweets."
        )
    add("")
    add("### Label map (`training/text/data.py: LABEL_MAP`; – = not annotated, masked out of the loss)\n")
    add(label_map_markdown())
    add("### Categories the encoder's own heads do not cover\n")
    add(
        f"The fine-tuned heads score only **{', '.join(LABELS)}**. When the encoder was trained, the rest of the "
        "taxonomy had no usable training data among the sets above:\n"
    )
    for cat, why in UNTRAINED.items():
        add(f"- `{cat}`: {why}.")
    heads_note = _heads_note(artifact, cfg)
    if heads_note:
        add("\n" + heads_note)
    elif (artifact / "heads.json").is_file():
        add(
            "\nThe served model scores them all the same: the taxonomy heads on this encoder's pooled embedding "
            "(`heads.safetensors`, fitted on data sets staged later) score "
            + ", ".join(UNTRAINED)
            + "; their data, recipe, figures beside a TF-IDF baseline and failure modes are in the per-category "
            "sections at the end of this card."
        )
    add("\n`spam` is trained on 2000s-era SMS and YouTube comments only; expect weaker transfer to chat spam.\n")
    add("## Results (official test splits; never trained or tuned on)\n")
    add(
        f"Mean ± sd over {n_seeds} seed(s) {metrics['seeds']}; the committed artifact is seed 0. Benchmark "
        "thresholds chosen on each benchmark's validation split.\n"
    )
    if metrics.get("weights_note"):
        add(metrics["weights_note"] + "\n")
    add(
        "Each benchmark is scored with its data set's own head (headline) and with the head that serves the "
        f"category in production ({', '.join(f'{k} ← `{v}`' for k, v in cfg.serving_heads.items())}).\n"
    )
    add("| benchmark | own head | serving head | published baselines | target |")
    add("|---|---|---|---|---|")
    b = metrics["baselines"]
    t = metrics["targets"]
    add(
        f"| OLID (TweetEval offensive) test macro-F1 | **{_ms(s, 'olid_macro_f1')}** | "
        f"{_ms(s, 'olid_served_macro_f1')} | "
        + ", ".join(f"{k} {v}" for k, v in b["olid_macro_f1"].items())
        + f" | ≥ {t['olid_macro_f1']} |"
    )
    add(
        f"| HatEval (TweetEval hate) test macro-F1 | **{_ms(s, 'hateval_macro_f1')}** | "
        f"{_ms(s, 'hateval_served_macro_f1')} | "
        + ", ".join(f"{k} {v}" for k, v in b["hateval_macro_f1"].items())
        + f" | ≥ {t['hateval_macro_f1']} |"
    )
    add(
        f"| Davidson hate-class F1 (our seeded split) | **{_ms(s, 'davidson_hate_f1', digits=3)}** | "
        f"{_ms(s, 'davidson_served_hate_f1', digits=3)} | "
        + ", ".join(f"{k} {v}" for k, v in b["davidson_hate_f1"].items())
        + f" | ≥ {t['davidson_hate_f1']} |"
    )
    add(
        f"| Davidson 3-class macro-F1 | {_ms(s, 'davidson_macro_f1', digits=3)} | "
        f"{_ms(s, 'davidson_served_macro_f1', digits=3)} | | |"
    )
    add(
        f"| OLID evasion suite macro-F1 | {_ms(s, 'olid_evasion_macro_f1')} (drop {_ms(s, 'olid_evasion_drop')}) | "
        f"{_ms(s, 'olid_served_evasion_macro_f1')} (drop {_ms(s, 'olid_served_evasion_drop')}) | | drop ≤ 2 |"
    )
    if "olid_heldout_drop" in s:
        add(
            f"| OLID held-out evasion macro-F1 (tricks training never sees) | {_ms(s, 'olid_heldout_macro_f1')} "
            f"(drop {_ms(s, 'olid_heldout_drop')}) | {_ms(s, 'olid_served_heldout_macro_f1')} "
            f"(drop {_ms(s, 'olid_served_heldout_drop')}) | | drop ≤ 2 |"
        )
    add(
        "| HatEval: note | the HatEval-only head overfits HatEval's train/val distribution (strong shift to "
        "test); the shared hate head, which is the one served, generalises better | | | |"
    )
    add(f"| OLID ECE (calibration) | {_ms(s, 'olid_ece', digits=3)} | {_ms(s, 'olid_served_ece', digits=3)} | | |")
    add("")
    add("Served categories only (serving thresholds):\n")
    add("| probe | result |")
    add("|---|---|")
    add(
        f"| ETHOS (out-of-domain, all 998) hate macro-F1 / AUC | {_ms(s, 'ethos_macro_f1')} / "
        f"{_ms(s, 'ethos_roc_auc', digits=3)} |"
    )
    add(f"| ToxiGen neutral lines flagged (FPR) | {_ms(s, 'toxigen_neutral_fpr', digits=3)} |")
    add(f"| SMS spam F1 / MCC (dedup split) | {_ms(s, 'sms_spam_f1', digits=3)} / {_ms(s, 'sms_spam_mcc', digits=3)} |")
    add(
        f"| YouTube spam F1 / MCC (dedup split) | {_ms(s, 'youtube_spam_f1', digits=3)} / "
        f"{_ms(s, 'youtube_spam_mcc', digits=3)} |"
    )
    add(
        f"| OLID macro-F1, serving head at the serving threshold | {_ms(s, 'olid_served_macro_f1_serving_threshold')} |"
    )
    add(
        f"| HatEval macro-F1, serving head at the serving threshold | "
        f"{_ms(s, 'hateval_served_macro_f1_serving_threshold')} |"
    )
    add("")
    ev = metrics.get("evasion", {})
    techniques = ", ".join(ev.get("techniques", []))
    add(
        f"Evasion suite: the OLID test set rewritten by `training/text/evasion.py` (seed {ev.get('seed')}, each "
        f"word of 3+ letters rewritten with probability {ev.get('word_prob')} by one of {techniques}).\n"
    )
    held = ev.get("heldout")
    if held:
        add(
            f"Held-out evasion: the OLID test set rewritten by `{held['generator']}` (seed {held['seed']}, each word "
            f"of 3+ letters with probability {held['word_prob']}), a rewriter that training never imports (a unit "
            "test checks it), written before any score was seen, with tables and tricks the training "
            "augmentation does not use: " + ", ".join(held["tricks"]) + " (Cherokee, Armenian, Lisu, "
            "superscript, parenthesised and two other mathematical alphabets; multi-character leet such as `|-|`; "
            "emoji between letters or for vowels; regional-indicator letters; other separators; masking with "
            "x, •, $, #; dropped vowels; alternating case; a letter trick followed by a gap trick, on a whole "
            "word or a stretch). It stands in for a rewrite we did not write.\n"
        )
    q = metrics.get("quantization")
    if q and q.get("serving"):
        _quantization_section(add, q, cfg)
    elif q:
        add("## Quantised serving paths\n")
        add("| path | OLID val macro-F1 | Δ vs fp32 | OLID test macro-F1 | Δ | HatEval val | HatEval test |")
        add("|---|---|---|---|---|---|---|")
        for mode, r in q["paths"].items():
            if "error" in r:
                add(f"| {mode} | error: {r['error']} | | | | | |")
                continue
            nan = float("nan")
            add(
                f"| {mode} | {r.get('olid_val_macro_f1', nan):.2f} | {r.get('olid_val_delta', 0.0):+.2f} | "
                f"{r.get('olid_test_macro_f1', nan):.2f} | {r.get('olid_test_delta', 0.0):+.2f} | "
                f"{r.get('hateval_val_macro_f1', nan):.2f} | {r.get('hateval_test_macro_f1', nan):.2f} |"
            )
        add(
            f"\nServing default: **{q['chosen']}** ({q['rule']}; decided on validation, test shown for reference). "
            f"Each figure is the mean over {q.get('orders', 1)} random arrival orders batched 32 at a time, because "
            "dynamic int8 quantises activations per batch and a text's score depends slightly on its batch-mates, "
            f"and over the {q.get('seeds', 1)} seeds' models (OLID-val Δ per seed: "
            + "; ".join(
                f"{m}: "
                + ", ".join(f"{v:+.2f}" for v in q["paths"].get(m, {}).get("olid_val_delta_per_seed", {}).values())
                for m in ("onnx-int8", "onnx-int8-sq")
                if m in q["paths"]
            )
            + "; one model's int8 loss moves by about ±0.3). "
            "onnx-int8 recipe: per-channel weights, feed-forward output projections kept fp32 (plain per-tensor "
            "int8 moved logits ~4x more in a measurement on the first model). onnx-int8-sq: every MatMul int8; "
            "the feed-forward output projections' inputs are divided per channel by SmoothQuant scales (Xiao et "
            f"al. 2023, migration strength {SQ_ALPHA}, from activation maxima on {ACT_MAX_TEXTS:,} training texts) "
            "that their weights absorb; those fp32 MatMuls were 38 % of onnx-int8's time.\n"
        )
    add("## Bias probes\n")
    seed0 = metrics["per_seed"].get("0", {})
    groups = seed0.get("toxigen_neutral_fpr_by_group", {})
    add(
        "ToxiGen human-written neutral sentences mention a protected group without hate; identity terms alone "
        "should not flag. Share flagged (toxicity or hate at serving thresholds), seed 0, by group:\n"
    )
    if groups:
        add("| group | neutral lines flagged |")
        add("|---|---|")
        for g, v in groups.items():
            add(f"| {g} | {v:.3f} |")
    add(
        f"\nToxiGen hateful seed lines caught (same rule): {_ms(s, 'toxigen_hate_recall', digits=3)} — implicit "
        "hate without slurs is mostly missed.\n"
    )
    id_rates = {k: r.get("val_report", {}).get("identity_val_flag_rate") for k, r in metrics["per_seed"].items()}
    if any(id_rates.values()):
        add(
            f"Validation-side probe (`training/text/identity.py`): neutral sentences naming {len(GROUPS)} groups in "
            "sentence frames held out from training; share flagged at serving thresholds, per seed: "
            + ", ".join(
                f"seed {k}: toxicity {v['toxicity']:.3f}, hate {v['hate']:.3f}" for k, v in id_rates.items() if v
            )
            + ".\n"
        )
    add("## Limitations\n")
    add(
        "- Trained on English tweets and forum posts (2010s); chat slang, other languages and code-switching are "
        "out of domain. ETHOS shows how scores move off Twitter."
    )
    add(
        "- Davidson and HateXplain labels carry known racial/dialect bias (Davidson et al. 2019, Sap et al. 2019): "
        "African-American English is over-labelled offensive. Use scores for review queues, not automatic bans, "
        "on `hate`."
    )
    add("- HatEval's hate targets only immigrants and women; its test set has a strong shift from train.")
    add("- Implicit hate (stereotypes without slurs) is weak, as the ToxiGen hate recall shows.")
    add(
        "- harassment, sexual, violence, self_harm and scam come from the taxonomy heads over the pooled embedding "
        "(their own section below), not from this fine-tuned head."
    )
    add(
        "- Evasion robustness comes from `pipeline.normalize` plus augmentation; masking (`f*ck`), dropped vowels, "
        "multi-character leet (`|-|`), emoji or regional-indicator letters and words split by a space are not "
        "undone by the normaliser (the training augmentation covers masking; the others only the held-out "
        "rewriter measures), and images of text are not covered."
    )
    add("\n## Reproduce\n")
    add(
        "```\nheron train text            # or: python -m training.cli train text\nheron eval text\n"
        "python bench/bench_text.py\n```\n"
    )
    add(f"Training config: `{ {k: v for k, v in tr.items() if k != 'report'} }`\n")
    path = artifact / CARD_FILE
    path.write_text("\n".join(lines) + "\n", "utf-8")
    if (artifact / "heads_metrics.json").is_file() and not heads_note:  # the taxonomy heads' section
        from training.text.heads import write_card_section

        write_card_section(artifact)
    return path
