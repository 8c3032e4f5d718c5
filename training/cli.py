"""`heron train text` and `heron eval text`: typer apps the main CLI mounts.

Also runnable alone: `python -m training.cli train text ...` / `python -m training.cli eval text ...`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from models.text.model import DEFAULT_ARTIFACT_DIR
from training.links.cli import register as _register_links
from training.stacking import register as _register_stacking

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS_DIR = REPO_ROOT / "var" / "text_runs"

train_app = typer.Typer(help="Train models.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models on held-out test sets.", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option(help="shared data folder (default: $HERON_DATA_DIR or ../shared/data next to the repo)"),
]
Out = Annotated[Path, typer.Option(help="artifact directory (seed 0's model, metrics, card)")]
RunsDir = Annotated[Path, typer.Option(help="where seeds other than 0 are kept (not committed)")]
Seeds = Annotated[list[int] | None, typer.Option("--seeds", help="seeds to train/evaluate (repeat the option)")]
MaxExamples = Annotated[int | None, typer.Option(help="cap every data set at this many rows (tiny runs)")]


def _threads(num_threads: int | None) -> None:
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


@train_app.command("text")
def train_text(
    data_dir: DataDir = None,
    out: Out = DEFAULT_ARTIFACT_DIR,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    seeds: Seeds = None,
    epochs: Annotated[float, typer.Option(help="passes over the pooled training set")] = 1.0,
    max_length: Annotated[int, typer.Option(help="token cap per text")] = 64,
    batch_size: int = 32,
    lr: float = 8e-5,
    tune_layers: Annotated[int, typer.Option(help="encoder layers fine-tuned, counted from the top")] = 6,
    aug_prob: Annotated[float, typer.Option(help="share of training texts rewritten by the evasion generator")] = 0.3,
    max_examples: MaxExamples = None,
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
    evaluate: Annotated[bool, typer.Option(help="score the test sets and write metrics + card afterwards")] = True,
    quantized: Annotated[bool, typer.Option(help="with --evaluate: also measure the int8 paths")] = True,
    weights_format: Annotated[str, typer.Option(
        help="how the artifact stores the tuned weights: int8-per-channel-sym-v1 or fp16-v1",
    )] = "int8-per-channel-sym-v1",
) -> None:
    """Fine-tune the text model on the shared data, one run per seed; seed 0 becomes the artifact."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    from training.text.data import resolve_data_dir
    from training.text.train import TrainConfig, train_seeds

    root = resolve_data_dir(data_dir)
    seeds = seeds or [0, 1, 2]
    cfg = TrainConfig(epochs=epochs, max_length=max_length, batch_size=batch_size, lr=lr, tune_layers=tune_layers,
                      aug_prob=aug_prob, max_examples=max_examples, num_threads=num_threads,
                      weights_format=weights_format)
    train_seeds(root, out, runs_dir, seeds, cfg)
    if evaluate:
        from training.text.evaluate import evaluate_all

        # The artifact's model was just replaced, so its old metrics describe another model.
        evaluate_all(root, out, runs_dir, seeds, max_examples=max_examples, quantized=quantized, replace_partial=True)


@eval_app.command("text")
def eval_text(
    data_dir: DataDir = None,
    artifact: Annotated[Path, typer.Option(help="artifact directory (seed 0)")] = DEFAULT_ARTIFACT_DIR,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    seeds: Seeds = None,
    max_examples: MaxExamples = None,
    quantized: Annotated[bool, typer.Option(help="also measure the int8 paths' quality loss")] = True,
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
    replace_partial: Annotated[bool, typer.Option(
        help="write to the artifact even when fewer seeds have a model here than its metrics.json covers")] = False,
) -> None:
    """Score the official test splits (never trained or tuned on); write metrics.json, predictions and card."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    from training.text.data import resolve_data_dir
    from training.text.evaluate import evaluate_all

    evaluate_all(resolve_data_dir(data_dir), artifact, runs_dir, seeds or [0, 1, 2], max_examples=max_examples,
                 quantized=quantized, replace_partial=replace_partial)


BEHAVIOUR_ARTIFACT = REPO_ROOT / "models" / "behaviour" / "artifact"


def _print_behaviour(metrics: dict) -> None:
    for name in ("flag", "hold"):
        m = metrics[name]
        typer.echo(f"{name} (>= {m['threshold']}): precision {m['precision']:.4f} recall {m['recall']:.4f} "
                   f"false positives {m['false_positives']} of {metrics['messages'] - metrics['spam_messages']}")
        for sc, v in m["per_scenario"].items():
            key = "recall" if "recall" in v else "flagged_rate"
            typer.echo(f"  {sc:14s} {v['messages']:6d} msgs  {key} {v[key]:.4f}")
    for sc, v in metrics["caught_by_third_message"].items():
        typer.echo(f"caught by 3rd message: {sc:14s} {v['caught']}/{v['actors']}")


@train_app.command("behaviour")
def train_behaviour(
    out: Annotated[Path, typer.Option(help="artifact directory")] = BEHAVIOUR_ARTIFACT,
    seed: Annotated[int, typer.Option(help="model seed")] = 0,
) -> None:
    """Train the behaviour model on simulator seeds 0-39; evaluate on held-out seeds 1000-1019."""
    from training.behaviour.train import train_and_save

    metrics = train_and_save(out, seed)
    typer.echo(f"wrote {out} ({metrics['version']})")
    _print_behaviour(metrics)


@eval_app.command("behaviour")
def eval_behaviour(
    artifact: Annotated[Path, typer.Option(help="artifact directory")] = BEHAVIOUR_ARTIFACT,
    seeds: Seeds = None,
    write: Annotated[bool, typer.Option(help="write metrics.json into the artifact")] = False,
) -> None:
    """Precision/recall of the committed behaviour model on held-out simulator seeds, per scenario."""
    import json

    from models.behaviour.model import load_model
    from training.behaviour.train import EVAL_SEEDS, evaluate

    model = load_model(artifact)
    metrics = evaluate(model, tuple(seeds) if seeds else EVAL_SEEDS)
    metrics["version"] = model.version
    _print_behaviour(metrics)
    committed = artifact / "metrics.json"
    if committed.exists() and not seeds:
        same = json.loads(committed.read_text("utf-8")) == json.loads(json.dumps(metrics))
        typer.echo("matches the committed metrics.json" if same else "DIFFERS from the committed metrics.json")
    if write:
        (artifact / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")


_register_links(train_app, eval_app)  # heron train links / links-bank, heron eval links / spam
_register_stacking(train_app)  # heron train stacking (review labels -> learned ensemble weights)


HeadsCache = Annotated[Path, typer.Option(help="where pooled embeddings of the training texts are cached "
                                         "(computed once; minutes on 2 cores)")]


@train_app.command("text-heads")
def train_text_heads(
    data_dir: DataDir = None,
    artifact: Annotated[Path, typer.Option(help="encoder artifact the heads are fitted on and written beside")]
    = DEFAULT_ARTIFACT_DIR,
    cache_dir: HeadsCache = Path("var/text_heads_cache"),
    seeds: Seeds = None,
    probes: Annotated[bool, typer.Option(help="also run the probe set and ToxiGen through the served path")] = True,
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
) -> None:
    """Fit the violence/self_harm/sexual/harassment/scam heads (3 seeds) and their TF-IDF baselines on the
    pooled embedding; write heads.safetensors, heads.json, heads_metrics.json and the card section."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    import json

    from training.text.data import resolve_data_dir
    from training.text.heads import METRICS_FILE, served_probe_report, train_heads, write_card_section

    metrics = train_heads(resolve_data_dir(data_dir), artifact, cache_dir, seeds or [0, 1, 2])
    if probes:
        metrics["served_probes"] = served_probe_report(artifact)
        (artifact / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    write_card_section(artifact)
    _print_heads(metrics)


@eval_app.command("text-heads")
def eval_text_heads(
    data_dir: DataDir = None,
    artifact: Annotated[Path, typer.Option(help="artifact directory with heads.json")] = DEFAULT_ARTIFACT_DIR,
    cache_dir: HeadsCache = Path("var/text_heads_cache"),
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
) -> None:
    """Re-score the committed heads on the test splits and run the probe set through the served path;
    the probe figures and card section are refreshed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    import json

    from training.text.data import resolve_data_dir
    from training.text.heads import METRICS_FILE, eval_heads, served_probe_report, write_card_section

    scores = eval_heads(resolve_data_dir(data_dir), artifact, cache_dir)
    for cat, rows in scores.items():
        for name, r in rows.items():
            typer.echo(f"{cat:<11} {name:<26} n={r['n']:<5} pos={r['positives']:<4} F1 {r['f1']:.3f} "
                       f"P {r['precision']:.3f} R {r['recall']:.3f}" + (f" AP {r['ap']:.3f}" if "ap" in r else ""))
    path = artifact / METRICS_FILE
    if path.is_file():
        metrics = json.loads(path.read_text("utf-8"))
        metrics["committed_heads_test"] = scores
        metrics["served_probes"] = served_probe_report(artifact)
        path.write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
        write_card_section(artifact)
        _print_heads(metrics)


def _print_heads(metrics: dict) -> None:  # type: ignore[type-arg]
    for cat, rows in metrics["summary"].items():
        for name, r in rows.items():
            typer.echo(f"{cat:<11} {name:<26} head F1 {r['head_f1']['mean']:.3f} ± {r['head_f1']['sd']:.3f}  "
                       f"baseline F1 {r['baseline_f1']['mean']:.3f} ± {r['baseline_f1']['sd']:.3f}  "
                       f"gain {r['f1_gain']['mean']:+.3f}")
    tg = metrics.get("toxigen_neutral")
    if tg:
        typer.echo(f"ToxiGen neutral flagged by any head (fp32 embeddings): {tg['any_head']:.3f}")
    pr = metrics.get("served_probes")
    if pr:
        typer.echo(f"probes ({pr['quantize']}): benign violence {pr['benign_violence_rate']:.3f}, benign not allowed "
                   f"{pr['benign_not_allowed_rate']:.3f}, threats missed {pr['threat_miss_rate']:.3f}, threats "
                   f"allowed {pr['threat_allowed_rate']:.3f}; ToxiGen neutral (served) any head "
                   f"{pr['toxigen_neutral']['any_new_head_at_threshold']:.3f}, any category "
                   f"{pr['toxigen_neutral']['any_category_at_threshold']:.3f}, not allowed "
                   f"{pr['toxigen_neutral']['not_allowed_platform_default']:.3f}")


app = typer.Typer(help="Heron training and evaluation.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")

if __name__ == "__main__":
    app()
