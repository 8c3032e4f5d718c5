"""`heron train text` and `heron eval text`: typer apps the main CLI mounts.

Also runnable alone: `python -m training.cli train text ...` / `python -m training.cli eval text ...`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

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
WithLabels = Annotated[list[Path] | None, typer.Option(
    "--with-labels", help="review labels from `heron labels export` (repeat for several files); their training "
    "slice joins the data, the held-out slice is kept for `heron eval candidate`")]
HoldoutPercent = Annotated[int, typer.Option(help="share of the review labels held out (by a hash of the text)")]
HardRepeat = Annotated[int, typer.Option(help="times each overturned (hard-example) label is repeated in training")]


def _load_labels(files: list[Path] | None, holdout: int, repeat: int) -> Any:
    """The checked LabelSet, or a clear error and exit status 2 (before any slow step)."""
    if not files:
        return None
    from training.text.labels_data import LabelFileError, load_labels

    try:
        labels = load_labels(files, holdout, repeat)
    except LabelFileError as exc:
        typer.echo(f"heron: {exc}", err=True)
        raise typer.Exit(2) from None
    s = labels.summary()
    typer.echo(f"review labels {s['version']}: {s['rows']} rows, {s['train_rows']} in the training slice "
               f"({s['hard_examples_train']} hard examples), {s['holdout_rows']} held out "
               f"({s['holdout_percent']}%); skipped {s['skipped']}", err=True)
    return labels


@contextlib.contextmanager
def _candidate_folder(make: bool) -> Iterator[Path | None]:
    """With `make`: a staging folder inside the model registry, removed again if training fails
    (so a crashed run leaves no half-written candidate behind); otherwise None."""
    if not make:
        yield None
        return
    from pipeline.models_registry import Registry, RegistryError

    try:
        staging = Registry.from_settings().staging("text")
    except (RegistryError, OSError) as exc:
        typer.echo(f"heron: cannot make a candidate folder in the model registry: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _serving_dir() -> Path:
    from pipeline.models_registry import Registry, RegistryError

    try:
        return Registry.from_settings().serving_dir("text")
    except RegistryError as exc:
        typer.echo(f"heron: {exc}", err=True)
        raise typer.Exit(2) from None


def _register(staging: Path) -> str:
    from pipeline.models_registry import Registry

    registry = Registry.from_settings()
    version = registry.add("text", staging, move=True)
    typer.echo(f"candidate text version {version} at {registry.path('text', version)}\n"
               f"next: heron eval candidate {version} --labels <labels.jsonl> --report <report.json>")
    return version


def _threads(num_threads: int | None) -> None:
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


@train_app.command("text")
def train_text(
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(
        help="artifact directory (seed 0's model, metrics, card); default: models/text/artifact, or with "
        "--with-labels a new candidate version in the model registry (HERON_MODELS_DIR)")] = None,
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
    with_labels: WithLabels = None,
    label_holdout_percent: HoldoutPercent = 20,
    label_hard_repeat: HardRepeat = 3,
    heads: Annotated[bool | None, typer.Option(
        "--heads/--no-heads", help="refit the taxonomy heads on the new encoder (seed 0, with the labels): "
        "without them the five head categories go unscored; default: on with --with-labels")] = None,
    heads_cache_dir: Annotated[Path, typer.Option(help="embedding cache for --heads")] = Path("var/text_heads_cache"),
) -> None:
    """Fine-tune the text model on the shared data (and review labels), one run per seed; seed 0
    becomes the artifact (with --with-labels and no --out: a candidate version in the registry)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    from training.text.data import resolve_data_dir
    from training.text.train import TrainConfig, train_seeds

    root = resolve_data_dir(data_dir)
    labels = _load_labels(with_labels, label_holdout_percent, label_hard_repeat)
    seeds = seeds or [0, 1, 2]
    candidate = out is None and labels is not None
    cfg = TrainConfig(epochs=epochs, max_length=max_length, batch_size=batch_size, lr=lr, tune_layers=tune_layers,
                      aug_prob=aug_prob, max_examples=max_examples, num_threads=num_threads,
                      weights_format=weights_format, label_files=[str(p.resolve()) for p in with_labels or []],
                      label_holdout_percent=label_holdout_percent, label_hard_repeat=label_hard_repeat)
    with _candidate_folder(candidate) as staging:
        target = staging or out or DEFAULT_ARTIFACT_DIR
        if staging is not None and runs_dir == DEFAULT_RUNS_DIR:
            # other seeds of a candidate must not replace the bundled model's (var/text_runs)
            runs_dir = staging.parent / ".runs" / staging.name
        train_seeds(root, target, runs_dir, seeds, cfg)
        if evaluate:
            from training.text.evaluate import evaluate_all

            # The artifact's model was just replaced, so its old metrics describe another model.
            evaluate_all(root, target, runs_dir, seeds, max_examples=max_examples, quantized=quantized,
                         replace_partial=True)
        if heads if heads is not None else labels is not None:
            from training.text.heads import train_heads, write_card_section

            train_heads(root, target, heads_cache_dir, [seeds[0]], labels=labels, max_examples=max_examples)
            write_card_section(target)
        if staging is not None:
            _register(staging)


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
    artifact: Annotated[Path | None, typer.Option(
        help="encoder artifact the heads are fitted on (default: models/text/artifact; with --with-labels, the "
        "version that serves now)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="write a complete artifact (a copy of the encoder + the new heads) here instead of beside the encoder; "
        "default with --with-labels: a new candidate version in the model registry")] = None,
    cache_dir: HeadsCache = Path("var/text_heads_cache"),
    seeds: Seeds = None,
    probes: Annotated[bool, typer.Option(help="also run the probe set and ToxiGen through the served path")] = True,
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
    with_labels: WithLabels = None,
    label_holdout_percent: HoldoutPercent = 20,
    label_hard_repeat: HardRepeat = 3,
    max_examples: Annotated[int | None, typer.Option(help="cap every category's train/val/test rows (tiny runs)")]
    = None,
) -> None:
    """Fit the violence/self_harm/sexual/harassment/scam heads (3 seeds) and their TF-IDF baselines on the
    pooled embedding; write heads.safetensors, heads.json, heads_metrics.json and the card section."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    import json

    from training.text.data import resolve_data_dir
    from training.text.heads import METRICS_FILE, served_probe_report, train_heads, write_card_section

    root = resolve_data_dir(data_dir)
    labels = _load_labels(with_labels, label_holdout_percent, label_hard_repeat)
    candidate = out is None and labels is not None
    if artifact is None:
        artifact = _serving_dir() if labels is not None else DEFAULT_ARTIFACT_DIR
    if not (artifact / "config.json").is_file():
        typer.echo(f"heron: no text artifact at {artifact} (missing config.json)", err=True)
        raise typer.Exit(2)
    with _candidate_folder(candidate) as staging:
        target = staging or out or artifact
        try:
            metrics = train_heads(root, artifact, cache_dir, seeds or [0, 1, 2], labels=labels,
                                  max_examples=max_examples, out=target)
        except FileExistsError as exc:
            typer.echo(f"heron: {exc}", err=True)
            raise typer.Exit(2) from None
        if probes:
            metrics["served_probes"] = served_probe_report(target)
            (target / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
        write_card_section(target)
        _print_heads(metrics)
        if staging is not None:
            _register(staging)


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


@eval_app.command("candidate")
def eval_candidate(
    candidate: Annotated[str, typer.Argument(help="candidate: a text version in the registry (`heron models list`) "
                                             "or an artifact folder")],
    report: Annotated[Path, typer.Option("--report", help="where to write the gate report (JSON; the Markdown "
                                         "version goes beside it as .md)")],
    serving: Annotated[str | None, typer.Option(help="compare against this version or folder (default: the version "
                                                "that serves now)")] = None,
    labels: Annotated[list[Path] | None, typer.Option(
        "--labels", help="review label exports whose held-out slice is scored (repeatable)")] = None,
    tolerance: Annotated[float, typer.Option(help="largest F1 drop (absolute) a category may show and still pass")]
    = 0.02,
    tolerance_for: Annotated[list[str] | None, typer.Option(
        "--tolerance-for", help="per-category tolerance, CATEGORY=VALUE (repeatable)")] = None,
    label_holdout_percent: HoldoutPercent = 20,
    min_rows: Annotated[int, typer.Option(help="rows a category needs in a slice to be gated")] = 20,
    min_positives: Annotated[int, typer.Option(help="positives a category needs in a slice to be gated")] = 5,
    quantize: Annotated[str, typer.Option(help="forward path for both models: auto (each artifact's serving path), "
                                          "fp32, torch-int8, onnx-int8, onnx-int8-sq")] = "auto",
    data_dir: DataDir = None,
    max_examples: MaxExamples = None,
    num_threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
) -> None:
    """Compare a candidate text model with the serving one on the fixed test splits and the held-out
    review labels, per category; write the gate report. Exit status 0: the gate passes; 1: it fails."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _threads(num_threads)
    from pipeline.models_registry import Registry, RegistryError
    from training.text.data import resolve_data_dir
    from training.text.gate import Side, compare, markdown, write_report

    tolerances: dict[str, float] = {}
    for item in tolerance_for or []:
        cat, _, value = item.partition("=")
        try:
            tolerances[cat.strip()] = float(value)
        except ValueError:
            typer.echo(f"heron: --tolerance-for {item!r}: expected CATEGORY=NUMBER", err=True)
            raise typer.Exit(2) from None
    from pipeline.taxonomy import CATEGORY_NAMES

    unknown = sorted(set(tolerances) - set(CATEGORY_NAMES))
    if unknown:
        typer.echo(f"heron: --tolerance-for: unknown categories {unknown}", err=True)
        raise typer.Exit(2)
    registry = Registry.from_settings()
    try:
        cand_name, cand_path = registry.resolve("text", candidate)
        serv_ref = serving or registry.serving("text")
        serv_name, serv_path = registry.resolve("text", serv_ref)
    except RegistryError as exc:
        typer.echo(f"heron: {exc}", err=True)
        raise typer.Exit(2) from None
    label_set = _load_labels(labels, label_holdout_percent, 1)
    result = compare(Side(cand_name or str(cand_path), cand_path), Side(serv_name or str(serv_path), serv_path),
                     resolve_data_dir(data_dir), label_set, tolerance, tolerances, max_examples, quantize,
                     num_threads, min_rows, min_positives)
    md = write_report(result, report)
    typer.echo(markdown(result))
    typer.echo(f"wrote {report} and {md}", err=True)
    if not result["verdict"]["pass"]:
        raise typer.Exit(1)


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
