"""Every int8 path of the text model in one place: recipes, SmoothQuant, ONNX export, the choice.

Four interchangeable forward paths (`QUANTIZE_MODES`):
- "fp32": the PyTorch model as trained;
- "torch-int8": `torch.ao.quantization.quantize_dynamic` over the Linear layers;
- "onnx-int8": the model exported to ONNX once (cached on disk, keyed by the artifact's hash)
  and dynamically quantised with ONNX Runtime, the feed-forward output projections left fp32;
- "onnx-int8-sq": the same with every MatMul int8, the feed-forward output projections made
  quantisable by SmoothQuant (Xiao et al. 2023): their inputs' per-channel outlier scale moves
  into the weights. Those fp32 MatMuls were a third of the FLOPs and 38 % of the int8 model's
  time (ORT profile, batches of 8, one thread).

Why one module: serving (`models.text.engine`, `pipeline.scorers.text`) builds these paths and
training (`training.text.train`, `training.text.evaluate`) measures the activation maxima
SmoothQuant needs and decides which path serves. When both sides read the recipe, its constants
and the selection rule from here, a recipe change cannot reach one side and not the other.
Which path serves by default is decided per served model by measurement in `heron eval text` (the
fastest path in `FASTEST_FIRST` with which the served seed's own model loses at most
`MAX_SERVED_LOSS` OLID-validation macro-F1, every path at its own validation-fitted threshold) and
recorded in the artifact's config.json (`serving`), which `serving_quantize` reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from models.text.model import ACT_MAX_FILE, CONFIG_FILE, WEIGHTS_FILE, TextClassifier

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("fp32", "torch-int8", "onnx-int8", "onnx-int8-sq")
# ONNX int8 recipe, chosen by measurement on OLID validation with the first trained model: plain
# per-tensor int8 moved logits by up to 2.3 and cost ~0.8 macro-F1; per-channel weights cut the
# logit error to ~0.6, and keeping the feed-forward output projections (whose inputs carry BERT's
# large activation outliers) in fp32 brought the loss to ~0.0 at the best threshold.
ONNX_RECIPE = "int8-per-channel-ffn-out-fp32-v2"
# SmoothQuant migration strength for the feed-forward output projections: s_j = max|X_j|^a /
# max|W_j|^(1-a), X / s into int8, W * s. Chosen on OLID validation with seed 0's model (every
# MatMul int8, per-channel weights; macro-F1 against fp32 78.19): a=0.3 69.83, 0.5 76.84,
# 0.8 77.58, 0.9 77.54, 1.0 77.63 (the recipe above: 77.68). Those inputs are GELU outputs whose few large
# channels (up to 24 against a median of 2) set the per-tensor activation scale; a high a
# flattens them at little cost to the weights' per-channel int8.
SQ_ALPHA = 0.8
SQ_RECIPE = f"int8-per-channel-all-smoothquant-a{SQ_ALPHA}-v1"


def fp32_node(name: str) -> bool:
    """MatMuls the int8 recipe leaves in fp32: the feed-forward output projections."""
    return "/output/dense/" in name and "/attention/" not in name


# The exported graph's outputs: the logits and the pooled embedding the taxonomy heads read
# (models.text.heads). Part of the cache key, so a file exported with fewer outputs is not reused.
ONNX_OUTPUTS = ("logits", "pooled")


class _LogitsAndPooled(torch.nn.Module):
    """Export wrapper: (logits, pooled) from one pass of the classifier."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_pooled(input_ids, attention_mask)


def _artifact_key(artifact_dir: Path, recipe: str = ONNX_RECIPE) -> str:
    """What the export depends on: config.json (less the evaluation's record of which path serves and
    the figures before int8, which `heron eval text` writes into it afterwards), weights, maxima."""
    h = hashlib.sha256()
    h.update(",".join(ONNX_OUTPUTS).encode())
    config = json.loads((artifact_dir / CONFIG_FILE).read_text("utf-8"))
    config.pop("serving", None)
    if isinstance(config.get("weights"), dict):
        config["weights"] = {k: v for k, v in config["weights"].items() if k != "before_int8"}
    h.update(json.dumps(config, sort_keys=True).encode())
    for name in (WEIGHTS_FILE,) + ((ACT_MAX_FILE,) if recipe == SQ_RECIPE else ()):
        h.update((artifact_dir / name).read_bytes())
    h.update(torch.__version__.encode())
    h.update(recipe.encode())
    return h.hexdigest()[:16]


class _InverseScale(torch.nn.Module):
    """x / s per input channel, as one elementwise Mul in the exported graph."""

    def __init__(self, inv: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv", inv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.inv


def smooth_ffn_out(model: TextClassifier, act_max: dict[str, torch.Tensor], alpha: float = SQ_ALPHA) -> None:
    """SmoothQuant the feed-forward output projections in place (the fp32 function is unchanged).

    For input channel j: s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha); the Linear's weight column j
    is multiplied by s_j and its input divided by s_j, so dynamic per-tensor int8 of the input no
    longer spends its range on a few outlier channels.
    """
    layers = model.backbone.encoder.layer
    for i, layer in enumerate(layers):
        key = f"layer.{i}"
        if key not in act_max:
            raise ValueError(f"{ACT_MAX_FILE} has no maxima for encoder {key}")
        dense = layer.output.dense
        amax = act_max[key].float().clamp(min=1e-5)
        if amax.shape[0] != dense.in_features:
            raise ValueError(f"{ACT_MAX_FILE}: {key} has {amax.shape[0]} channels, the layer {dense.in_features}")
        wmax = dense.weight.detach().abs().amax(0).clamp(min=1e-5)
        scale = (amax**alpha / wmax ** (1 - alpha)).clamp(min=1e-2, max=1e2)
        with torch.no_grad():
            dense.weight.mul_(scale)
        layer.output.dense = torch.nn.Sequential(_InverseScale((1.0 / scale).float()), dense)


def load_act_max(artifact_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = artifact_dir / ACT_MAX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the onnx-int8-sq path needs the activation maxima that "
                                "`heron train text` writes (`heron eval text` adds them to older artifacts)")
    return load_file(str(path))


def onnx_cache_dir() -> Path:
    """Where exported ONNX files go: `Settings.cache_dir` (HERON_CACHE_DIR), else a per-user temp
    folder (never the repo)."""
    from pipeline.settings import get_settings

    configured = get_settings().cache_dir
    base = configured or Path(tempfile.gettempdir()) / f"heron-cache-{os.getuid()}"
    return Path(base) / "text-onnx"


def cached_onnx_int8(artifact_dir: Path, smooth: bool = False) -> Path | None:
    """The int8 ONNX file `export_onnx_int8` already wrote for this artifact and recipe, or None.

    Why: with it, a process serving an onnx path needs neither the PyTorch model nor transformers,
    which are most of a model worker's start-up (`heron moderate --input` starts one per core)."""
    recipe = SQ_RECIPE if smooth else ONNX_RECIPE
    if smooth and not (artifact_dir / ACT_MAX_FILE).is_file():
        return None
    final = onnx_cache_dir() / _artifact_key(artifact_dir, recipe) / "model.int8.onnx"
    return final if final.is_file() else None


def export_onnx_int8(model: TextClassifier, artifact_dir: Path, max_length: int, smooth: bool = False) -> Path:
    """Export the fp32 model to ONNX and quantise its weights to int8 (cached per artifact hash).

    `smooth`: the SmoothQuant recipe (every MatMul int8); `model` is modified in place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    recipe = SQ_RECIPE if smooth else ONNX_RECIPE
    if smooth and not (artifact_dir / ACT_MAX_FILE).is_file():
        load_act_max(artifact_dir)  # raises the clear error before hashing a missing file
    out_dir = onnx_cache_dir() / _artifact_key(artifact_dir, recipe)
    final = out_dir / "model.int8.onnx"
    if final.is_file():
        return final
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / f"model.fp32.{os.getpid()}.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    if smooth:
        smooth_ffn_out(model, load_act_max(artifact_dir))
    model.eval()
    with torch.no_grad():  # not inference_mode: the exporter traces differently under it (measured worse int8)
        torch.onnx.export(
            _LogitsAndPooled(model), (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "logits": {0: "batch"}, "pooled": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    import onnx

    graph = onnx.load(str(fp32)).graph
    keep_fp32 = [] if smooth else [n.name for n in graph.node if n.op_type == "MatMul" and fp32_node(n.name)]
    tmp = out_dir / f"model.int8.{os.getpid()}.onnx"
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep_fp32)
    os.replace(tmp, final)  # atomic: concurrent workers never read a half-written file
    fp32.unlink(missing_ok=True)
    return final


def quantize_torch_int8(model: TextClassifier) -> torch.nn.Module:
    """The "torch-int8" path: dynamic int8 over every Linear layer (weights int8, activations per batch)."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def measure_act_max(model: TextClassifier,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-channel maxima of |input| of every feed-forward output projection over padded batches.

    What `smooth_ffn_out` sizes its scales from (saved as the artifact's ACT_MAX_FILE by training).
    Padded positions count too: dynamic int8 takes one scale over the whole padded tensor, so
    their activations are part of what the scales must cover (measured on seed 0's model, OLID
    validation: maxima over real tokens only gave 77.06 macro-F1, over every position 77.46).
    """
    layers = model.backbone.encoder.layer
    amax = {f"layer.{i}": torch.zeros(layer.output.dense.in_features) for i, layer in enumerate(layers)}

    def hook_for(key: str) -> Any:
        def hook(_mod: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = inputs[0].detach().abs()
            amax[key] = torch.maximum(amax[key], x.reshape(-1, x.shape[-1]).amax(0))
        return hook

    handles = [layer.output.dense.register_forward_hook(hook_for(f"layer.{i}")) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            for ids, mask in batches:
                model(ids, mask)
    finally:
        for handle in handles:
            handle.remove()
    return amax


# The int8 paths, fastest first (measured by bench/bench_text.py's bare rows); `heron eval text`
# serves the first whose quality loss against fp32 is small enough, else fp32.
FASTEST_FIRST = ("onnx-int8-sq", "onnx-int8", "torch-int8")
# The most OLID-validation macro-F1 (points) the served seed may lose on its served path, against the
# same model before its weights were stored int8 (issue 22: "the seed that serves must itself lose at
# most 0.5 macro-F1, each path scored at its own validation-fitted threshold").
MAX_SERVED_LOSS = 0.5


def recorded_quantize(directory: Path) -> str | None:
    """The forward path recorded for this artifact: config.json's `serving.quantize`, else (artifacts
    evaluated before that field) metrics.json's `quantization.chosen`; None when nothing was measured."""
    config = directory / CONFIG_FILE
    if config.is_file():
        chosen = json.loads(config.read_text("utf-8")).get("serving", {}).get("quantize")
        if chosen:
            return str(chosen)
    metrics = directory / "metrics.json"
    if metrics.is_file():
        chosen = json.loads(metrics.read_text("utf-8")).get("quantization", {}).get("chosen")
        if chosen:
            return str(chosen)
    return None


def serving_quantize(directory: Path) -> str:
    """The forward path `heron eval text` chose for this artifact (`recorded_quantize`), or the nearest
    one this installation can run: onnx-int8 when the SmoothQuant maxima are missing, torch-int8
    without onnxruntime, fp32 when nothing was measured."""
    chosen = recorded_quantize(directory)
    if not chosen:
        return "fp32"
    if chosen == "onnx-int8-sq" and not (directory / ACT_MAX_FILE).is_file():
        log.warning("metrics.json chose onnx-int8-sq but %s lacks %s; serving onnx-int8", directory, ACT_MAX_FILE)
        chosen = "onnx-int8"
    if chosen.startswith("onnx-"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch-int8"
    return str(chosen)
